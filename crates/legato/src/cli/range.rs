//! `--start`, `--end` and `--since`: time points as Unix seconds (or nanoseconds), RFC 3339,
//! `now`, or a duration ago, resolved to the Unix seconds Tempo's API takes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct TimeRange {
    /// Start: Unix seconds, RFC 3339 (2024-05-01T12:00:00Z), `now`, or a duration ago (2h).
    #[arg(long)]
    pub start: Option<String>,
    /// End, in the same forms as --start (default: now).
    #[arg(long)]
    pub end: Option<String>,
    /// The last DURATION (15m, 1h, 2d) before --end.
    #[arg(long, conflicts_with = "start", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
}

impl TimeRange {
    /// `[start, end]` in Unix seconds, or None when no bound was given and there is no
    /// default span. `default_since` applies when neither --start nor --since is given.
    pub fn resolve(&self, now: SystemTime, default_since: Option<Duration>) -> anyhow::Result<Option<(u64, u64)>> {
        let now_secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let end = match &self.end {
            Some(text) => point("--end", text, now_secs)?,
            None => now_secs,
        };
        let start = match (&self.start, self.since.or(default_since)) {
            (Some(text), _) => point("--start", text, now_secs)?,
            (None, Some(since)) => end.saturating_sub(since.as_secs()),
            (None, None) if self.end.is_some() => bail!("--end needs --start or --since"),
            (None, None) => return Ok(None),
        };
        if end <= start {
            bail!("the range is empty: the start must be before the end");
        }
        Ok(Some((start, end)))
    }

    /// `start`/`end` query parameters for the resolved range.
    pub fn params(
        &self,
        now: SystemTime,
        default_since: Option<Duration>,
    ) -> anyhow::Result<Vec<(&'static str, String)>> {
        Ok(match self.resolve(now, default_since)? {
            Some((start, end)) => vec![("start", start.to_string()), ("end", end.to_string())],
            None => Vec::new(),
        })
    }
}

/// One time point in Unix seconds.
fn point(flag: &str, text: &str, now_secs: u64) -> anyhow::Result<u64> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_secs);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = text.parse().map_err(|_| anyhow!("{flag} {text:?} is too large"))?;
        // Like Tempo: more than 10 digits are nanoseconds.
        return Ok(if text.len() > 10 { n / 1_000_000_000 } else { n });
    }
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now_secs.saturating_sub(ago.as_secs()));
    }
    bail!("{flag} {text:?}: expected Unix seconds, RFC 3339 (2024-05-01T12:00:00Z), `now` or a duration ago (2h)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn range(start: Option<&str>, end: Option<&str>, since: Option<u64>) -> TimeRange {
        TimeRange {
            start: start.map(str::to_string),
            end: end.map(str::to_string),
            since: since.map(Duration::from_secs),
        }
    }

    fn resolve(r: &TimeRange, default: Option<u64>) -> anyhow::Result<Option<(u64, u64)>> {
        r.resolve(UNIX_EPOCH + Duration::from_secs(NOW), default.map(Duration::from_secs))
    }

    #[test]
    fn points_in_every_form() {
        assert_eq!(resolve(&range(None, None, None), None).unwrap(), None);
        assert_eq!(
            resolve(&range(None, None, None), Some(3600)).unwrap(),
            Some((NOW - 3600, NOW))
        );
        assert_eq!(
            resolve(&range(None, None, Some(60)), None).unwrap(),
            Some((NOW - 60, NOW))
        );
        assert_eq!(
            resolve(&range(Some("2h"), Some("1h"), None), None).unwrap(),
            Some((NOW - 7200, NOW - 3600))
        );
        assert_eq!(
            resolve(&range(Some("1699990000"), Some("1699999000000000000"), None), None).unwrap(),
            Some((1_699_990_000, 1_699_999_000))
        );
        assert_eq!(
            resolve(&range(Some("2023-11-14T22:00:00Z"), Some("now"), None), None).unwrap(),
            Some((1_699_999_200, NOW))
        );
        assert!(resolve(&range(None, Some("now"), None), None).is_err());
        assert!(resolve(&range(Some("now"), Some("1h"), None), None).is_err());
        let err = resolve(&range(Some("yesterday"), None, None), None).unwrap_err();
        assert!(err.to_string().contains("--start \"yesterday\""), "{err}");
    }
}
