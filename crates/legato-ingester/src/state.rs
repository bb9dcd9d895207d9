//! In-memory state of the ingester: live traces, the head block and blocks being uploaded,
//! all as encoded segments (compact, and what the WAL holds anyway). A segment's bytes are
//! on the heap or, once spilled (see `spill`), in a spill file: only the first count against
//! `max_resident_bytes`.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use legato_model::{BlockId, TenantId, TraceId};
use legato_proto::push::{PushOutcome, PushRequest, RejectReason, Rejection, TraceSegment};

use crate::Segments;
use crate::config::IngestLimits;
use crate::spill::{self, Segment};

/// A head smaller than twice this is not split for parallel encoding.
const MIN_SPLIT_BYTES: u64 = 8 << 20;

/// Bytes of `segments` on the heap.
fn resident(segments: &[Segment]) -> u64 {
    segments.iter().filter_map(Segment::heap).map(|b| b.len() as u64).sum()
}

/// Segments of one trace to write to a spill file.
pub(crate) struct SpillItem {
    pub tenant: TenantId,
    pub id: TraceId,
    pub segments: Vec<Bytes>,
}

impl AsRef<[Bytes]> for SpillItem {
    fn as_ref(&self) -> &[Bytes] {
        &self.segments
    }
}

struct Live {
    segments: Segments,
    bytes: u64,
    /// When the trace's first span arrived (tail sampling's `decision_wait` starts here).
    first_append: u64,
    last_append: u64,
    /// The oldest WAL segment holding this trace's data.
    first_seq: u64,
}

#[derive(Default)]
struct Tenant {
    live: HashMap<TraceId, Live>,
    head: HashMap<TraceId, Segments>,
}

#[derive(Clone)]
pub(crate) struct Completing {
    pub tenant: TenantId,
    pub block_id: BlockId,
    pub traces: Arc<Vec<(TraceId, Segments)>>,
    /// The oldest WAL segment holding data of this block.
    pub min_seq: u64,
    pub bytes: u64,
    /// Of which on the heap (not spilled).
    pub resident: u64,
}

pub(crate) struct State {
    tenants: HashMap<TenantId, Tenant>,
    pub buffered_bytes: u64,
    /// Of `buffered_bytes`, those on the heap rather than in spill files.
    pub resident_bytes: u64,
    pub head_bytes: u64,
    pub head_since: Option<u64>,
    /// The oldest WAL segment holding data of the head.
    head_min_seq: Option<u64>,
    /// The WAL segment appends currently go to.
    pub wal_seq: u64,
    pub completing: Vec<Completing>,
}

impl State {
    pub fn new(wal_seq: u64) -> Self {
        Self {
            tenants: HashMap::new(),
            buffered_bytes: 0,
            resident_bytes: 0,
            head_bytes: 0,
            head_since: None,
            head_min_seq: None,
            wal_seq,
            completing: Vec::new(),
        }
    }

    /// Appends to a live trace whose data is in WAL segment `seq` (or a later one).
    fn append(&mut self, tenant: &TenantId, id: TraceId, data: Bytes, now: u64, seq: u64) {
        let len = data.len() as u64;
        let t = self.tenants.entry(tenant.clone()).or_default();
        let live = t.live.entry(id).or_insert_with(|| Live {
            segments: Vec::new(),
            bytes: 0,
            first_append: now,
            last_append: now,
            first_seq: seq,
        });
        live.segments.push(Segment::Heap(data));
        live.bytes += len;
        live.last_append = now;
        self.buffered_bytes += len;
        self.resident_bytes += len;
    }

    /// Re-applies a WAL record read from segment `seq`; returns the number of trace segments.
    pub fn replay(&mut self, req: PushRequest, now: u64, seq: u64) -> usize {
        let Ok(tenant) = TenantId::new(&req.tenant) else {
            return 0;
        };
        let mut n = 0;
        for seg in req.traces {
            if let Ok(id) = TraceId::from_otlp(&seg.id) {
                self.append(&tenant, id, seg.data, now, seq);
                n += 1;
            }
        }
        n
    }

    /// Applies per-tenant limits; keeps accepted segments in `traces` (and in memory) and
    /// reports the rest.
    pub fn admit(
        &mut self,
        tenant: &TenantId,
        traces: &mut Vec<TraceSegment>,
        limits: &IngestLimits,
        now: u64,
    ) -> PushOutcome {
        let mut rejected: HashMap<RejectReason, (u64, String)> = HashMap::new();
        let mut accepted = Vec::with_capacity(traces.len());
        for seg in traces.drain(..) {
            let Ok(id) = TraceId::from_otlp(&seg.id) else {
                let entry = rejected.entry(RejectReason::InvalidTraceId).or_default();
                entry.0 += u64::from(seg.spans);
                continue;
            };
            let t = self.tenants.entry(tenant.clone()).or_default();
            let len = seg.data.len() as u64;
            let verdict = match t.live.get(&id) {
                Some(live) if limits.max_bytes_per_trace > 0 && live.bytes + len > limits.max_bytes_per_trace => {
                    Some((
                        RejectReason::TraceTooLarge,
                        format!(
                            "max size of trace ({} bytes) exceeded while adding {len} bytes to trace {id} for tenant {tenant}",
                            limits.max_bytes_per_trace
                        ),
                    ))
                }
                None if limits.max_bytes_per_trace > 0 && len > limits.max_bytes_per_trace => Some((
                    RejectReason::TraceTooLarge,
                    format!(
                        "max size of trace ({} bytes) exceeded while adding {len} bytes to trace {id} for tenant {tenant}",
                        limits.max_bytes_per_trace
                    ),
                )),
                None if limits.max_traces_per_user > 0 && t.live.len() >= limits.max_traces_per_user => Some((
                    RejectReason::LiveTracesExceeded,
                    format!(
                        "max live traces per tenant exceeded: per-user traces limit (local: {}) exceeded for tenant {tenant}",
                        limits.max_traces_per_user
                    ),
                )),
                _ => None,
            };
            match verdict {
                Some((reason, message)) => {
                    let entry = rejected.entry(reason).or_default();
                    entry.0 += u64::from(seg.spans);
                    entry.1 = message;
                }
                None => {
                    let seq = self.wal_seq;
                    self.append(tenant, id, seg.data.clone(), now, seq);
                    accepted.push(seg);
                }
            }
        }
        *traces = accepted;
        let mut rejected: Vec<Rejection> = rejected
            .into_iter()
            .map(|(reason, (spans, message))| Rejection { reason, spans, message })
            .collect();
        rejected.sort_by_key(|r| r.reason.as_str());
        PushOutcome { rejected }
    }

    /// Live traces of one tenant.
    pub fn live_count(&self, tenant: &TenantId) -> usize {
        self.tenants.get(tenant).map_or(0, |t| t.live.len())
    }

    pub fn live_trace_count(&self) -> usize {
        self.tenants.values().map(|t| t.live.len()).sum()
    }

    pub fn has_completing(&self) -> bool {
        !self.completing.is_empty()
    }

    pub fn segments_of(&self, tenant: &TenantId, id: &TraceId) -> Segments {
        let mut out = Segments::new();
        if let Some(t) = self.tenants.get(tenant) {
            if let Some(live) = t.live.get(id) {
                out.extend(live.segments.iter().cloned());
            }
            if let Some(head) = t.head.get(id) {
                out.extend(head.iter().cloned());
            }
        }
        for c in self.completing.iter().filter(|c| &c.tenant == tenant) {
            if let Ok(pos) = c.traces.binary_search_by_key(id, |(tid, _)| *tid) {
                out.extend(c.traces[pos].1.iter().cloned());
            }
        }
        out
    }

    pub fn tenant_ids(&self) -> Vec<TenantId> {
        let mut ids: Vec<TenantId> = self.tenants.keys().cloned().collect();
        for c in &self.completing {
            if !ids.contains(&c.tenant) {
                ids.push(c.tenant.clone());
            }
        }
        ids
    }

    /// The ids of every trace held for a tenant (live, head, uploading), sorted, each once:
    /// cheap to take under the lock, unlike their segments.
    pub fn trace_ids(&self, tenant: &TenantId) -> Vec<TraceId> {
        let mut ids = Vec::new();
        if let Some(t) = self.tenants.get(tenant) {
            ids.extend(t.live.keys().copied());
            ids.extend(t.head.keys().copied());
        }
        for c in self.completing.iter().filter(|c| &c.tenant == tenant) {
            ids.extend(c.traces.iter().map(|(id, _)| *id));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Every trace of a tenant with its segments (live, head and uploading merged).
    pub fn all_segments(&self, tenant: &TenantId) -> Vec<(TraceId, Segments)> {
        let mut out: HashMap<TraceId, Segments> = HashMap::new();
        if let Some(t) = self.tenants.get(tenant) {
            for (id, live) in &t.live {
                out.entry(*id).or_default().extend(live.segments.iter().cloned());
            }
            for (id, head) in &t.head {
                out.entry(*id).or_default().extend(head.iter().cloned());
            }
        }
        for c in self.completing.iter().filter(|c| &c.tenant == tenant) {
            for (id, segments) in c.traces.iter() {
                out.entry(*id).or_default().extend(segments.iter().cloned());
            }
        }
        out.into_iter().collect()
    }

    /// Moves traces idle since before `now - idle` into the head block, except those of
    /// tenants `sampled_later` names (tail sampling decides when they move).
    pub fn cut_idle(&mut self, now: u64, idle: u64, sampled_later: &dyn Fn(&TenantId) -> bool) {
        let mut moved = Vec::new();
        for (tenant, t) in &self.tenants {
            if sampled_later(tenant) {
                continue;
            }
            moved.extend(
                t.live
                    .iter()
                    .filter(|(_, l)| now.saturating_sub(l.last_append) >= idle)
                    .map(|(id, _)| (tenant.clone(), *id, true)),
            );
        }
        self.settle(&moved, now);
    }

    /// Moves decided traces out of the live set: kept ones (`true`) into the head block, the
    /// rest dropped (tail sampling). Spans that arrived since the decision go with them.
    pub fn settle(&mut self, decided: &[(TenantId, TraceId, bool)], now: u64) {
        let mut moved = 0u64;
        let mut min_seq = self.head_min_seq;
        for (tenant, id, keep) in decided {
            let Some(t) = self.tenants.get_mut(tenant) else {
                continue;
            };
            let Some(live) = t.live.remove(id) else {
                continue;
            };
            if *keep {
                moved += live.bytes;
                min_seq = Some(min_seq.map_or(live.first_seq, |m| m.min(live.first_seq)));
                t.head.entry(*id).or_default().extend(live.segments);
            } else {
                self.buffered_bytes = self.buffered_bytes.saturating_sub(live.bytes);
                self.resident_bytes = self.resident_bytes.saturating_sub(resident(&live.segments));
            }
        }
        self.head_min_seq = min_seq;
        if moved > 0 {
            self.head_bytes += moved;
            self.head_since.get_or_insert(now.min(u64::MAX - 1));
        }
    }

    /// Live traces of a tail-sampled tenant that are due for a decision, oldest first, with
    /// their segments: those whose first span arrived `wait` ago, then (early) the oldest past
    /// `max_traces` held, or `all` of them. Each comes with whether it is early.
    pub fn due_for_decision(
        &self,
        tenant: &TenantId,
        now: u64,
        wait: u64,
        max_traces: usize,
        all: bool,
    ) -> Vec<(TraceId, Segments, bool)> {
        let Some(t) = self.tenants.get(tenant) else {
            return Vec::new();
        };
        let mut by_age: Vec<(&TraceId, &Live)> = t.live.iter().collect();
        by_age.sort_unstable_by_key(|(id, l)| (l.first_append, **id));
        let excess = by_age.len().saturating_sub(max_traces);
        by_age
            .into_iter()
            .enumerate()
            .filter_map(|(i, (id, l))| {
                let ripe = now.saturating_sub(l.first_append) >= wait;
                (ripe || all || i < excess).then(|| (*id, l.segments.clone(), !ripe))
            })
            .collect()
    }

    /// Live traces whose data goes back to before WAL segment `before`, as WAL records (one
    /// per tenant) to write into the current segment, and the traces they cover. Once those
    /// records are durable, [`State::relogged`] makes the current segment their oldest, which
    /// lets old segments go while a trace keeps receiving spans.
    pub fn relog_live_older_than(&self, before: u64) -> (Vec<PushRequest>, Vec<(TenantId, TraceId)>) {
        let mut out = Vec::new();
        let mut covered = Vec::new();
        for (tenant, t) in &self.tenants {
            let mut traces = Vec::new();
            for (id, live) in t.live.iter().filter(|(_, l)| l.first_seq < before) {
                // Spilled segments are read back (rare: long-lived traces only, from the page
                // cache); a trace that cannot be keeps its old segment number.
                let Ok(segments) = spill::load(&live.segments) else {
                    continue;
                };
                covered.push((tenant.clone(), *id));
                traces.extend(segments.into_iter().map(|d| TraceSegment {
                    id: Bytes::copy_from_slice(&id.0),
                    data: d,
                    spans: 0,
                }));
            }
            if !traces.is_empty() {
                out.push(PushRequest {
                    tenant: tenant.to_string(),
                    traces,
                });
            }
        }
        (out, covered)
    }

    /// Records that the re-logged traces' data older than segment `seq` is durable in `seq`
    /// (called only after the re-log records were fsynced). A trace that has left the live
    /// set meanwhile keeps its older segment number in the head or a block being uploaded.
    pub fn relogged(&mut self, covered: &[(TenantId, TraceId)], seq: u64) {
        for (tenant, id) in covered {
            if let Some(live) = self.tenants.get_mut(tenant).and_then(|t| t.live.get_mut(id))
                && live.first_seq < seq
            {
                live.first_seq = seq;
            }
        }
    }

    /// Turns each tenant's head into blocks to upload: `parts` per tenant (contiguous
    /// trace-id ranges of about equal bytes, none under `MIN_SPLIT_BYTES`) so they can be
    /// encoded in parallel, or more so that none holds over `max_part_bytes` (a head that grew
    /// while flushes lagged is not encoded as one huge block: encoding memory follows the
    /// block). Returns how many.
    pub fn cut_head(&mut self, cut_seq: u64, parts: usize, max_part_bytes: u64) -> usize {
        let mut cut = 0;
        let min_seq = self.head_min_seq.take().unwrap_or(cut_seq);
        for (tenant, t) in &mut self.tenants {
            if t.head.is_empty() {
                continue;
            }
            let mut traces: Vec<(u64, u64, (TraceId, Segments))> = t
                .head
                .drain()
                .map(|(id, held)| {
                    let len = held.iter().map(|s| s.len() as u64).sum();
                    (len, resident(&held), (id, held))
                })
                .collect();
            traces.sort_by_key(|(_, _, (id, _))| *id);
            let total: u64 = traces.iter().map(|(len, _, _)| len).sum();
            let parts = (parts as u64)
                .clamp(1, (total / MIN_SPLIT_BYTES).max(1))
                .max(total.div_ceil(max_part_bytes.max(1)));
            // Part k (1-based) closes once the bytes taken so far reach k/parts of the total.
            #[derive(Default)]
            struct Part {
                traces: Vec<(TraceId, Segments)>,
                bytes: u64,
                resident: u64,
            }
            let mut chunks = vec![Part::default()];
            let mut taken = 0u64;
            for (len, in_memory, trace) in traces {
                if (chunks.len() as u64) < parts && taken >= chunks.len() as u64 * total / parts {
                    chunks.push(Part::default());
                }
                if let Some(part) = chunks.last_mut() {
                    part.traces.push(trace);
                    part.bytes += len;
                    part.resident += in_memory;
                }
                taken += len;
            }
            for part in chunks.into_iter().filter(|p| !p.traces.is_empty()) {
                self.completing.push(Completing {
                    tenant: tenant.clone(),
                    block_id: BlockId::random(),
                    traces: Arc::new(part.traces),
                    min_seq,
                    bytes: part.bytes,
                    resident: part.resident,
                });
                cut += 1;
            }
        }
        self.tenants.retain(|_, t| !t.live.is_empty() || !t.head.is_empty());
        self.head_bytes = 0;
        self.head_since = None;
        cut
    }

    pub fn finish_completing(&mut self, block: BlockId) {
        if let Some(pos) = self.completing.iter().position(|c| c.block_id == block) {
            let done = self.completing.remove(pos);
            self.buffered_bytes = self.buffered_bytes.saturating_sub(done.bytes);
            self.resident_bytes = self.resident_bytes.saturating_sub(done.resident);
        }
    }

    /// The highest WAL segment no held data needs any more: every span in it is in an uploaded
    /// block, or was re-logged into a newer segment.
    pub fn deletable_segments(&self) -> Option<u64> {
        let live = self.tenants.values().flat_map(|t| t.live.values()).map(|l| l.first_seq);
        let pending = self.completing.iter().map(|c| c.min_seq);
        let floor = live
            .chain(pending)
            .chain(self.head_min_seq)
            .fold(self.wal_seq, u64::min);
        floor.checked_sub(1).filter(|upto| *upto > 0)
    }

    /// Segments to spill so that resident bytes fall to `target`: the head block's first
    /// (idle, read again only by its flush or a query), then live traces', the longest idle
    /// first. Blocks being uploaded are left alone: their flush frees them soon.
    pub fn spill_plan(&self, target: u64) -> Vec<SpillItem> {
        let mut excess = self.resident_bytes.saturating_sub(target);
        let mut out = Vec::new();
        let mut take = |tenant: &TenantId, id: &TraceId, held: &[Segment], excess: &mut u64| {
            let segments: Vec<Bytes> = held.iter().filter_map(Segment::heap).cloned().collect();
            if segments.is_empty() {
                return;
            }
            *excess = excess.saturating_sub(segments.iter().map(|d| d.len() as u64).sum());
            out.push(SpillItem {
                tenant: tenant.clone(),
                id: *id,
                segments,
            });
        };
        for (tenant, t) in &self.tenants {
            for (id, held) in &t.head {
                if excess == 0 {
                    return out;
                }
                take(tenant, id, held, &mut excess);
            }
        }
        let mut live: Vec<(u64, &TenantId, &TraceId, &Live)> = self
            .tenants
            .iter()
            .flat_map(|(tenant, t)| t.live.iter().map(move |(id, l)| (l.last_append, tenant, id, l)))
            .collect();
        live.sort_unstable_by_key(|(last, _, id, _)| (*last, **id));
        for (_, tenant, id, l) in live {
            if excess == 0 {
                break;
            }
            take(tenant, id, &l.segments, &mut excess);
        }
        out
    }

    /// [`State::spilled`] for every item of a plan, with the segments written for it.
    pub fn apply_spill(&mut self, plan: &[SpillItem], spilled: &[Vec<Segment>]) -> u64 {
        plan.iter()
            .zip(spilled)
            .map(|(item, new)| self.spilled(item, new))
            .sum()
    }

    /// Swaps spilled segments in: each `(old, new)` pair replaces the in-memory `old` wherever
    /// the trace is now (live or head). A trace cut into a block meanwhile keeps its heap
    /// bytes until the block is uploaded. Returns the bytes moved off the heap.
    fn spilled(&mut self, item: &SpillItem, new: &[Segment]) -> u64 {
        let Some(t) = self.tenants.get_mut(&item.tenant) else {
            return 0;
        };
        let mut moved = 0;
        let lists = t
            .live
            .get_mut(&item.id)
            .map(|l| &mut l.segments)
            .into_iter()
            .chain(t.head.get_mut(&item.id));
        for held in lists.flat_map(|l| l.iter_mut()) {
            let Some(heap) = held.heap() else {
                continue;
            };
            let same = |old: &Bytes| old.as_ptr() == heap.as_ptr() && old.len() == heap.len();
            if let Some(pos) = item.segments.iter().position(same) {
                moved += heap.len() as u64;
                *held = new[pos].clone();
            }
        }
        self.resident_bytes = self.resident_bytes.saturating_sub(moved);
        moved
    }
}
