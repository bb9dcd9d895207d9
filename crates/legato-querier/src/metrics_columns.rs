//! TraceQL metrics counted from block columns. `rate()`, `count_over_time()`, and
//! `quantile_over_time(duration)` / `histogram_over_time(duration)`, of a plain filter whose
//! every condition maps exactly onto a column (status, kind, duration, span name, service
//! name equality), grouped by service, name, status or kind, need only a few columns per
//! span: the spans are counted per step and group from those columns, without rebuilding
//! traces. Replicated copies are skipped exactly as the evaluator's path skips
//! them (the same copy fingerprint over every span of the trace in the block). Any other
//! query takes the evaluator's path; `tests/it/live_vs_blocks.rs` checks both give the same
//! series.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use legato_storage::schema;
use legato_storage::{Cmp, RowPredicate, StrColumn, StrTest};
use legato_traceql::ast::{AttributeScope, FieldExpr, Intrinsic, MetricsOp, MetricsStage, Query, SpansetExpr, Static};
use legato_traceql::metrics::{Exemplar, ExemplarBuckets, SpanCounts, log2_bucket};
use legato_traceql::value::Value;

/// Whether a finished trace copy (trace id, copy fingerprint) is counted.
pub type CopyFilter<'a> = dyn FnMut(&([u8; 16], u64)) -> bool + 'a;

/// Series counted from columns: labels, count per step, exemplars.
pub type CountedSeries = (Vec<(String, Value)>, SpanCounts, Vec<Exemplar>);

/// Most `by` fields counted from columns.
const MAX_BY: usize = 4;

/// A group-by field read from a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByColumn {
    Service,
    Name,
    Status,
    Kind,
}

/// How to count a metrics query from columns.
#[derive(Debug, Clone)]
pub struct ColumnMetrics {
    /// A span counts when it meets every one.
    predicates: Vec<RowPredicate>,
    by: Vec<(String, ByColumn)>,
    /// Durations are measured (quantiles, histograms), not only counted.
    durations: bool,
    op: MetricsOp,
}

impl ColumnMetrics {
    /// `Some` when counting from columns gives the evaluator's answer for this query.
    pub fn plan(query: &Query, stage: &MetricsStage) -> Option<Self> {
        let durations = match (stage.op, &stage.field) {
            (MetricsOp::Rate | MetricsOp::CountOverTime, None) => false,
            (
                MetricsOp::QuantileOverTime | MetricsOp::HistogramOverTime,
                Some(FieldExpr::Intrinsic(Intrinsic::Duration)),
            ) => true,
            _ => return None,
        };
        if stage.compare.is_some()
            || stage.binary.is_some()
            || !query.pipeline.stages.is_empty()
            || stage.by.len() > MAX_BY
        {
            return None;
        }
        let SpansetExpr::Filter(filter) = &query.pipeline.head else {
            return None;
        };
        let mut conjuncts = Vec::new();
        crate::prefilter::split_and(filter, &mut conjuncts);
        let mut predicates = Vec::new();
        for c in conjuncts {
            if matches!(c, FieldExpr::Static(Static::Bool(true))) {
                continue;
            }
            predicates.push(exact_predicate(c)?);
        }
        // One bit per predicate in a row's bits (`row_bits`).
        if predicates.len() >= 64 {
            return None;
        }
        let by = stage
            .by
            .iter()
            .map(|f| {
                let column = match f {
                    FieldExpr::Intrinsic(Intrinsic::Name) => ByColumn::Name,
                    FieldExpr::Intrinsic(Intrinsic::Status) => ByColumn::Status,
                    FieldExpr::Intrinsic(Intrinsic::Kind) => ByColumn::Kind,
                    FieldExpr::Attribute(a)
                        if a.scope == AttributeScope::Resource && !a.parent && a.name == "service.name" =>
                    {
                        ByColumn::Service
                    }
                    _ => return None,
                };
                Some((legato_traceql::eval::field_label(f), column))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            predicates,
            by,
            durations,
            op: stage.op,
        })
    }

    /// The columns counting reads.
    pub fn columns(&self) -> Vec<&'static str> {
        let mut cols = vec![schema::TRACE_ID, schema::SPAN_ID, schema::START];
        if self.durations {
            cols.push(schema::DURATION);
        }
        let mut add = |c: &'static str| {
            if !cols.contains(&c) {
                cols.push(c);
            }
        };
        for p in &self.predicates {
            add(p.column());
        }
        for (_, b) in &self.by {
            add(match b {
                ByColumn::Service => schema::SERVICE_NAME,
                ByColumn::Name => schema::NAME,
                ByColumn::Status => schema::STATUS_CODE,
                ByColumn::Kind => schema::KIND,
            });
        }
        cols
    }

    /// The row predicates, for block pruning by tag summary.
    pub fn predicates(&self) -> &[RowPredicate] {
        &self.predicates
    }
}

/// A condition whose row predicate holds exactly when the evaluator's condition does.
fn exact_predicate(c: &FieldExpr) -> Option<RowPredicate> {
    let p = crate::prefilter::predicate(c)?;
    let exact = match &p {
        RowPredicate::Status(..) | RowPredicate::Kind(..) | RowPredicate::DurationNanos(..) | RowPredicate::Name(_) => {
            true
        }
        // The column holds "" for a resource without `service.name`, where the evaluator sees
        // nil: only equality with a non-empty name reads the same.
        RowPredicate::ServiceName(StrTest::Cmp(Cmp::Eq, s)) => !s.is_empty(),
        _ => false,
    };
    exact.then_some(p)
}

/// One matching span of the trace being read: its series (index into `series`), step, id,
/// start, and its duration (seconds) and bucket when measured.
struct Matched {
    slot: u32,
    /// `exemplar_rank` of its id: the trace's lowest is its exemplar.
    rank: u64,
    step: usize,
    span_id: [u8; 8],
    start_ms: i64,
    measured: Option<(f64, i32)>,
}

/// One group's series being counted.
struct Counted {
    group: [u32; MAX_BY],
    spans: SpanCounts,
    exemplars: Vec<Exemplar>,
    exemplar_buckets: ExemplarBuckets,
    counted: bool,
}

/// Counts one block's spans (or several blocks' in turn) per group and step.
pub struct ColumnCounter<'a> {
    plan: &'a ColumnMetrics,
    step_of: &'a (dyn Fn(u64) -> Option<usize> + Sync),
    steps: usize,
    /// An empty exemplar set, copied for each series (`MetricsEval::exemplar_buckets`).
    exemplar_buckets: ExemplarBuckets,
    /// The trace being read: id, copy fingerprint over all its rows, matching rows.
    trace: Option<([u8; 16], u64)>,
    matched: Vec<Matched>,
    /// Distinct strings of the service and name group columns.
    strings: Vec<(HashMap<String, u32, foldhash::fast::RandomState>, Vec<String>)>,
    /// The index in `series` of each group seen.
    slots: HashMap<[u32; MAX_BY], u32, foldhash::fast::RandomState>,
    /// The same when grouped by one field or none, by that field's number (`u32::MAX`: none).
    dense: Vec<u32>,
    /// Group, counts, exemplars and the set taking them, and whether a counted trace added to
    /// it (a group first seen in a copy that deduplication then skipped has no series).
    series: Vec<Counted>,
    /// Traces counted (after deduplication).
    pub traces: u64,
}

impl<'a> ColumnCounter<'a> {
    pub fn new(
        plan: &'a ColumnMetrics,
        step_of: &'a (dyn Fn(u64) -> Option<usize> + Sync),
        steps: usize,
        exemplar_buckets: ExemplarBuckets,
    ) -> Self {
        Self {
            plan,
            step_of,
            steps,
            exemplar_buckets,
            trace: None,
            matched: Vec::new(),
            strings: vec![Default::default(); plan.by.len()],
            slots: HashMap::default(),
            dense: Vec::new(),
            series: Vec::new(),
            traces: 0,
        }
    }

    /// Reads a batch of `plan.columns()`. `counts(trace id, fingerprint)` says whether a
    /// finished trace copy is counted (the replica dedup of the evaluator's path).
    pub fn batch(&mut self, batch: &RecordBatch, counts: &mut CopyFilter<'_>) -> Option<()> {
        let ids = batch.column_by_name(schema::TRACE_ID)?.as_fixed_size_binary_opt()?;
        let span_ids = batch.column_by_name(schema::SPAN_ID)?.as_fixed_size_binary_opt()?;
        let starts = batch.column_by_name(schema::START)?.as_primitive_opt::<Int64Type>()?;
        // The columns this query reads are there with their schema type, the others absent.
        let optional = |name: &str| batch.column_by_name(name).map(|c| c.as_ref());
        let names = optional(schema::NAME).and_then(StrColumn::new);
        let services = optional(schema::SERVICE_NAME).and_then(StrColumn::new);
        let codes = optional(schema::STATUS_CODE)
            .map(|c| c.as_primitive_opt::<Int8Type>())
            .unwrap_or_default();
        let kinds = optional(schema::KIND)
            .map(|c| c.as_primitive_opt::<Int8Type>())
            .unwrap_or_default();
        let durations = optional(schema::DURATION)
            .map(|c| c.as_primitive_opt::<Int64Type>())
            .unwrap_or_default();
        let bits = legato_storage::row_bits(batch, &self.plan.predicates);
        let all = (1u64 << self.plan.predicates.len()) - 1;
        // Per group column read as a dictionary, the string number of each dictionary value
        // (looked up once per batch and value); read plain, the last string looked up, as
        // rows repeat them a lot.
        let mut by_key: Vec<Vec<u32>> = vec![Vec::new(); self.plan.by.len()];
        let mut last: Vec<Option<(&str, u32)>> = vec![None; self.plan.by.len()];
        // The last group's series: rows of one service and name come in runs.
        let mut last_slot: Option<([u32; MAX_BY], u32)> = None;
        for (row, row_bits) in bits.iter().enumerate() {
            let id: [u8; 16] = ids.value(row).try_into().ok()?;
            let span_id: [u8; 8] = span_ids.value(row).try_into().ok()?;
            if self.trace.is_none_or(|(current, _)| current != id) {
                self.finish_trace(counts);
                self.trace = Some((id, 0));
            }
            // The fingerprint's part and the exemplar rank are the same mix.
            let mix = legato_traceql::metrics::exemplar_rank(span_id);
            if let Some((_, fp)) = &mut self.trace {
                *fp = fp.wrapping_add(mix);
            }
            if row_bits & all != all {
                continue;
            }
            let start = starts.value(row) as u64;
            let Some(step) = (self.step_of)(start) else { continue };
            // As the evaluator measures: end - start, negative as zero; spans under 2 ns have
            // no bucket and are left out, as Tempo leaves them out.
            let measured = match self.plan.durations {
                true => {
                    let ns = durations?.value(row).max(0);
                    let Some(bucket) = log2_bucket(ns as f64) else { continue };
                    Some((ns as f64 / 1e9, bucket))
                }
                false => None,
            };
            let mut group = [0u32; MAX_BY];
            for (g, (_, column)) in self.plan.by.iter().enumerate() {
                group[g] = match column {
                    ByColumn::Status => codes?.value(row) as u8 as u32,
                    ByColumn::Kind => kinds?.value(row) as u8 as u32,
                    ByColumn::Service | ByColumn::Name => {
                        let strings = match column {
                            ByColumn::Service => services.as_ref()?,
                            _ => names.as_ref()?,
                        };
                        if let StrColumn::Dictionary(keys, values) = strings {
                            let numbers = &mut by_key[g];
                            if numbers.is_empty() {
                                numbers.resize(values.len(), u32::MAX);
                            }
                            let key = keys.keys().value(row) as usize;
                            match numbers.get(key)? {
                                &u32::MAX => {
                                    let n = self.string_number(g, values.value(key));
                                    numbers[key] = n;
                                    n
                                }
                                n => *n,
                            }
                        } else {
                            let s = strings.value(row);
                            match last[g] {
                                Some((prev, n)) if prev == s => n,
                                _ => {
                                    let n = self.string_number(g, s);
                                    last[g] = Some((s, n));
                                    n
                                }
                            }
                        }
                    }
                };
            }
            let slot = match last_slot {
                Some((prev, slot)) if prev == group => slot,
                // Grouped by one field (or none), its number is the index of its series.
                _ if self.plan.by.len() <= 1 => {
                    let at = group[0] as usize;
                    if self.dense.len() <= at {
                        self.dense.resize(at + 1, u32::MAX);
                    }
                    if self.dense[at] == u32::MAX {
                        self.dense[at] = self.series.len() as u32;
                        self.new_series(group);
                    }
                    self.dense[at]
                }
                _ => {
                    let next = self.series.len() as u32;
                    let slot = *self.slots.entry(group).or_insert(next);
                    if slot == next {
                        self.new_series(group);
                    }
                    last_slot = Some((group, slot));
                    slot
                }
            };
            self.matched.push(Matched {
                slot,
                rank: mix,
                step,
                span_id,
                start_ms: (start / 1_000_000) as i64,
                measured,
            });
        }
        Some(())
    }

    fn new_series(&mut self, group: [u32; MAX_BY]) {
        self.series.push(Counted {
            group,
            spans: SpanCounts::new(self.steps, self.plan.durations),
            exemplars: Vec::new(),
            exemplar_buckets: self.exemplar_buckets.fresh(),
            counted: false,
        });
    }

    /// The number of string `s` among group column `g`'s distinct strings.
    fn string_number(&mut self, g: usize, s: &str) -> u32 {
        let (index, list) = &mut self.strings[g];
        match index.get(s) {
            Some(n) => *n,
            None => {
                let n = list.len() as u32;
                list.push(s.to_string());
                index.insert(s.to_string(), n);
                n
            }
        }
    }

    fn finish_trace(&mut self, counts: &mut CopyFilter<'_>) {
        let Some(key) = self.trace.take() else { return };
        if self.matched.is_empty() || !counts(&key) {
            self.matched.clear();
            return;
        }
        self.traces += 1;
        // The trace's exemplar, as the evaluator picks it.
        if let Some(m) = self.matched.iter().min_by_key(|m| m.rank) {
            let series = &mut self.series[m.slot as usize];
            if series.exemplar_buckets.admit(m.start_ms) {
                let value = match self.plan.op {
                    MetricsOp::QuantileOverTime => m.measured.map_or(f64::NAN, |(v, _)| v),
                    // Valued at their step's sample when the answer is finished.
                    _ => f64::NAN,
                };
                let mut e = Exemplar::new(key.0, m.span_id, m.start_ms, value);
                if self.plan.op == MetricsOp::HistogramOverTime {
                    e.bucket = m.measured.map(|(_, b)| b);
                }
                series.exemplars.push(e);
            }
        }
        for m in self.matched.drain(..) {
            let series = &mut self.series[m.slot as usize];
            series.counted = true;
            series.spans.add(m.step, m.measured);
        }
    }

    /// The series counted: labels as the evaluator gives them, counts per step, exemplars.
    pub fn finish(mut self, counts: &mut CopyFilter<'_>) -> Vec<CountedSeries> {
        self.finish_trace(counts);
        let strings = std::mem::take(&mut self.strings);
        self.series
            .into_iter()
            .filter(|s| s.counted)
            .map(
                |Counted {
                     group,
                     spans,
                     exemplars,
                     ..
                 }| {
                    let labels = self
                        .plan
                        .by
                        .iter()
                        .enumerate()
                        .map(|(g, (label, column))| {
                            let value = match column {
                                ByColumn::Status => Value::Status(group[g] as i32),
                                ByColumn::Kind => Value::Kind(group[g] as i32),
                                ByColumn::Name => Value::Str(strings[g].1[group[g] as usize].clone()),
                                ByColumn::Service => match strings[g].1[group[g] as usize].as_str() {
                                    "" => Value::Nil,
                                    s => Value::Str(s.to_string()),
                                },
                            };
                            (label.clone(), value)
                        })
                        .collect();
                    (labels, spans, exemplars)
                },
            )
            .collect()
    }
}
