//! Trace-by-id combines ingester data with blocks and deduplicates spans.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;

use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::push::RecentTraces;
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_querier::Querier;
use legato_querier::metrics::QuerierMetrics;
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{BlockReader, Blocklist, ObjectStore, TraceInput, encode_block, write_block};

fn batch(trace: u8, spans: std::ops::Range<u8>) -> ResourceSpans {
    ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: spans
                .map(|i| Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![i; 8],
                    start_time_unix_nano: u64::from(i),
                    end_time_unix_nano: 1_000_000_000_000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

struct Recent(Vec<ResourceSpans>);

#[async_trait::async_trait]
impl RecentTraces for Recent {
    async fn find_trace(&self, _: &TenantId, _: &TraceId) -> Vec<ResourceSpans> {
        self.0.clone()
    }
}

#[tokio::test]
async fn combines_ingester_and_blocks_without_duplicates() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    let blocklist = Arc::new(Blocklist::default());
    // Two blocks overlap on span 3 (a replayed WAL, say); the ingester holds 4..6 and 5 again.
    for spans in [1..4, 3..5] {
        let block = encode_block(
            &tenant,
            BlockId::random(),
            vec![TraceInput {
                id: TraceId([9; 16]),
                batches: vec![batch(9, spans)],
            }],
            0,
        )
        .unwrap();
        write_block(&store, &block).await.unwrap();
        blocklist.add(block.meta);
    }
    let recent: Arc<dyn RecentTraces> = Arc::new(Recent(vec![batch(9, 4..7)]));
    let reader = Arc::new(BlockReader::new(store, StorageMetrics::default()));
    let querier = Querier::new(vec![recent], reader, blocklist, QuerierMetrics::default());
    let found = querier
        .find_trace(&tenant, &TraceId([9; 16]), None, None)
        .await
        .unwrap();
    assert_eq!(legato_proto::span_count(&found.batches), 6);
    assert_eq!(found.blocks_inspected, 2);
    // A time range that excludes the blocks leaves only the ingester's spans.
    let found = querier
        .find_trace(&tenant, &TraceId([9; 16]), Some(2_000), Some(3_000))
        .await
        .unwrap();
    assert_eq!(legato_proto::span_count(&found.batches), 3);
}

#[tokio::test]
async fn tag_summaries_come_from_tags_json_or_a_scan() {
    use legato_proto::common::{AnyValue, KeyValue, any_value::Value};
    use legato_traceql::ast::{Attribute, AttributeScope, FieldExpr};

    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    let blocklist = Arc::new(Blocklist::default());
    let with_attr = |v: &str| {
        let mut b = batch(9, 1..2);
        b.scope_spans[0].spans[0].attributes.push(KeyValue {
            key: "route".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        });
        b
    };
    // One block without tags.json (scanned), one whose tags.json says something the data does
    // not, to prove the summary is what answers.
    let plain = encode_block(
        &tenant,
        BlockId::random(),
        vec![TraceInput {
            id: TraceId([1; 16]),
            batches: vec![with_attr("/scanned")],
        }],
        0,
    )
    .unwrap();
    write_block(&store, &plain).await.unwrap();
    blocklist.add(plain.meta);
    let mut summarised = encode_block(
        &tenant,
        BlockId::random(),
        vec![TraceInput {
            id: TraceId([2; 16]),
            batches: vec![with_attr("/data")],
        }],
        0,
    )
    .unwrap();
    let mut stored = legato_traceql::tags::TagSummary::default();
    let mut t = legato_model::span::TraceData {
        trace_id: [2; 16],
        spans: vec![legato_model::span::SpanData::default()],
    };
    t.spans[0].attrs.push((
        "route".into(),
        legato_model::span::AttrValue::Str("/from-summary".into()),
    ));
    stored.add_trace(&t, None);
    summarised.tags = Some(bytes::Bytes::from(stored.to_json()));
    write_block(&store, &summarised).await.unwrap();
    blocklist.add(summarised.meta);

    let reader = Arc::new(BlockReader::new(store, StorageMetrics::default()));
    let querier = Querier::new(vec![], reader, blocklist, QuerierMetrics::default());
    let summary = querier
        .tags(&tenant, None, None, None, Default::default())
        .await
        .unwrap();
    let field = FieldExpr::Attribute(Attribute {
        scope: AttributeScope::Span,
        parent: false,
        name: "route".into(),
    });
    let values: Vec<String> = summary.values(&field).into_iter().map(|v| v.value).collect();
    assert_eq!(values, vec!["/from-summary", "/scanned"]);
}

/// Three ingesters flushed the same trace (replication factor 3), spans 1-3; a fourth level-0
/// block holds later spans 4-5 of it, which must count: 5 distinct spans in all.
async fn replicated_blocks() -> (TenantId, Querier) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    let blocklist = Arc::new(Blocklist::default());
    for spans in [1..4, 1..4, 1..4, 4..6] {
        let block = encode_block(
            &tenant,
            BlockId::random(),
            vec![TraceInput {
                id: TraceId([7; 16]),
                batches: vec![batch(7, spans)],
            }],
            0,
        )
        .unwrap();
        write_block(&store, &block).await.unwrap();
        blocklist.add(block.meta);
    }
    let reader = Arc::new(BlockReader::new(store, StorageMetrics::default()));
    (
        tenant,
        Querier::new(Vec::new(), reader, blocklist, QuerierMetrics::default()),
    )
}

/// `{ }` over all time, limit 20, every span of each hit.
async fn search_all(
    querier: &Querier,
    tenant: &TenantId,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<legato_querier::SearchOutcome, legato_querier::QueryError> {
    let query = legato_traceql::parse("{ }").unwrap();
    let request = legato_querier::SearchRequest {
        plan: Arc::new(legato_traceql::eval::Plan::new(query).unwrap()),
        query_text: "{ }".into(),
        start_ns: None,
        end_ns: None,
        limit: 20,
        spss: 0,
        progress: None,
        cancel,
    };
    querier.search(tenant, request).await
}

/// `{ } | count_over_time()` over the first minute, in one step.
async fn count_spans(
    querier: &Querier,
    tenant: &TenantId,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<(Vec<legato_traceql::metrics::Series>, legato_querier::SearchOutcome), legato_querier::QueryError> {
    let mut query = legato_traceql::parse("{ } | count_over_time()").unwrap();
    let stage = query.metrics.take().unwrap();
    let request = legato_querier::MetricsRequest {
        plan: Arc::new(legato_traceql::eval::Plan::new(query).unwrap()),
        stage,
        start_ns: 0,
        end_ns: 60_000_000_000,
        step_ns: 60_000_000_000,
        max_exemplars: 0,
        max_series: 0,
        cancel,
        query_text: "{ } | count_over_time()".into(),
    };
    querier.metrics(tenant, request).await
}

#[tokio::test]
async fn metrics_count_replicated_blocks_once() {
    let (tenant, querier) = replicated_blocks().await;
    let (series, _) = count_spans(&querier, &tenant, Default::default()).await.unwrap();
    let total: f64 = series.iter().flat_map(|s| s.samples.iter().map(|(_, v)| v)).sum();
    assert_eq!(total, 5.0, "{series:?}");
}

#[tokio::test]
async fn search_counts_replicated_blocks_once() {
    let (tenant, querier) = replicated_blocks().await;
    let outcome = search_all(&querier, &tenant, Default::default()).await.unwrap();
    assert_eq!(outcome.traces.len(), 1);
    let hit = &outcome.traces[0];
    let spans: u32 = hit.service_stats.values().map(|s| s.span_count).sum();
    assert_eq!(spans, 5, "{hit:?}");
    assert_eq!(hit.spansets.iter().map(|s| s.matched).sum::<u32>(), 5);
}

/// Issue 10: a query whose client went away (or whose timeout passed) stops: no block is
/// scanned once its token is cancelled, and the caller is told why.
#[tokio::test]
async fn cancelled_queries_scan_nothing() {
    let (tenant, querier) = replicated_blocks().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    let search = search_all(&querier, &tenant, cancel.clone()).await;
    assert!(
        matches!(search, Err(legato_querier::QueryError::Cancelled)),
        "{search:?}"
    );
    let metrics = count_spans(&querier, &tenant, cancel.clone()).await;
    assert!(matches!(metrics, Err(legato_querier::QueryError::Cancelled)));
    let tags = querier.tags(&tenant, None, None, None, cancel).await;
    assert!(matches!(tags, Err(legato_querier::QueryError::Cancelled)));
}

/// Issue 10: a corrupt block is skipped, logged and counted; search answers from the others,
/// and metrics say their answer is partial, naming the block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_block_is_skipped_and_counted() {
    use legato_storage::object_store::{ObjectStoreExt, PutPayload};
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    let blocklist = Arc::new(Blocklist::default());
    let mut corrupt = None;
    for trace in [1u8, 2, 3] {
        let mut traces = vec![TraceInput {
            id: TraceId([trace; 16]),
            batches: vec![batch(trace, 1..3)],
        }];
        if trace == 3 {
            // Trace 4 has spans in the corrupt block and here.
            traces.push(TraceInput {
                id: TraceId([4; 16]),
                batches: vec![batch(4, 5..6)],
            });
        } else if trace == 2 {
            traces.push(TraceInput {
                id: TraceId([4; 16]),
                batches: vec![batch(4, 1..3)],
            });
        }
        let block = encode_block(&tenant, BlockId::random(), traces, 0).unwrap();
        write_block(&store, &block).await.unwrap();
        if trace == 2 {
            let path = legato_storage::BlockPaths::new(&tenant, block.meta.block_id).data();
            let truncated = block.data.slice(..block.data.len() / 2);
            store.put(&path, PutPayload::from(truncated)).await.unwrap();
            corrupt = Some(block.meta.block_id);
        }
        blocklist.add(block.meta);
    }
    let metrics = QuerierMetrics::default();
    let reader = Arc::new(BlockReader::new(store, StorageMetrics::default()));
    let querier = Querier::new(Vec::new(), reader, blocklist, metrics.clone());

    let outcome = search_all(&querier, &tenant, Default::default()).await.unwrap();
    let mut found: Vec<u8> = outcome.traces.iter().map(|t| t.trace_id[0]).collect();
    found.sort_unstable();
    assert_eq!(found, vec![1, 3, 4]);

    let (series, outcome) = count_spans(&querier, &tenant, Default::default()).await.unwrap();
    let total: f64 = series.iter().flat_map(|s| s.samples.iter().map(|(_, v)| v)).sum();
    assert_eq!(total, 5.0);
    let missing = outcome.missing_data.unwrap();
    assert!(missing.contains(&corrupt.unwrap().to_string()), "{missing}");
    assert_eq!(metrics.blocks_skipped.get(), 2);

    // Trace-by-id: the readable parts answer, and a trace only the unreadable block holds is an
    // error naming that block, never "not found".
    let partly = querier
        .find_trace(&tenant, &TraceId([4; 16]), None, None)
        .await
        .unwrap();
    assert_eq!(legato_proto::span_count(&partly.batches), 1);
    let only_there = querier.find_trace(&tenant, &TraceId([2; 16]), None, None).await;
    match only_there {
        Err(legato_querier::QueryError::Block { block, .. }) => assert_eq!(block, corrupt.unwrap().to_string()),
        other => panic!("expected a block error, got {other:?}"),
    }
    assert_eq!(metrics.blocks_skipped.get(), 4);
}

/// Held traces, each `bytes` big where it is held, visited like an ingester does.
struct Held {
    traces: u8,
    bytes: u64,
}

#[async_trait::async_trait]
impl RecentTraces for Held {
    async fn find_trace(&self, _: &TenantId, _: &TraceId) -> Vec<ResourceSpans> {
        Vec::new()
    }

    async fn scan_recent(&self, _: &TenantId, visit: legato_proto::push::RecentVisitor) -> Result<(), String> {
        for n in 1..=self.traces {
            let trace = legato_proto::span_view::trace_data([n; 16], &[batch(n, 1..3)]);
            if !visit(trace, self.bytes) {
                break;
            }
        }
        Ok(())
    }
}

fn held_querier(traces: u8, bytes: u64, max_recent_bytes: u64) -> Querier {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let reader = Arc::new(BlockReader::new(store, StorageMetrics::default()));
    let recent: Arc<dyn RecentTraces> = Arc::new(Held { traces, bytes });
    Querier::new(vec![recent], reader, Arc::default(), QuerierMetrics::default())
        .with_max_recent_bytes(max_recent_bytes)
}

/// Issue 10: `querier.search.max_recent_bytes` bounds the held data one query reads: search
/// fails naming the key, metrics answer partial naming it; under the limit nothing changes.
#[tokio::test]
async fn queries_over_the_recent_bytes_limit_say_so() {
    let tenant = TenantId::single();
    let over = held_querier(10, 1000, 2500);
    match search_all(&over, &tenant, Default::default()).await {
        Err(legato_querier::QueryError::Limit(m)) => assert!(m.contains("querier.search.max_recent_bytes"), "{m}"),
        other => panic!("expected a limit error, got {other:?}"),
    }
    let (_, outcome) = count_spans(&over, &tenant, Default::default()).await.unwrap();
    let missing = outcome.missing_data.unwrap();
    assert!(missing.contains("querier.search.max_recent_bytes"), "{missing}");

    let under = held_querier(10, 1000, 10_000);
    let outcome = search_all(&under, &tenant, Default::default()).await.unwrap();
    assert_eq!(outcome.traces.len(), 10);
    let (series, outcome) = count_spans(&under, &tenant, Default::default()).await.unwrap();
    assert_eq!(outcome.missing_data, None);
    let total: f64 = series.iter().flat_map(|s| s.samples.iter().map(|(_, v)| v)).sum();
    assert_eq!(total, 20.0);
}

/// Blocks whose tag summary (`tags.json`) rules a required condition out are not read: a
/// search for a value no block has reads nothing, and one for a value of one block reads
/// that block only. Blocks without a summary, or whose values for the key were truncated,
/// are always read.
#[tokio::test]
async fn blocks_whose_tag_summary_rules_the_query_out_are_not_read() {
    use legato_model::span::{AttrValue, SpanData, TraceData};
    use legato_proto::common::{AnyValue, KeyValue, any_value::Value};

    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    let blocklist = Arc::new(Blocklist::default());
    // Block n holds trace n whose one span has `route` = /n, and a summary saying so; the
    // summary of block 3 is truncated, block 4 has none.
    for n in 1..=4u8 {
        let route = format!("/{n}");
        let mut b = batch(n, 1..2);
        b.scope_spans[0].spans[0].attributes.push(KeyValue {
            key: "route".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(route.clone())),
            }),
            ..Default::default()
        });
        let mut block = encode_block(
            &tenant,
            BlockId::random(),
            vec![TraceInput {
                id: TraceId([n; 16]),
                batches: vec![b],
            }],
            0,
        )
        .unwrap();
        if n <= 3 {
            let mut summary = legato_traceql::tags::TagSummary::default();
            let mut span = SpanData::default();
            span.attrs.push(("route".into(), AttrValue::Str(route)));
            summary.add_trace(
                &TraceData {
                    trace_id: [n; 16],
                    spans: vec![span],
                },
                None,
            );
            if n == 3 {
                for set in summary.scopes.values_mut().flat_map(|tags| tags.values_mut()) {
                    set.truncated = true;
                }
            }
            block.tags = Some(bytes::Bytes::from(summary.to_json()));
        }
        write_block(&store, &block).await.unwrap();
        blocklist.add(block.meta);
    }
    let reader = Arc::new(BlockReader::new(store, StorageMetrics::default()));
    let metrics = QuerierMetrics::default();
    let querier = Querier::new(vec![], reader, blocklist, metrics.clone());
    let search = async |q: &str| {
        let before = metrics.blocks_pruned.get();
        let request = legato_querier::SearchRequest {
            plan: Arc::new(legato_traceql::eval::Plan::new(legato_traceql::parse(q).unwrap()).unwrap()),
            query_text: q.into(),
            start_ns: None,
            end_ns: None,
            limit: 20,
            spss: 0,
            progress: None,
            cancel: Default::default(),
        };
        let outcome = querier.search(&tenant, request).await.unwrap();
        let mut found: Vec<u8> = outcome.traces.iter().map(|t| t.trace_id[0]).collect();
        found.sort();
        (found, metrics.blocks_pruned.get() - before, outcome.completed_jobs)
    };
    // (query, traces found, blocks pruned); every block counts as a completed job.
    for (q, found, pruned) in [
        (r#"{ span.route = "/2" }"#, vec![2], 1),
        (r#"{ span.route = "/none" }"#, vec![], 2),
        (r#"{ span.route =~ "/[12]" }"#, vec![1, 2], 0),
        // `!=` gives no row predicate (scan_options), so nothing to prune by.
        (r#"{ span.route != "/1" }"#, vec![2, 3, 4], 0),
        // No summary lists the key, truncated or not: only the block without one is read.
        (r#"{ span.absent = "x" }"#, vec![], 3),
        (r#"{ resource.service.name = "nope" }"#, vec![], 0),
        (r#"{ span.route = "/3" || span.route = "/4" }"#, vec![3, 4], 0),
        (r#"{ span.route = "/4" }"#, vec![4], 2),
    ] {
        let (got, got_pruned, completed) = search(q).await;
        assert_eq!((got, got_pruned), (found, pruned), "{q}");
        assert_eq!(completed, 5, "{q}: four blocks and the ingesters");
    }
}

/// A trace of 6 spans of service `svc-{n % 3}`, starting in the first minute.
fn service_trace(n: u32) -> TraceInput {
    let mut id = [9u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    let service = legato_proto::common::KeyValue {
        key: "service.name".into(),
        value: Some(legato_proto::common::AnyValue {
            value: Some(legato_proto::common::any_value::Value::StringValue(format!(
                "svc-{}",
                n % 3
            ))),
        }),
        ..Default::default()
    };
    TraceInput {
        id: TraceId(id),
        batches: vec![ResourceSpans {
            resource: Some(legato_proto::resource::Resource {
                attributes: vec![service],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (1..=6u8)
                    .map(|i| Span {
                        trace_id: id.to_vec(),
                        span_id: [i, 0, 0, 0, id[0], id[1], id[2], id[3]].to_vec(),
                        start_time_unix_nano: u64::from(n) * 1_000_000 + u64::from(i),
                        end_time_unix_nano: u64::from(n) * 1_000_000 + 1_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `query` over the first minute in 10 s steps: (labels, samples) sorted.
async fn series_of(querier: &Querier, tenant: &TenantId, query: &str) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut parsed = legato_traceql::parse(query).unwrap();
    let stage = parsed.metrics.take().unwrap();
    let request = legato_querier::MetricsRequest {
        plan: Arc::new(legato_traceql::eval::Plan::new(parsed).unwrap()),
        stage,
        start_ns: 0,
        end_ns: 60_000_000_000,
        step_ns: 10_000_000_000,
        max_exemplars: 0,
        max_series: 0,
        cancel: Default::default(),
        query_text: query.into(),
    };
    let (series, _) = querier.metrics(tenant, request).await.unwrap();
    let mut out: Vec<_> = series
        .into_iter()
        .map(|s| {
            (
                format!("{:?}", s.labels),
                s.samples.iter().map(|(t, v)| (*t, *v)).collect(),
            )
        })
        .collect();
    out.sort_by(|a: &(String, Vec<(i64, f64)>), b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn metrics_over_blocks_read_in_parts_match_the_evaluator() {
    // Two blocks of several row groups each (read in parts, one per core): 12,000 traces,
    // and copies of the first 6,000 of them (a replica), which count once.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tenant = TenantId::single();
    let blocklist = Arc::new(Blocklist::default());
    for traces in [0..12_000u32, 0..6_000] {
        let block = encode_block(&tenant, BlockId::random(), traces.map(service_trace).collect(), 0).unwrap();
        assert!(block.meta.row_groups >= 2, "{}", block.meta.row_groups);
        write_block(&store, &block).await.unwrap();
        blocklist.add(block.meta);
    }
    let reader = Arc::new(BlockReader::new(store, StorageMetrics::default()));
    let querier = Querier::new(Vec::new(), reader, blocklist, QuerierMetrics::default());
    // Counted from columns, and (with a condition columns cannot decide exactly) by the
    // evaluator, which rebuilds every trace.
    let columns = series_of(&querier, &tenant, "{ } | count_over_time() by (resource.service.name)").await;
    let evaluator = series_of(
        &querier,
        &tenant,
        r#"{ resource.service.name != "none" } | count_over_time() by (resource.service.name)"#,
    )
    .await;
    assert_eq!(columns.len(), 3);
    let total: f64 = columns.iter().flat_map(|(_, s)| s.iter().map(|(_, v)| v)).sum();
    assert_eq!(total, 72_000.0, "each span once: {columns:?}");
    assert_eq!(columns, evaluator);
}
