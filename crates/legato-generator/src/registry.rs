//! Series the processors update: counters and histograms keyed by metric name and labels,
//! bounded per tenant (`max_active_series`), dropped when stale, collected into remote-write
//! time series.

use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};

use crate::remote_write::{Exemplar, Label, Sample, TimeSeries};

/// Label pairs sorted by name.
pub type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: &'static str,
    labels: Labels,
}

/// A borrowed `Key` for lookups: hashes the same (a `Vec` hashes as its slice), so an update
/// of an existing series allocates nothing.
#[derive(Hash)]
struct KeyRef<'a> {
    name: &'static str,
    labels: &'a [(String, String)],
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.name == key.name && self.labels == key.labels.as_slice()
    }
}

#[derive(Debug)]
enum Value {
    Counter(f64),
    Histogram(Histogram),
    /// Span metrics' three series of one label set (calls, size, latency), kept in one entry
    /// so a span costs one lookup; collected as the three families.
    SpanMetrics {
        calls: f64,
        size: f64,
        latency: Histogram,
    },
}

#[derive(Debug)]
struct Histogram {
    bounds: Arc<[f64]>,
    /// Per bucket (not cumulative), plus one for +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &Arc<[f64]>) -> Self {
        Self {
            bounds: bounds.clone(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }
}

impl Value {
    /// The series it stands for, against `max_active_series`.
    fn weight(&self) -> usize {
        match self {
            Value::SpanMetrics { .. } => 3,
            _ => 1,
        }
    }
}

#[derive(Debug)]
struct Series {
    value: Value,
    /// Unix ms of the first update, reported once as a 0 sample so `rate()` sees the first
    /// increase.
    created_ms: i64,
    updated_ms: i64,
    reported: bool,
    /// The latest observation's trace id (hex-encoded only when collected), value and time.
    exemplar: Option<([u8; 16], f64, i64)>,
}

/// One tenant's series.
#[derive(Debug, Default)]
pub struct Registry {
    series: HashMap<Key, Series>,
    /// Series held (a span-metrics entry holds three).
    active: usize,
    /// Updates refused because the tenant was at `max_active_series`.
    pub refused: u64,
}

impl Registry {
    pub fn active(&self) -> usize {
        self.active
    }

    fn entry(
        &mut self,
        name: &'static str,
        labels: &[(String, String)],
        max_active: usize,
        now_ms: i64,
        init: impl FnOnce() -> Value,
    ) -> Option<&mut Series> {
        // One lookup for an existing series (the common case), one insert for a new one.
        let full = max_active > 0 && self.active >= max_active;
        let active = &mut self.active;
        let mut new_series = |init: Value| {
            *active += init.weight();
            Series {
                value: init,
                created_ms: now_ms,
                updated_ms: now_ms,
                reported: false,
                exemplar: None,
            }
        };
        let series = if !full {
            match self.series.entry_ref(&KeyRef { name, labels }) {
                hashbrown::hash_map::EntryRef::Occupied(o) => o.into_mut(),
                hashbrown::hash_map::EntryRef::Vacant(v) => {
                    let key = Key {
                        name,
                        labels: labels.to_vec(),
                    };
                    v.insert_with_key(key, new_series(init()))
                }
            }
        } else if self.series.contains_key(&KeyRef { name, labels }) {
            self.series.get_mut(&KeyRef { name, labels })?
        } else {
            // Past the limit, updates go to one overflow series per metric (as in Tempo), so
            // totals stay right and memory stays bounded.
            self.refused += 1;
            let key = Key {
                name,
                labels: vec![("metric_overflow".into(), "true".into())],
            };
            self.series.entry(key).or_insert_with(|| new_series(init()))
        };
        series.updated_ms = now_ms;
        Some(series)
    }

    pub fn add(&mut self, name: &'static str, labels: &[(String, String)], by: f64, max_active: usize, now_ms: i64) {
        if let Some(s) = self.entry(name, labels, max_active, now_ms, || Value::Counter(0.0))
            && let Value::Counter(v) = &mut s.value
        {
            *v += by;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        name: &'static str,
        labels: &[(String, String)],
        bounds: &Arc<[f64]>,
        value: f64,
        exemplar: Option<[u8; 16]>,
        max_active: usize,
        now_ms: i64,
    ) {
        let init = || Value::Histogram(Histogram::new(bounds));
        let Some(s) = self.entry(name, labels, max_active, now_ms, init) else {
            return;
        };
        if let Value::Histogram(h) = &mut s.value {
            h.observe(value);
        }
        if let Some(trace_id) = exemplar {
            s.exemplar = Some((trace_id, value, now_ms));
        }
    }

    /// One span for span metrics: its call, its size and its latency, in one lookup.
    #[allow(clippy::too_many_arguments)]
    pub fn observe_span(
        &mut self,
        labels: &[(String, String)],
        size: f64,
        bounds: &Arc<[f64]>,
        seconds: f64,
        exemplar: Option<[u8; 16]>,
        max_active: usize,
        now_ms: i64,
    ) {
        let init = || Value::SpanMetrics {
            calls: 0.0,
            size: 0.0,
            latency: Histogram::new(bounds),
        };
        let Some(s) = self.entry(crate::spanmetrics::CALLS, labels, max_active, now_ms, init) else {
            return;
        };
        if let Value::SpanMetrics {
            calls,
            size: bytes,
            latency,
        } = &mut s.value
        {
            *calls += 1.0;
            *bytes += size;
            latency.observe(seconds);
        }
        if let Some(trace_id) = exemplar {
            s.exemplar = Some((trace_id, seconds, now_ms));
        }
    }

    /// Drops series not updated since `stale_before_ms`.
    pub fn drop_stale(&mut self, stale_before_ms: i64) {
        let active = &mut self.active;
        self.series.retain(|_, s| {
            let keep = s.updated_ms >= stale_before_ms;
            if !keep {
                *active -= s.value.weight();
            }
            keep
        });
    }

    /// Every series as remote-write time series at `now_ms`, `external` labels added.
    pub fn collect(&mut self, now_ms: i64, external: &Labels, exemplars: bool) -> Vec<TimeSeries> {
        let mut out = Vec::new();
        for (key, s) in &mut self.series {
            // A new series' first report starts with a 0 one second before the current minute
            // (as Tempo does), so `rate()` and `increase()` see its first increments.
            let first = !s.reported;
            let zero_at = s.created_ms.min(now_ms - now_ms.rem_euclid(60_000) - 1_000);
            s.reported = true;
            let samples = |v: f64| {
                let mut samples = Vec::with_capacity(2);
                if first {
                    samples.push(Sample {
                        value: 0.0,
                        timestamp: zero_at,
                    });
                }
                samples.push(Sample {
                    value: v,
                    timestamp: now_ms,
                });
                samples
            };
            let exemplar = s.exemplar.as_ref().filter(|_| exemplars);
            match &s.value {
                Value::Counter(v) => out.push(series(key.name, &key.labels, None, external, samples(*v))),
                Value::Histogram(h) => {
                    histogram(&mut out, key.name, &key.labels, h, exemplar, first, external, &samples)
                }
                Value::SpanMetrics { calls, size, latency } => {
                    use crate::spanmetrics::{CALLS, LATENCY, SIZE};
                    out.push(series(CALLS, &key.labels, None, external, samples(*calls)));
                    out.push(series(SIZE, &key.labels, None, external, samples(*size)));
                    histogram(
                        &mut out,
                        LATENCY,
                        &key.labels,
                        latency,
                        exemplar,
                        first,
                        external,
                        &samples,
                    );
                }
            }
        }
        out
    }
}

/// A histogram's `_bucket` (cumulative, with the exemplar on the bucket holding its value),
/// `_sum` and `_count` series.
#[allow(clippy::too_many_arguments)]
fn histogram(
    out: &mut Vec<TimeSeries>,
    name: &'static str,
    labels: &Labels,
    h: &Histogram,
    exemplar: Option<&([u8; 16], f64, i64)>,
    first: bool,
    external: &Labels,
    samples: &dyn Fn(f64) -> Vec<Sample>,
) {
    let exemplar_bucket = exemplar.map(|(_, v, _)| h.bounds.iter().position(|b| v <= b).unwrap_or(h.bounds.len()));
    let mut cumulative = 0u64;
    for (i, c) in h.counts.iter().enumerate() {
        cumulative += c;
        let le = h.bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| format_bound(*b));
        let mut ts = series(
            bucket_name(name),
            labels,
            Some(&le),
            external,
            samples(cumulative as f64),
        );
        if exemplar_bucket == Some(i)
            && let Some((trace_id, value, at)) = exemplar
        {
            ts.exemplars.push(Exemplar {
                labels: vec![Label {
                    name: "traceID".into(),
                    value: legato_model::TraceId(*trace_id).to_short_hex(),
                }],
                value: *value,
                timestamp: *at,
            });
        }
        out.push(ts);
    }
    // Tempo starts `_count` and `_bucket` at 0, not `_sum`.
    let mut sum_series = series(sum_name(name), labels, None, external, samples(h.sum));
    if first {
        sum_series.samples.remove(0);
    }
    out.push(sum_series);
    out.push(series(
        count_name(name),
        labels,
        None,
        external,
        samples(h.count as f64),
    ));
}

fn bucket_name(name: &'static str) -> String {
    format!("{name}_bucket")
}

fn sum_name(name: &'static str) -> String {
    format!("{name}_sum")
}

fn count_name(name: &'static str) -> String {
    format!("{name}_count")
}

/// Bucket bounds as Prometheus writes them (`0.002`, `1`, `16.384`).
fn format_bound(b: f64) -> String {
    let s = format!("{b}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn series(
    name: impl Into<String>,
    labels: &Labels,
    le: Option<&str>,
    external: &Labels,
    samples: Vec<Sample>,
) -> TimeSeries {
    let mut all: Vec<Label> = Vec::with_capacity(labels.len() + external.len() + 2);
    all.push(Label {
        name: "__name__".into(),
        value: name.into(),
    });
    for (k, v) in labels.iter().chain(external) {
        all.push(Label {
            name: k.clone(),
            value: v.clone(),
        });
    }
    if let Some(le) = le {
        all.push(Label {
            name: "le".into(),
            value: le.to_string(),
        });
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all.dedup_by(|later, earlier| later.name == earlier.name);
    TimeSeries {
        labels: all,
        samples,
        exemplars: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_limits_and_staleness() {
        let mut r = Registry::default();
        let l = |v: &str| vec![("service".to_string(), v.to_string())];
        r.add("calls_total", &l("a"), 1.0, 2, 1_000);
        r.add("calls_total", &l("a"), 2.0, 2, 1_500);
        let bounds: Arc<[f64]> = Arc::from(vec![0.1, 1.0]);
        let mut abc = [0u8; 16];
        abc[14..].copy_from_slice(&[0x0a, 0xbc]);
        r.observe("latency", &l("a"), &bounds, 0.5, Some(abc), 2, 1_500);
        r.add("calls_total", &l("b"), 1.0, 2, 1_500);
        assert_eq!(
            (r.active(), r.refused),
            (3, 1),
            "the third series went to the overflow series"
        );
        let out = r.collect(2_000, &vec![("cluster".into(), "eu".into())], true);
        let find = |name: &str, le: Option<&str>| {
            out.iter()
                .find(|t| {
                    t.labels.iter().any(|l| l.name == "__name__" && l.value == name)
                        && t.labels.iter().any(|l| l.name == "service" && l.value == "a")
                        && le.is_none_or(|le| t.labels.iter().any(|l| l.name == "le" && l.value == le))
                })
                .unwrap()
        };
        let calls = find("calls_total", None);
        assert_eq!(
            calls.samples.iter().map(|s| s.value).collect::<Vec<_>>(),
            vec![0.0, 3.0]
        );
        assert!(calls.labels.iter().any(|l| l.name == "cluster" && l.value == "eu"));
        assert_eq!(find("latency_bucket", Some("0.1")).samples.last().unwrap().value, 0.0);
        let one = find("latency_bucket", Some("1"));
        assert_eq!(one.samples.last().unwrap().value, 1.0);
        assert_eq!(one.exemplars[0].labels[0].value, "abc");
        assert_eq!(one.exemplars[0].labels[0].name, "traceID");
        let overflow = out
            .iter()
            .find(|t| {
                t.labels
                    .iter()
                    .any(|l| l.name == "metric_overflow" && l.value == "true")
            })
            .unwrap();
        assert_eq!(overflow.samples.last().unwrap().value, 1.0);
        assert_eq!(find("latency_bucket", Some("+Inf")).samples.last().unwrap().value, 1.0);
        let sum = find("latency_sum", None);
        assert_eq!(
            (sum.samples.len(), sum.samples[0].value),
            (1, 0.5),
            "no initial 0 on _sum"
        );
        let again = r.collect(3_000, &Vec::new(), false);
        assert!(again.iter().all(|t| t.samples.len() == 1), "the 0 sample is sent once");
        r.drop_stale(1_600);
        assert_eq!(r.active(), 0);
    }
}
