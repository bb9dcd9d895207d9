//! Scan options: which columns a query needs, and row predicates that a trace must satisfy
//! (each by at least one of its spans) to be worth rebuilding. Evaluated column-wise on Arrow
//! batches, so traces that cannot match are skipped without decoding attributes, resources
//! or events.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use regex::Regex;

use crate::scan::{AttrColumns, StrColumn};
use crate::schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Cmp {
    pub fn test<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Neq => a != b,
            Cmp::Lt => a < b,
            Cmp::Lte => a <= b,
            Cmp::Gt => a > b,
            Cmp::Gte => a >= b,
        }
    }
}

#[derive(Debug, Clone)]
pub enum StrTest {
    Cmp(Cmp, String),
    /// Anchored regex; `negated` for `!~`.
    Regex {
        re: Regex,
        negated: bool,
    },
}

impl StrTest {
    pub fn test(&self, s: &str) -> bool {
        match self {
            StrTest::Cmp(op, v) => op.test(s, v.as_str()),
            StrTest::Regex { re, negated } => re.is_match(s) != *negated,
        }
    }
}

#[derive(Debug, Clone)]
pub enum ValueTest {
    Str(StrTest),
    Int(Cmp, i64),
    Float(Cmp, f64),
    Bool(Cmp, bool),
}

/// A condition on one span (one row).
#[derive(Debug, Clone)]
pub enum RowPredicate {
    ServiceName(StrTest),
    Name(StrTest),
    Status(Cmp, i8),
    Kind(Cmp, i8),
    DurationNanos(Cmp, i64),
    /// A span attribute with this key whose value passes the test.
    SpanAttr {
        key: String,
        test: ValueTest,
    },
    /// A resource attribute with this key whose value passes the test (tested once per
    /// distinct encoded resource of a batch).
    ResourceAttr {
        key: String,
        test: ValueTest,
    },
}

impl RowPredicate {
    /// The column the predicate reads.
    pub fn column(&self) -> &'static str {
        match self {
            RowPredicate::ServiceName(_) => schema::SERVICE_NAME,
            RowPredicate::Name(_) => schema::NAME,
            RowPredicate::Status(..) => schema::STATUS_CODE,
            RowPredicate::Kind(..) => schema::KIND,
            RowPredicate::DurationNanos(..) => schema::DURATION,
            RowPredicate::SpanAttr { .. } => schema::ATTRS,
            RowPredicate::ResourceAttr { .. } => schema::RESOURCE,
        }
    }
}

impl ValueTest {
    /// Whether a value passes; arrays, maps and bytes (`other`) pass, for the evaluator to
    /// decide on the rebuilt trace.
    pub fn test(&self, s: Option<&str>, i: Option<i64>, d: Option<f64>, b: Option<bool>, other: bool) -> bool {
        other
            || match self {
                ValueTest::Str(t) => s.is_some_and(|s| t.test(s)),
                ValueTest::Int(op, v) => i.is_some_and(|i| op.test(i, *v)) || d.is_some_and(|d| op.test(d, *v as f64)),
                ValueTest::Float(op, v) => {
                    d.is_some_and(|d| op.test(d, *v)) || i.is_some_and(|i| op.test(i as f64, *v))
                }
                ValueTest::Bool(op, v) => b.is_some_and(|b| op.test(b, *v)),
            }
    }
}

/// Whether an encoded resource header (`ResourceSpans` without its scope spans, as the
/// `resource` column holds it) has an attribute `key` passing `test`.
fn resource_has(encoded: &[u8], key: &str, test: &ValueTest) -> bool {
    use legato_proto::common::any_value::Value as V;
    use prost::Message;
    let Ok(header) = legato_proto::trace::ResourceSpans::decode(encoded) else {
        return true; // undecodable here: let the evaluator see it
    };
    let attrs = header.resource.map(|r| r.attributes).unwrap_or_default();
    attrs
        .iter()
        .filter(|kv| kv.key == key)
        .any(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(V::StringValue(s)) => test.test(Some(s), None, None, None, false),
            Some(V::IntValue(i)) => test.test(None, Some(*i), None, None, false),
            Some(V::DoubleValue(d)) => test.test(None, None, Some(*d), None, false),
            Some(V::BoolValue(b)) => test.test(None, None, None, Some(*b), false),
            Some(_) => true,
            None => false,
        })
}

/// What a scan must decode and which traces it may skip.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Every predicate must be met by some span of a trace for the trace to be rebuilt.
    pub required: Vec<RowPredicate>,
    /// When above 1: a trace is rebuilt only when at least this many of its spans each meet
    /// every required predicate (`{ ... } | count() > N`). Only for predicates that all come
    /// from one span filter, which a single span must meet at once.
    pub min_rows: usize,
    /// Decode span attributes (`attrs`).
    pub attrs: bool,
    /// Decode events and links (`extras`).
    pub extras: bool,
    /// Decode resource and scope attributes (service name alone comes from its own column).
    pub resource: bool,
}

impl ScanOptions {
    /// Decode everything, skip nothing.
    pub fn full() -> Self {
        Self {
            required: Vec::new(),
            min_rows: 0,
            attrs: true,
            extras: true,
            resource: true,
        }
    }

    /// The columns the required predicates read (plus the trace id that groups rows).
    pub fn predicate_columns(&self) -> Vec<&'static str> {
        let mut cols = vec![schema::TRACE_ID];
        for p in &self.required {
            let col = p.column();
            if !cols.contains(&col) {
                cols.push(col);
            }
        }
        cols
    }

    /// The leaves of the `attrs` entries the span-attribute predicates read: keys, the value
    /// columns of the tested types, and `raw` (arrays and maps, which always pass). None
    /// without a span-attribute predicate.
    pub fn predicate_attr_leaves(&self) -> Vec<&'static str> {
        if !self.required.iter().any(|p| matches!(p, RowPredicate::SpanAttr { .. })) {
            return Vec::new();
        }
        let mut leaves = vec!["key", "raw"];
        for p in &self.required {
            let RowPredicate::SpanAttr { test, .. } = p else {
                continue;
            };
            let needed: &[&'static str] = match test {
                ValueTest::Str(_) => &["str"],
                ValueTest::Int(..) | ValueTest::Float(..) => &["int", "dbl"],
                ValueTest::Bool(..) => &["bool"],
            };
            for leaf in needed {
                if !leaves.contains(leaf) {
                    leaves.push(leaf);
                }
            }
        }
        leaves
    }

    /// The columns to read.
    pub fn columns(&self) -> Vec<&'static str> {
        let mut cols = vec![
            schema::TRACE_ID,
            schema::SPAN_ID,
            schema::PARENT_INDEX,
            schema::PARENT_SPAN_ID,
            schema::NESTED_LEFT,
            schema::NESTED_RIGHT,
            schema::NAME,
            schema::KIND,
            schema::START,
            schema::DURATION,
            schema::STATUS_CODE,
            schema::STATUS_MESSAGE,
            schema::SERVICE_NAME,
        ];
        if self.resource {
            cols.extend([schema::RESOURCE, schema::SCOPE]);
        } else if self
            .required
            .iter()
            .any(|p| matches!(p, RowPredicate::ResourceAttr { .. }))
        {
            cols.push(schema::RESOURCE);
        }
        if self.attrs || self.required.iter().any(|p| matches!(p, RowPredicate::SpanAttr { .. })) {
            cols.push(schema::ATTRS);
        }
        if self.extras {
            cols.push(schema::EXTRAS);
        }
        cols
    }
}

/// Marks each row whose dictionary index has `ok` (each distinct value tested once); an index
/// past `ok` counts as `missing`.
fn mark_by_key(keys: &[i32], ok: &[bool], missing: bool, mark: &mut impl FnMut(usize)) {
    for (row, k) in keys.iter().enumerate() {
        if ok.get(*k as usize).copied().unwrap_or(missing) {
            mark(row);
        }
    }
}

/// For each row, whether it meets each predicate: one bit per predicate (at most 64 are used).
pub fn row_bits(batch: &RecordBatch, required: &[RowPredicate]) -> Vec<u64> {
    let mut bits = vec![0u64; batch.num_rows()];
    for (i, pred) in required.iter().enumerate().take(64) {
        let bit = 1u64 << i;
        let mut mark = |row: usize| bits[row] |= bit;
        match pred {
            RowPredicate::ServiceName(t) | RowPredicate::Name(t) => {
                let col = if matches!(pred, RowPredicate::ServiceName(_)) {
                    schema::SERVICE_NAME
                } else {
                    schema::NAME
                };
                let Some(arr) = batch.column_by_name(col).and_then(|c| StrColumn::new(c.as_ref())) else {
                    continue;
                };
                match arr {
                    // Scans read it as a dictionary (`schema_v1_dictionaries`): each distinct
                    // value is tested once, then every row by its index.
                    StrColumn::Dictionary(keys, values) => {
                        let ok: Vec<bool> = (0..values.len()).map(|v| t.test(values.value(v))).collect();
                        mark_by_key(keys.keys().values(), &ok, false, &mut mark);
                    }
                    StrColumn::Plain(arr) => {
                        // Values repeat a lot: test each distinct run once.
                        let mut last: Option<(&str, bool)> = None;
                        for row in 0..arr.len() {
                            let v = arr.value(row);
                            let ok = match last {
                                Some((prev, ok)) if prev == v => ok,
                                _ => t.test(v),
                            };
                            last = Some((v, ok));
                            if ok {
                                mark(row);
                            }
                        }
                    }
                }
            }
            RowPredicate::Status(op, code) | RowPredicate::Kind(op, code) => {
                let col = if matches!(pred, RowPredicate::Status(..)) {
                    schema::STATUS_CODE
                } else {
                    schema::KIND
                };
                let Some(arr) = batch.column_by_name(col) else { continue };
                let arr = arr.as_primitive::<Int8Type>();
                for (row, v) in arr.values().iter().enumerate() {
                    if op.test(*v, *code) {
                        mark(row);
                    }
                }
            }
            RowPredicate::DurationNanos(op, nanos) => {
                let Some(arr) = batch.column_by_name(schema::DURATION) else {
                    continue;
                };
                let arr = arr.as_primitive::<Int64Type>();
                // The evaluator clamps negative durations (end before start) to zero.
                for (row, v) in arr.values().iter().enumerate() {
                    if op.test((*v).max(0), *nanos) {
                        mark(row);
                    }
                }
            }
            RowPredicate::SpanAttr { key, test } => {
                let Some(arr) = batch.column_by_name(schema::ATTRS) else {
                    continue;
                };
                let Some(a) = AttrColumns::new(arr.as_ref()) else {
                    (0..batch.num_rows()).for_each(&mut mark);
                    continue;
                };
                // Read as dictionaries (`schema_v1_dictionaries`), each distinct key is compared
                // once and each distinct string value tested at most once per batch.
                let key_matches: Option<Vec<bool>> = match &a.keys {
                    StrColumn::Dictionary(_, values) => {
                        Some((0..values.len()).map(|v| values.value(v) == key).collect())
                    }
                    StrColumn::Plain(_) => None,
                };
                let mut str_tested: Vec<u8> = match &a.strs {
                    Some(StrColumn::Dictionary(_, values)) => vec![0; values.len()],
                    _ => Vec::new(),
                };
                for row in 0..batch.num_rows() {
                    for e in a.entries(row) {
                        let is_key = match (&a.keys, &key_matches) {
                            (StrColumn::Dictionary(d, _), Some(m)) => m[d.keys().value(e) as usize],
                            (keys, _) => keys.value(e) == key,
                        };
                        if !is_key {
                            continue;
                        }
                        let ok = if let Some(strs) = a.strs.as_ref().filter(|s| s.is_valid(e)) {
                            match strs {
                                StrColumn::Dictionary(d, values) => {
                                    let v = d.keys().value(e) as usize;
                                    if str_tested[v] == 0 {
                                        let pass = test.test(Some(values.value(v)), None, None, None, false);
                                        str_tested[v] = if pass { 2 } else { 1 };
                                    }
                                    str_tested[v] == 2
                                }
                                StrColumn::Plain(s) => test.test(Some(s.value(e)), None, None, None, false),
                            }
                        } else {
                            // Arrays and maps live encoded in `raw`: keep the row, the evaluator
                            // decides. Leaves a test has no use for may not have been read.
                            test.test(
                                None,
                                a.ints.filter(|c| c.is_valid(e)).map(|c| c.value(e)),
                                a.dbls.filter(|c| c.is_valid(e)).map(|c| c.value(e)),
                                a.bools.filter(|c| c.is_valid(e)).map(|c| c.value(e)),
                                a.raws.is_none_or(|c| c.is_valid(e)),
                            )
                        };
                        if ok {
                            mark(row);
                            break;
                        }
                    }
                }
            }
            RowPredicate::ResourceAttr { key, test } => {
                let Some(arr) = batch.column_by_name(schema::RESOURCE) else {
                    continue;
                };
                let dictionary = arr
                    .as_dictionary_opt::<Int32Type>()
                    .and_then(|d| Some((d, d.values().as_binary_opt::<i32>()?)));
                // Scans read the column as a dictionary (`schema_v1_dictionaries`); read any
                // other way, every row stays a candidate and the evaluator decides.
                let Some((dict, values)) = dictionary else {
                    (0..batch.num_rows()).for_each(&mut mark);
                    continue;
                };
                // Each distinct resource tested once, then every row by its index.
                let ok: Vec<bool> = (0..values.len())
                    .map(|v| values.is_valid(v) && resource_has(values.value(v), key, test))
                    .collect();
                mark_by_key(dict.keys().values(), &ok, true, &mut mark);
            }
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_reads_attribute_leaves_only_for_span_attribute_predicates() {
        let options = |required| ScanOptions {
            required,
            ..ScanOptions::default()
        };
        // Span and service names, status, resources: the attribute list (a large nested
        // column) is not decoded to test them.
        let without = options(vec![
            RowPredicate::ServiceName(StrTest::Cmp(Cmp::Eq, "frontend".into())),
            RowPredicate::Status(Cmp::Eq, 2),
            RowPredicate::ResourceAttr {
                key: "k8s.namespace.name".into(),
                test: ValueTest::Str(StrTest::Cmp(Cmp::Eq, "canary".into())),
            },
        ]);
        assert!(without.predicate_attr_leaves().is_empty());
        assert!(!without.predicate_columns().contains(&schema::ATTRS));
        let with = options(vec![RowPredicate::SpanAttr {
            key: "http.status_code".into(),
            test: ValueTest::Int(Cmp::Gte, 500),
        }]);
        assert_eq!(with.predicate_attr_leaves(), vec!["key", "raw", "int", "dbl"]);
    }
}
