//! Turning matched spansets into search results (Tempo's `TraceSearchMetadata` shape, without
//! its JSON), and merging results for the same trace found in several places.

use std::collections::BTreeMap;

use legato_model::span::{AttrValue, TraceData};

use crate::eval::{Plan, Spanset};

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct HitSpan {
    pub span_id: [u8; 8],
    /// Shown only when the query references or selects the name.
    pub name: Option<String>,
    pub start_unix_nano: u64,
    pub duration_nanos: u64,
    pub attrs: Vec<(String, AttrValue)>,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct HitSpanset {
    pub spans: Vec<HitSpan>,
    /// Matching spans before the per-spanset cap.
    pub matched: u32,
    pub attrs: Vec<(String, AttrValue)>,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ServiceStats {
    pub span_count: u32,
    pub error_count: u32,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TraceHit {
    pub trace_id: [u8; 16],
    pub root_service_name: Option<String>,
    pub root_trace_name: Option<String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub spansets: Vec<HitSpanset>,
    pub service_stats: BTreeMap<String, ServiceStats>,
    /// Fingerprints of the copies of trace data merged into this hit: a replica of data
    /// already merged (the same spans flushed by several ingesters) is not counted again.
    #[serde(default)]
    pub copies: Vec<u64>,
}

impl TraceHit {
    pub fn duration_ms(&self) -> u32 {
        (self.end_unix_nano.saturating_sub(self.start_unix_nano) / 1_000_000).min(u64::from(u32::MAX)) as u32
    }

    /// Folds in a hit for the same trace from another source (another block, live data).
    pub fn merge(&mut self, other: TraceHit) {
        if !other.copies.is_empty() && other.copies.iter().all(|c| self.copies.contains(c)) {
            return;
        }
        self.copies.extend(
            other
                .copies
                .iter()
                .filter(|c| !self.copies.contains(c))
                .copied()
                .collect::<Vec<_>>(),
        );
        self.start_unix_nano = self.start_unix_nano.min(other.start_unix_nano);
        self.end_unix_nano = self.end_unix_nano.max(other.end_unix_nano);
        if self.root_trace_name.is_none() {
            self.root_service_name = other.root_service_name;
            self.root_trace_name = other.root_trace_name;
        }
        for (svc, stats) in other.service_stats {
            let entry = self.service_stats.entry(svc).or_default();
            entry.span_count += stats.span_count;
            entry.error_count += stats.error_count;
        }
        for set in other.spansets {
            match self.spansets.iter_mut().find(|s| s.attrs == set.attrs) {
                Some(existing) => {
                    existing.matched += set.matched;
                    for span in set.spans {
                        if !existing.spans.iter().any(|s| s.span_id == span.span_id) {
                            existing.spans.push(span);
                        }
                    }
                }
                None => self.spansets.push(set),
            }
        }
    }

    /// Applies the spans-per-spanset cap (0 = unlimited).
    pub fn cap_spans(&mut self, spss: usize) {
        if spss == 0 {
            return;
        }
        for set in &mut self.spansets {
            set.spans.sort_by_key(|s| s.start_unix_nano);
            set.spans.truncate(spss);
        }
    }
}

/// Builds the result for a trace that matched. `None` when `spansets` is empty.
pub fn hit(plan: &Plan, trace: &TraceData, spansets: &[Spanset], spss: usize) -> Option<TraceHit> {
    if spansets.is_empty() {
        return None;
    }
    let root = trace.root();
    let mut service_stats: BTreeMap<String, ServiceStats> = BTreeMap::new();
    for s in &trace.spans {
        let entry = service_stats.entry(s.origin.service_name.clone()).or_default();
        entry.span_count += 1;
        if s.status_code == 2 {
            entry.error_count += 1;
        }
    }
    let sets = spansets
        .iter()
        .map(|ss| {
            let take = if spss == 0 {
                ss.spans.len()
            } else {
                spss.min(ss.spans.len())
            };
            HitSpanset {
                spans: ss.spans[..take]
                    .iter()
                    .map(|&i| {
                        let s = &trace.spans[i];
                        HitSpan {
                            span_id: s.span_id,
                            name: plan.shows_name.then(|| s.name.clone()),
                            start_unix_nano: s.start_unix_nano,
                            duration_nanos: s.duration_nanos(),
                            attrs: plan.span_attributes(trace, i),
                        }
                    })
                    .collect(),
                matched: ss.spans.len() as u32,
                attrs: ss
                    .attrs
                    .iter()
                    .filter_map(|(k, v)| v.to_attr().map(|v| (k.clone(), v)))
                    .collect(),
            }
        })
        .collect();
    Some(TraceHit {
        trace_id: trace.trace_id,
        root_service_name: root.map(|r| r.origin.service_name.clone()),
        root_trace_name: root.map(|r| r.name.clone()),
        start_unix_nano: trace.start_unix_nano(),
        end_unix_nano: trace.end_unix_nano(),
        spansets: sets,
        service_stats,
        copies: vec![copy_fingerprint(trace)],
    })
}

/// Identifies one copy of (part of) a trace by its set of span ids, in any order.
pub fn copy_fingerprint(trace: &TraceData) -> u64 {
    trace
        .spans
        .iter()
        .fold(0u64, |acc, s| acc.wrapping_add(span_id_mix(s.span_id)))
}

/// One span's part of `copy_fingerprint` (the fingerprint is their wrapping sum, so it does
/// not depend on span order).
pub fn span_id_mix(span_id: [u8; 8]) -> u64 {
    let mut z = u64::from_le_bytes(span_id).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
