//! Combining partial traces from several sources (live traces, the WAL, blocks, replicas)
//! into one, deduplicated by (span id, kind). Grouping an export's spans by trace is done on
//! the wire format (`crate::wire`).

use std::collections::HashSet;

use prost::Message;

use crate::common::{AnyValue, KeyValue, any_value};
use crate::resource::Resource;
use crate::trace::{ResourceSpans, ScopeSpans, Span, Status};

/// Combines partial traces into one: spans are deduplicated by (span id, kind), grouped under
/// identical resources and scopes, and sorted by start time. Every resource gets at least one
/// attribute, every scope and status is present: Grafana's trace view skips or crashes on
/// resources without attributes and on missing scopes or statuses.
pub fn combine(parts: impl IntoIterator<Item = ResourceSpans>) -> Vec<ResourceSpans> {
    let mut seen: HashSet<(Vec<u8>, i32)> = HashSet::new();
    let mut resources: Vec<(Vec<u8>, ResourceSpans)> = Vec::new();
    for rs in parts {
        let resource = normalise_resource(rs.resource);
        let key = [resource.encode_to_vec(), rs.schema_url.as_bytes().to_vec()].concat();
        let pos = match resources.iter().position(|(k, _)| *k == key) {
            Some(pos) => pos,
            None => {
                let fresh = ResourceSpans {
                    resource: Some(resource),
                    scope_spans: Vec::new(),
                    schema_url: rs.schema_url,
                };
                resources.push((key, fresh));
                resources.len() - 1
            }
        };
        let target = &mut resources[pos].1;
        for ss in rs.scope_spans {
            let scope = ss.scope.unwrap_or_default();
            let spans: Vec<Span> = ss
                .spans
                .into_iter()
                .filter(|s| seen.insert((s.span_id.clone(), s.kind)))
                .map(|mut s| {
                    s.status.get_or_insert_with(Status::default);
                    s
                })
                .collect();
            if spans.is_empty() {
                continue;
            }
            match target
                .scope_spans
                .iter_mut()
                .find(|existing| existing.scope.as_ref() == Some(&scope) && existing.schema_url == ss.schema_url)
            {
                Some(existing) => existing.spans.extend(spans),
                None => target.scope_spans.push(ScopeSpans {
                    scope: Some(scope),
                    spans,
                    schema_url: ss.schema_url,
                }),
            }
        }
    }
    let mut out: Vec<ResourceSpans> = resources
        .into_iter()
        .map(|(_, rs)| rs)
        .filter(|rs| !rs.scope_spans.is_empty())
        .collect();
    for rs in &mut out {
        for ss in &mut rs.scope_spans {
            ss.spans.sort_by_key(|s| s.start_time_unix_nano);
        }
        rs.scope_spans.sort_by_key(first_start);
    }
    out.sort_by_key(|rs| rs.scope_spans.first().map(first_start).unwrap_or(0));
    out
}

/// Cuts a combined trace to its earliest spans whose `tempopb.Trace` encoding fits in
/// `max_bytes`: spans are taken in order of start time until the next one would take the
/// trace over the limit; resources and scopes left without spans are left out. Returns the
/// trace and whether it was cut (it was larger than `max_bytes`).
///
/// Tempo's frontend instead keeps whole query-job results until their combined size first
/// passes the limit, so its partial trace can exceed the limit and holds whichever spans
/// those jobs found; this one is within the limit and is the trace's beginning.
pub fn cut_to_size(mut batches: Vec<ResourceSpans>, max_bytes: usize) -> (Vec<ResourceSpans>, bool) {
    if trace_len(&batches) <= max_bytes {
        return (batches, false);
    }
    // Sizes without their children: each resource spans without its scopes, each scope
    // spans without its spans.
    let mut rs_base = Vec::with_capacity(batches.len());
    let mut ss_base = Vec::with_capacity(batches.len());
    let mut order = Vec::new();
    for (r, rs) in batches.iter().enumerate() {
        let scopes: Vec<usize> = rs.scope_spans.iter().map(|ss| ss.encoded_len()).collect();
        rs_base.push(rs.encoded_len() - scopes.iter().map(|l| field_len(*l)).sum::<usize>());
        let mut bases = Vec::with_capacity(scopes.len());
        for (s, (ss, ss_len)) in rs.scope_spans.iter().zip(&scopes).enumerate() {
            let mut spans_len = 0;
            for (i, span) in ss.spans.iter().enumerate() {
                let len = span.encoded_len();
                spans_len += field_len(len);
                order.push((span.start_time_unix_nano, r, s, i, len));
            }
            bases.push(ss_len - spans_len);
        }
        ss_base.push(bases);
    }
    order.sort_unstable();
    // The encoded length of each kept resource and scope (`None` until it holds a span), and
    // of the whole kept trace; a span is kept when the trace stays within the limit.
    let mut rs_len: Vec<Option<usize>> = vec![None; batches.len()];
    let mut ss_len: Vec<Vec<Option<usize>>> = ss_base.iter().map(|b| vec![None; b.len()]).collect();
    let mut kept: Vec<Vec<Vec<bool>>> = batches
        .iter()
        .map(|rs| rs.scope_spans.iter().map(|ss| vec![false; ss.spans.len()]).collect())
        .collect();
    let mut total = 0;
    for (_, r, s, i, len) in order {
        let scope = ss_len[r][s].unwrap_or(ss_base[r][s]) + field_len(len);
        let resource = rs_len[r].unwrap_or(rs_base[r]) - ss_len[r][s].map_or(0, field_len) + field_len(scope);
        let trace = total - rs_len[r].map_or(0, field_len) + field_len(resource);
        if trace > max_bytes {
            break;
        }
        (ss_len[r][s], rs_len[r], total) = (Some(scope), Some(resource), trace);
        kept[r][s][i] = true;
    }
    for (rs, kept) in batches.iter_mut().zip(&kept) {
        for (ss, kept) in rs.scope_spans.iter_mut().zip(kept) {
            let mut keep = kept.iter();
            ss.spans.retain(|_| keep.next().copied().unwrap_or(false));
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    batches.retain(|rs| !rs.scope_spans.is_empty());
    (batches, true)
}

/// The size of `tempopb.Trace { resource_spans: batches }` encoded: what Tempo compares with
/// `max_bytes_per_trace` on read.
pub fn trace_len(batches: &[ResourceSpans]) -> usize {
    batches.iter().map(|rs| field_len(rs.encoded_len())).sum()
}

/// The encoded size of a length-delimited field with a one-byte tag (fields 1 to 15).
fn field_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

fn first_start(ss: &ScopeSpans) -> u64 {
    ss.spans.first().map(|s| s.start_time_unix_nano).unwrap_or(0)
}

fn normalise_resource(resource: Option<Resource>) -> Resource {
    let mut resource = resource.unwrap_or_default();
    if resource.attributes.is_empty() {
        resource.attributes.push(KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("unknown_service".into())),
            }),
            ..Default::default()
        });
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: u8, id: u8, start: u64) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            start_time_unix_nano: start,
            ..Default::default()
        }
    }

    fn batch(service: &str, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    #[test]
    fn combine_dedups_and_sorts() {
        let out = combine(vec![
            batch("a", vec![span(1, 2, 20), span(1, 1, 10)]),
            batch("b", vec![span(1, 3, 5)]),
            batch("a", vec![span(1, 1, 10)]),
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(1, 4, 1)],
                    ..Default::default()
                }],
                schema_url: String::new(),
            },
        ]);
        assert_eq!(crate::span_count(&out), 4);
        assert_eq!(out.len(), 3);
        let a = out.iter().find(|rs| rs.scope_spans[0].spans.len() == 2).unwrap();
        assert_eq!(a.scope_spans[0].spans[0].start_time_unix_nano, 10);
        assert!(
            out.iter()
                .all(|rs| !rs.resource.as_ref().unwrap().attributes.is_empty())
        );
        assert!(out.iter().all(|rs| {
            rs.scope_spans
                .iter()
                .all(|ss| ss.scope.is_some() && ss.spans.iter().all(|s| s.status.is_some()))
        }));
    }

    /// The trace of the `k` earliest spans, as `cut_to_size` should keep them.
    fn earliest(trace: &[ResourceSpans], k: usize) -> Vec<ResourceSpans> {
        let mut starts: Vec<(u64, Vec<u8>)> = trace
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| (s.start_time_unix_nano, s.span_id.clone()))
            .collect();
        starts.sort();
        let first: HashSet<Vec<u8>> = starts.into_iter().take(k).map(|(_, id)| id).collect();
        let mut out = trace.to_vec();
        for rs in &mut out {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|s| first.contains(&s.span_id));
            }
            rs.scope_spans.retain(|ss| !ss.spans.is_empty());
        }
        out.retain(|rs| !rs.scope_spans.is_empty());
        out
    }

    /// Against brute force: for every limit, the cut trace is the longest run of earliest
    /// spans whose `tempopb.Trace` encoding fits, across resources and scopes of all sizes.
    #[test]
    fn cut_to_size_keeps_the_earliest_spans_that_fit() {
        let mut a = batch("a", vec![span(1, 1, 10), span(1, 2, 40), span(1, 3, 70)]);
        a.scope_spans.push(ScopeSpans {
            scope: Some(crate::common::InstrumentationScope {
                name: "a scope with a longer name".into(),
                ..Default::default()
            }),
            spans: vec![span(1, 4, 20), span(1, 5, 80)],
            schema_url: String::new(),
        });
        let mut big = span(1, 6, 30);
        big.name = "x".repeat(200);
        let trace = vec![a, batch("service-b", vec![big, span(1, 7, 50), span(1, 8, 60)])];
        let encoded = |t: &[ResourceSpans]| {
            crate::tempopb::Trace {
                resource_spans: t.to_vec(),
            }
            .encoded_len()
        };
        let full = encoded(&trace);
        let sizes: Vec<usize> = (0..=8).map(|k| encoded(&earliest(&trace, k))).collect();
        for max in 0..=full + 1 {
            let (cut, was_cut) = cut_to_size(trace.clone(), max);
            let k = sizes.iter().rposition(|s| *s <= max).unwrap_or(0);
            assert_eq!(was_cut, full > max, "max {max}");
            assert_eq!(cut, earliest(&trace, k), "max {max}");
            assert!(encoded(&cut) <= max || !was_cut, "max {max}");
        }
    }
}
