//! `legato metrics`: one sparkline (▁▂▃▄▅▆▇█) per series of a TraceQL metrics range query,
//! with the series' labels and its min, max and last value; instant queries as a table.

use serde_json::Value;

use super::json::{any_value_text, array_of, f64_of, is_string_value, str_of, u64_of};
use super::table::grid;
use super::text::{self, BOLD, DIM, Style};

const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One series: its labels as `key=value` text and its samples (Unix ms, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: String,
    pub samples: Vec<(u64, f64)>,
}

/// Labels in Prometheus's spelling: `rate`, `{resource.service.name="api"}`,
/// `quantile_over_time{p=0.9}`; strings quoted, other values bare.
pub fn labels_text(labels: &Value) -> String {
    let mut name = String::new();
    let mut pairs = Vec::new();
    for kv in array_of(labels) {
        let key = str_of(&kv["key"]);
        let value = any_value_text(&kv["value"]);
        if key == "__name__" {
            name = value;
        } else if is_string_value(&kv["value"]) {
            pairs.push(format!("{key}={value:?}"));
        } else {
            pairs.push(format!("{key}={value}"));
        }
    }
    match (name.is_empty(), pairs.is_empty()) {
        (false, true) => name,
        _ => format!("{name}{{{}}}", pairs.join(", ")),
    }
}

/// The series of a `/api/metrics/query_range` answer, sorted by labels; NaN samples dropped.
pub fn series_from_json(body: &Value) -> Vec<Series> {
    let mut series: Vec<Series> = array_of(&body["series"])
        .iter()
        .map(|s| {
            let mut samples: Vec<(u64, f64)> = array_of(&s["samples"])
                .iter()
                .map(|p| (u64_of(&p["timestampMs"]), f64_of(&p["value"])))
                .filter(|(_, v)| v.is_finite())
                .collect();
            samples.sort_by_key(|(t, _)| *t);
            Series {
                labels: labels_text(&s["labels"]),
                samples,
            }
        })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    series
}

/// The range a query asked for, in Unix milliseconds, and its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    pub step_ms: u64,
}

impl Window {
    /// The grid every sparkline is drawn on: from the window's start (aligned to the step,
    /// as Tempo aligns it) to its end, widened to any sample outside it; (first, slots).
    fn grid(&self, series: &[Series]) -> (u64, usize) {
        let step = self.step_ms.max(1);
        let samples = || series.iter().flat_map(|s| s.samples.iter().map(|p| p.0));
        let first = samples().min().unwrap_or(u64::MAX).min(self.start_ms / step * step);
        let last = samples().max().unwrap_or(0).max(self.end_ms / step * step);
        (first, ((last.saturating_sub(first)) / step + 1) as usize)
    }
}

/// A sparkline of `samples` over `slots` grid slots from `first` (ms) every `step`, drawn in
/// at most `cells` characters: a cell covering several slots shows their mean, an empty
/// one a space. Levels span the series' own min..max.
fn sparkline(samples: &[(u64, f64)], first: u64, step: u64, slots: usize, cells: usize) -> String {
    let cells = cells.min(slots).max(1);
    let mut sums = vec![(0.0f64, 0u32); cells];
    for &(t, v) in samples {
        let slot = (((t.saturating_sub(first)) / step) as usize).min(slots - 1);
        let cell = slot * cells / slots;
        sums[cell].0 += v;
        sums[cell].1 += 1;
    }
    let means: Vec<Option<f64>> = sums.iter().map(|&(s, n)| (n > 0).then(|| s / f64::from(n))).collect();
    let min = means.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    let max = means.iter().flatten().copied().fold(f64::NEG_INFINITY, f64::max);
    means
        .iter()
        .map(|m| match m {
            None => ' ',
            Some(_) if max <= min => LEVELS[3],
            Some(v) => LEVELS[(((v - min) / (max - min)) * 7.0).round() as usize],
        })
        .collect()
}

/// `min 0.1  max 13  last 12.5` of a series.
fn stats(samples: &[(u64, f64)]) -> String {
    let min = samples.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max = samples.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let last = samples.last().map_or(f64::NAN, |p| p.1);
    format!(
        "min {}  max {}  last {}",
        text::number(min),
        text::number(max),
        text::number(last)
    )
}

/// A range query's series: a summary line, then per series its labels and, under them, the
/// sparkline and its stats. Sparklines share the time axis and line up.
pub fn render_range(series: &[Series], window: Window, style: Style) -> String {
    if series.is_empty() {
        return "no series\n".into();
    }
    let (first, slots) = window.grid(series);
    let step = window.step_ms.max(1);
    let all_stats: Vec<String> = series.iter().map(|s| stats(&s.samples)).collect();
    let stats_width = all_stats.iter().map(|s| text::width(s)).max().unwrap_or(0);
    let cells = style.width.saturating_sub(stats_width + 6).max(8);
    let mut out = format!(
        "{} series · {} → {} · step {}\n",
        series.len(),
        text::time_seconds(window.start_ms * 1_000_000),
        text::time_seconds(window.end_ms * 1_000_000),
        humantime::format_duration(std::time::Duration::from_millis(step)),
    );
    for (s, stats) in series.iter().zip(all_stats) {
        out.push('\n');
        out.push_str(&style.paint(BOLD, &text::truncate(&s.labels, style.width)));
        out.push('\n');
        let line = sparkline(&s.samples, first, step, slots, cells);
        let line = text::pad_right(&line, cells.min(slots));
        out.push_str(&format!("  {line}  {}\n", style.paint(DIM, &stats)));
    }
    out
}

/// An instant query's series: labels and value, largest first.
pub fn render_instant(body: &Value, style: Style) -> String {
    let mut rows: Vec<(String, f64)> = array_of(&body["series"])
        .iter()
        .map(|s| (labels_text(&s["labels"]), f64_of(&s["value"])))
        .collect();
    if rows.is_empty() {
        return "no series\n".into();
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rows = rows.into_iter().map(|(l, v)| vec![l, text::number(v)]).collect();
    grid(&["SERIES", "VALUE"], rows, &[1], &[1], style.width)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn body() -> Value {
        let frontend: Vec<Value> = [1.0, 2.0, 4.0, 8.0, 6.0, 3.0, 2.5, 12.5]
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"timestampMs": (T0 + i as u64 * 60_000).to_string(), "value": v}))
            .collect();
        // Quiet: no samples in the middle minutes (Tempo omits empty ones).
        let cart: Vec<Value> = [(0, 0.5), (1, 0.5), (6, 0.25), (7, 0.75)]
            .iter()
            .map(|(i, v)| json!({"timestampMs": (T0 + i * 60_000).to_string(), "value": v}))
            .collect();
        json!({"series": [
            {"labels": [{"key": "resource.service.name", "value": {"stringValue": "frontend"}}], "samples": frontend},
            {"labels": [{"key": "resource.service.name", "value": {"stringValue": "cart"}}], "samples": cart},
            {"labels": [{"key": "__name__", "value": {"stringValue": "rate"}}],
             "samples": [{"timestampMs": T0.to_string(), "value": 3}]}
        ]})
    }

    #[test]
    fn sparklines_per_series() {
        let series = series_from_json(&body());
        assert_eq!(series[0].labels, "rate");
        let window = Window {
            start_ms: T0,
            end_ms: T0 + 9 * 60_000,
            step_ms: 60_000,
        };
        insta::assert_snapshot!(render_range(&series, window, Style::plain(80)));
        let wide = Window {
            start_ms: T0 - 3_600_000,
            step_ms: 30_000,
            ..window
        };
        insta::assert_snapshot!(
            "sparklines_in_a_wider_window",
            render_range(&series, wide, Style::plain(80))
        );
    }

    #[test]
    fn long_ranges_are_averaged_into_the_width() {
        let samples: Vec<(u64, f64)> = (0..100).map(|i| (T0 + i * 1000, i as f64)).collect();
        let line = sparkline(&samples, T0, 1000, 100, 10);
        assert_eq!(line, "▁▂▃▃▄▅▆▆▇█");
    }

    #[test]
    fn labels_in_prometheus_spelling() {
        let labels = json!([
            {"key": "__name__", "value": {"stringValue": "quantile_over_time"}},
            {"key": "span.http.route", "value": {"stringValue": "/cart"}},
            {"key": "p", "value": {"doubleValue": 0.9}}
        ]);
        assert_eq!(
            labels_text(&labels),
            r#"quantile_over_time{span.http.route="/cart", p=0.9}"#
        );
        assert_eq!(labels_text(&json!([])), "{}");
    }

    #[test]
    fn instant_table() {
        let body = json!({"series": [
            {"labels": [{"key": "resource.service.name", "value": {"stringValue": "cart"}}], "value": 2},
            {"labels": [{"key": "resource.service.name", "value": {"stringValue": "api"}}], "value": 1234.5}
        ]});
        insta::assert_snapshot!(render_instant(&body, Style::plain(80)));
    }
}
