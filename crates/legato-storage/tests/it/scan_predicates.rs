//! Block scans with row predicates: a trace is rebuilt only when its spans can meet every
//! predicate, reading only the attribute leaves the tests need (keys, the tested value
//! types, and `raw` for arrays, which always pass for the evaluator to decide).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::common::{AnyValue, ArrayValue, KeyValue, any_value::Value};
use legato_proto::trace::{ResourceSpans, ScopeSpans, Span};
use legato_storage::metrics::StorageMetrics;
use legato_storage::object_store::memory::InMemory;
use legato_storage::{
    BlockReader, Cmp, ObjectStore, RowPredicate, ScanOptions, StrTest, TraceInput, ValueTest, encode_block, write_block,
};

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn trace(n: u8, attributes: Vec<KeyValue>) -> TraceInput {
    TraceInput {
        id: TraceId([n; 16]),
        batches: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![n; 16],
                    span_id: vec![n; 8],
                    start_time_unix_nano: 1_000,
                    end_time_unix_nano: 2_000,
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The first byte of the id of each trace a scan with `required` rebuilds.
async fn rebuilt(reader: &BlockReader, meta: &legato_storage::BlockMeta, required: Vec<RowPredicate>) -> Vec<u8> {
    let options = ScanOptions {
        required,
        attrs: true,
        ..ScanOptions::default()
    };
    let mut out = Vec::new();
    reader
        .scan_traces_with(meta, &options, |t| {
            out.push(t.trace_id[0]);
            true
        })
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn attribute_predicates_on_the_leaves_they_need_skip_only_traces_that_cannot_match() {
    let array = |items: &[&str]| {
        Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|s| AnyValue {
                    value: Some(Value::StringValue((*s).into())),
                })
                .collect(),
        })
    };
    let traces = vec![
        trace(
            1,
            vec![
                kv("code", Value::IntValue(500)),
                kv("route", Value::StringValue("/a".into())),
            ],
        ),
        trace(
            2,
            vec![
                kv("code", Value::IntValue(200)),
                kv("route", Value::StringValue("/b".into())),
            ],
        ),
        // A string that reads like a number, and an array of routes.
        trace(
            3,
            vec![
                kv("code", Value::StringValue("500".into())),
                kv("route", array(&["/a", "/c"])),
            ],
        ),
        trace(
            4,
            vec![kv("ratio", Value::DoubleValue(0.5)), kv("ok", Value::BoolValue(true))],
        ),
        // The block's last trace is always kept (it may continue in the next batch).
        trace(9, vec![]),
    ];
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let block = encode_block(&TenantId::single(), BlockId::random(), traces, 0).unwrap();
    write_block(&store, &block).await.unwrap();
    let reader = BlockReader::new(store, StorageMetrics::default());
    let attr = |key: &str, test: ValueTest| RowPredicate::SpanAttr { key: key.into(), test };
    let cases: Vec<(Vec<RowPredicate>, Vec<u8>)> = vec![
        (vec![attr("code", ValueTest::Int(Cmp::Gte, 500))], vec![1, 9]),
        (vec![attr("code", ValueTest::Float(Cmp::Lt, 300.0))], vec![2, 9]),
        (
            vec![attr("code", ValueTest::Str(StrTest::Cmp(Cmp::Eq, "500".into())))],
            vec![3, 9],
        ),
        // Arrays pass: the evaluator decides on the rebuilt trace.
        (
            vec![attr("route", ValueTest::Str(StrTest::Cmp(Cmp::Eq, "/a".into())))],
            vec![1, 3, 9],
        ),
        (
            vec![attr("route", ValueTest::Str(StrTest::Cmp(Cmp::Eq, "/zzz".into())))],
            vec![3, 9],
        ),
        (vec![attr("ratio", ValueTest::Float(Cmp::Gt, 0.25))], vec![4, 9]),
        (vec![attr("ok", ValueTest::Bool(Cmp::Eq, true))], vec![4, 9]),
        (
            vec![
                attr("code", ValueTest::Int(Cmp::Eq, 500)),
                attr("route", ValueTest::Str(StrTest::Cmp(Cmp::Eq, "/a".into()))),
            ],
            vec![1, 9],
        ),
    ];
    for (required, expected) in cases {
        let what = format!("{required:?}");
        assert_eq!(rebuilt(&reader, &block.meta, required).await, expected, "{what}");
    }
    // Rebuilt traces carry every attribute, whatever the predicates read.
    let options = ScanOptions {
        required: vec![attr("code", ValueTest::Int(Cmp::Eq, 500))],
        attrs: true,
        ..ScanOptions::default()
    };
    let mut first = None;
    reader
        .scan_traces_with(&block.meta, &options, |t| {
            first.get_or_insert(t);
            true
        })
        .await
        .unwrap();
    let attrs: Vec<String> = first.unwrap().spans[0].attrs.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(attrs, vec!["code", "route"]);
}

/// A trace of one span per attribute list.
fn trace_of_spans(n: u8, spans: Vec<Vec<KeyValue>>) -> TraceInput {
    let mut t = trace(n, Vec::new());
    t.batches[0].scope_spans[0].spans = spans
        .into_iter()
        .enumerate()
        .map(|(i, attributes)| Span {
            trace_id: vec![n; 16],
            span_id: vec![n, i as u8 + 1, 0, 0, 0, 0, 0, 0],
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            attributes,
            ..Default::default()
        })
        .collect();
    t
}

#[tokio::test]
async fn a_count_bound_rebuilds_only_traces_with_that_many_spans_meeting_every_predicate_at_once() {
    let code = |c: i64| kv("code", Value::IntValue(c));
    let route = |r: &str| kv("route", Value::StringValue(r.into()));
    let traces = vec![
        trace_of_spans(1, vec![vec![code(500), route("/a")]]),
        trace_of_spans(2, vec![vec![code(500), route("/a")], vec![code(500), route("/a")]]),
        // Four spans, three with code 500, but only one of them on route /a.
        trace_of_spans(
            3,
            vec![
                vec![code(500), route("/a")],
                vec![code(500), route("/b")],
                vec![code(500), route("/b")],
                vec![code(200), route("/a")],
            ],
        ),
        trace_of_spans(4, vec![vec![code(500), route("/a")]; 3]),
        // The block's last trace is always kept (it may continue in the next batch).
        trace_of_spans(9, vec![vec![]]),
    ];
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let block = encode_block(&TenantId::single(), BlockId::random(), traces, 0).unwrap();
    write_block(&store, &block).await.unwrap();
    let reader = BlockReader::new(store, StorageMetrics::default());
    let attr = |key: &str, test: ValueTest| RowPredicate::SpanAttr { key: key.into(), test };
    let both = || {
        vec![
            attr("code", ValueTest::Int(Cmp::Eq, 500)),
            attr("route", ValueTest::Str(StrTest::Cmp(Cmp::Eq, "/a".into()))),
        ]
    };
    let cases: Vec<(Vec<RowPredicate>, usize, Vec<u8>)> = vec![
        // Each predicate by some span: trace 3 passes.
        (both(), 0, vec![1, 2, 3, 4, 9]),
        (both(), 2, vec![2, 4, 9]),
        (both(), 3, vec![4, 9]),
        (vec![attr("code", ValueTest::Int(Cmp::Eq, 500))], 3, vec![3, 4, 9]),
        // No predicate: the trace's span count alone.
        (Vec::new(), 2, vec![2, 3, 4, 9]),
        (Vec::new(), 4, vec![3, 9]),
    ];
    for (required, min_rows, expected) in cases {
        let what = format!("{required:?} min_rows {min_rows}");
        let options = ScanOptions {
            required,
            min_rows,
            attrs: true,
            ..ScanOptions::default()
        };
        let mut out = Vec::new();
        reader
            .scan_traces_with(&block.meta, &options, |t| {
                out.push(t.trace_id[0]);
                true
            })
            .await
            .unwrap();
        assert_eq!(out, expected, "{what}");
    }
}
