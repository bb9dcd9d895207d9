//! Text helpers shared by the renderers: display-width padding and truncation, ANSI colour,
//! and compact durations, sizes, numbers and times.

use std::time::{Duration, UNIX_EPOCH};

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// How output is drawn: its width in terminal columns and whether ANSI colour is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub width: usize,
    pub color: bool,
}

impl Style {
    /// Plain text at `width` columns (what the snapshot tests render).
    #[cfg(test)]
    pub fn plain(width: usize) -> Self {
        Self { width, color: false }
    }

    /// Wraps `text` in an SGR sequence (`31` red, `1` bold, `2` dim...) when colour is on.
    pub fn paint(&self, sgr: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

pub const RED: &str = "31";
pub const BOLD: &str = "1";
pub const DIM: &str = "2";

/// Columns `text` takes on a terminal.
pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `text` cut to at most `max` columns, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    if max > 0 {
        out.push('…');
    }
    out
}

/// `text` truncated to `cols` columns and padded with spaces on the right to exactly `cols`.
pub fn pad_right(text: &str, cols: usize) -> String {
    let cut = truncate(text, cols);
    let fill = cols.saturating_sub(width(&cut));
    format!("{cut}{}", " ".repeat(fill))
}

/// `text` padded with spaces on the left to `cols` columns.
pub fn pad_left(text: &str, cols: usize) -> String {
    let fill = cols.saturating_sub(width(text));
    format!("{}{text}", " ".repeat(fill))
}

/// Every line of `text` without trailing spaces (tables pad their last column).
pub fn trim_lines(text: &str) -> String {
    let mut out: String = text.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    if !text.ends_with('\n') {
        out.pop();
    }
    out
}

/// A duration in three significant digits and the largest fitting unit: `1.20s`, `300ms`,
/// `12.5µs`, `80ns`; minutes and hours past a minute (`2m05s`, `1m`, `1h02m`).
pub fn duration(nanos: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "µs")];
    if nanos >= 3_600_000_000_000 {
        let minutes = nanos / 60_000_000_000;
        return match minutes % 60 {
            0 => format!("{}h", minutes / 60),
            m => format!("{}h{m:02}m", minutes / 60),
        };
    }
    if nanos >= 60_000_000_000 {
        let seconds = nanos / 1_000_000_000;
        return match seconds % 60 {
            0 => format!("{}m", seconds / 60),
            s => format!("{}m{s:02}s", seconds / 60),
        };
    }
    for (scale, unit) in UNITS {
        if nanos >= scale {
            return format!("{}{unit}", significant(nanos as f64 / scale as f64));
        }
    }
    format!("{nanos}ns")
}

/// `1 trace`, `2 traces`: a count and its noun (plural with `s`).
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Bytes in binary units: `512 B`, `1.50 KiB`, `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in UNITS {
        if n >= scale {
            return format!("{} {unit}", significant(n as f64 / scale as f64));
        }
    }
    format!("{n} B")
}

/// A number with three significant digits and no trailing zeros: `12.5`, `0.00123`, `1234`.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let digits = v.abs().log10().floor() as i32;
    let decimals = (2 - digits).clamp(0, 9) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Three significant digits, zeros kept (`1.20`, `12.5`, `300`), for values at or above 1.
fn significant(v: f64) -> String {
    match v {
        v if v >= 99.95 => format!("{v:.0}"),
        v if v >= 9.995 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}

/// A Unix time in nanoseconds as UTC RFC 3339 with milliseconds.
pub fn time_millis(unix_nanos: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(unix_nanos)).to_string()
}

/// A Unix time in nanoseconds as UTC RFC 3339 to the second.
pub fn time_seconds(unix_nanos: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(unix_nanos)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_and_numbers_are_compact() {
        let cases = [
            (80, "80ns"),
            (12_500, "12.5µs"),
            (5_000_000, "5.00ms"),
            (300_000_000, "300ms"),
            (1_204_000_000, "1.20s"),
            (125_000_000_000, "2m05s"),
            (3_720_000_000_000, "1h02m"),
            (60_000_000_000, "1m"),
            (7_200_000_000_000, "2h"),
        ];
        for (nanos, text) in cases {
            assert_eq!(duration(nanos), text);
        }
        assert_eq!(
            (count(1u64, "span"), count(0u64, "span")),
            ("1 span".into(), "0 spans".into())
        );
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(0.001234), "0.00123");
        assert_eq!(number(1234.0), "1234");
        assert_eq!(number(-3.0), "-3");
    }

    #[test]
    fn truncation_counts_terminal_columns() {
        assert_eq!(truncate("checkout", 5), "chec…");
        assert_eq!(truncate("日本語テキスト", 5), "日本…");
        assert_eq!(pad_right("ab", 4), "ab  ");
        assert_eq!(pad_left("ab", 4), "  ab");
        assert_eq!(trim_lines("a  \nb \n"), "a\nb\n");
    }
}
