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
}
