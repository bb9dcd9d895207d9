//! TraceQL metrics in microservices mode: the query frontend has ingesters and queriers
//! evaluate the query where the data is, and merges their partial results.
//!
//! Data that is replicated (each ingester's copy of a trace, and the level-0 blocks each
//! ingester flushes) must count once. The frontend works with pieces: a piece is a copy of
//! (part of) a trace, named by the trace id and the fingerprint of its span ids.
//!
//! 1. Every ingester lists the pieces it holds (its traces, and the blocks it flushed
//!    recently, which queriers may not have polled yet) with a span in range.
//! 2. Each piece goes to the first ingester (in address order) that listed it; each ingester
//!    counts the pieces given to it. An ingester that fails has its pieces given to the next
//!    one that holds them.
//! 3. Queriers count the blocks, leaving out the pieces the ingesters counted. Replicated
//!    copies in blocks (each ingester flushes its own; compaction merges them over time) are
//!    only in blocks whose time ranges overlap: each job takes whole overlap groups and
//!    counts each copy once within them.
//!
//! What could not be counted (an ingester's pieces nobody else holds, an unreadable block)
//! makes the answer partial, naming it; a limit fails the query. Copies that differ (a
//! replica missed part of a trace while it was down) are distinct pieces and count apart
//! until compaction merges them, as in single-binary mode.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::StreamExt;
use legato_model::TenantId;
use legato_proto::internal::MetricsJobRequest;
use legato_proto::internal::metrics_job_request::Mode;
use legato_querier::{CopyKey, JobScope, MetricsRequest, QueryError, SearchOutcome};
use legato_storage::BlockMeta;
use legato_traceql::metrics::{MetricsEval, MetricsPartial, Series};

use super::internal::scope_to_wire;
use super::remote::{BLOCKS_PER_JOB, ClusterFanout, ingester_addrs, may_miss_data, on_a_querier};

/// What one metrics job returned.
struct JobAnswer {
    partial: MetricsPartial,
    outcome: SearchOutcome,
    pieces: Vec<CopyKey>,
}

impl ClusterFanout {
    pub(super) async fn metrics_jobs(
        &self,
        tenant: &TenantId,
        req: MetricsRequest,
    ) -> Result<(Vec<Series>, SearchOutcome), QueryError> {
        let mut eval = MetricsEval::new(
            req.plan.clone(),
            req.stage.clone(),
            req.start_ns,
            req.end_ns,
            req.step_ns,
            req.max_exemplars,
        )
        .with_max_series(req.max_series);
        let mut total = SearchOutcome::default();
        let mut missing: Vec<String> = Vec::new();
        let mut absorb = |eval: &mut MetricsEval, answer: JobAnswer, missing: &mut Vec<String>| {
            eval.merge(answer.partial);
            total.inspected_traces += answer.outcome.inspected_traces;
            total.inspected_bytes += answer.outcome.inspected_bytes;
            total.total_blocks += answer.outcome.total_blocks;
            total.completed_jobs += 1;
            missing.extend(answer.outcome.missing_data);
        };
        let job = |addr: String, scope: JobScope, blocks: Bytes, mode: Mode, pieces: Bytes| {
            let request = MetricsJobRequest {
                tenant: tenant.as_str().to_string(),
                scope: Some(scope_to_wire(scope)),
                query: req.query_text.clone(),
                start_ns: req.start_ns,
                end_ns: req.end_ns,
                step_ns: req.step_ns,
                max_exemplars: req.max_exemplars as u32,
                max_series: req.max_series as u32,
                blocks,
                mode: mode as i32,
                pieces,
            };
            let client = self.clients.jobs(&addr);
            async move {
                let resp = client?.metrics(request).await?.into_inner();
                let bad = |e: serde_json::Error| tonic::Status::internal(format!("bad metrics job answer: {e}"));
                Ok::<_, tonic::Status>(JobAnswer {
                    partial: match resp.partial.is_empty() {
                        true => MetricsPartial::default(),
                        false => serde_json::from_slice(&resp.partial).map_err(bad)?,
                    },
                    outcome: match resp.outcome.is_empty() {
                        true => SearchOutcome::default(),
                        false => serde_json::from_slice(&resp.outcome).map_err(bad)?,
                    },
                    pieces: decode_pieces(&resp.pieces).map_err(tonic::Status::internal)?,
                })
            }
        };
        let limit = |e: &tonic::Status| {
            (e.code() == tonic::Code::FailedPrecondition).then(|| QueryError::Limit(e.message().to_string()))
        };

        // 1. Every ingester lists its pieces.
        let held = JobScope::ALL;
        let mut ingesters = ingester_addrs(&self.cluster);
        ingesters.sort();
        let listed = futures::future::join_all(
            ingesters
                .iter()
                .map(|addr| job(addr.clone(), held, Bytes::new(), Mode::List, Bytes::new())),
        )
        .await;
        let mut holders: HashMap<CopyKey, Vec<usize>> = HashMap::new();
        let mut failed: Vec<String> = Vec::new();
        for (i, result) in listed.into_iter().enumerate() {
            match result {
                Ok(answer) => answer
                    .pieces
                    .into_iter()
                    .for_each(|key| holders.entry(key).or_default().push(i)),
                Err(e) => {
                    if let Some(limit) = limit(&e) {
                        return Err(limit);
                    }
                    tracing::warn!(ingester = %ingesters[i], error = %e.message(), "ingester did not list its data for a metrics query");
                    failed.push(format!("{}: {}", ingesters[i], e.message()));
                }
            }
        }
        if may_miss_data(failed.len(), ingesters.len(), self.replication_factor) {
            missing.push(format!(
                "{} of {} ingesters did not answer (replication factor {}), recent data may be missing: {}",
                failed.len(),
                ingesters.len(),
                self.replication_factor,
                failed.join("; ")
            ));
        }

        // 2. Each piece is counted by the first ingester holding it; the pieces of one that
        // fails go to the next holder.
        let mut assigned: HashMap<usize, Vec<CopyKey>> = HashMap::new();
        for (key, who) in &holders {
            assigned.entry(who[0]).or_default().push(*key);
        }
        let mut dead: HashSet<usize> = HashSet::new();
        let mut lost = 0usize;
        while !assigned.is_empty() {
            let round: Vec<(usize, Vec<CopyKey>)> = assigned.drain().collect();
            let answers = futures::future::join_all(round.into_iter().map(|(i, keys)| {
                let call = job(
                    ingesters[i].clone(),
                    held,
                    Bytes::new(),
                    Mode::Only,
                    encode_pieces(&keys),
                );
                async move { (i, keys, call.await) }
            }))
            .await;
            for (i, keys, result) in answers {
                match result {
                    Ok(answer) => absorb(&mut eval, answer, &mut missing),
                    Err(e) => {
                        if let Some(limit) = limit(&e) {
                            return Err(limit);
                        }
                        tracing::warn!(ingester = %ingesters[i], error = %e.message(), "ingester failed a metrics job; its pieces go to other replicas");
                        dead.insert(i);
                        for key in keys {
                            match holders[&key].iter().find(|h| !dead.contains(h)) {
                                Some(next) => assigned.entry(*next).or_default().push(key),
                                None => lost += 1,
                            }
                        }
                    }
                }
            }
        }
        if lost > 0 {
            missing.push(format!(
                "{lost} pieces of recent traces were held only by ingesters that failed to answer"
            ));
        }

        // 3. Blocks: whole overlap groups per job, leaving out what the ingesters counted.
        let queriers = self.queriers();
        let in_range: Vec<_> = self
            .blocklist
            .blocks(tenant)
            .into_iter()
            .filter(|b| b.end_time_unix_nano >= req.start_ns && b.start_time_unix_nano <= req.end_ns)
            .collect();
        if queriers.is_empty() {
            if !in_range.is_empty() {
                return Err(QueryError::Job("no querier is available to read blocks".into()));
            }
        } else if !in_range.is_empty() {
            let counted: Vec<CopyKey> = holders.into_keys().collect();
            let counted = encode_pieces(&counted);
            let jobs_wanted = (in_range.len().div_ceil(BLOCKS_PER_JOB).max(queriers.len()))
                .clamp(1, self.query_shards.max(1) as usize);
            let plans = pack_groups(legato_querier::overlap_groups(in_range), jobs_wanted);
            let blocks_only = JobScope {
                recent: false,
                ..JobScope::ALL
            };
            let first = self.next.fetch_add(1, Ordering::Relaxed);
            let (queriers, job, max_retries) = (&queriers, &job, self.max_retries);
            let mut jobs = futures::stream::iter(plans.into_iter().enumerate().map(|(i, ids)| {
                let counted = counted.clone();
                on_a_querier(queriers, first + i, max_retries, move |addr| {
                    job(addr, blocks_only, ids.clone(), Mode::Skip, counted.clone())
                })
            }))
            .buffer_unordered(self.concurrent_jobs.max(1));
            while let Some((addr, result)) = jobs.next().await {
                match result {
                    Ok(answer) => absorb(&mut eval, answer, &mut missing),
                    Err(e) => {
                        return Err(
                            limit(&e).unwrap_or_else(|| QueryError::Job(format!("querier {addr}: {}", e.message())))
                        );
                    }
                }
            }
        }
        if req.cancel.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        total.series_truncated = eval.truncated();
        total.total_jobs = total.completed_jobs;
        total.missing_data = (!missing.is_empty()).then(|| missing.join("; "));
        Ok((eval.finish(), total))
    }
}

/// Overlap groups packed into at most `jobs` block lists (JSON arrays of metas), largest
/// groups first onto the list with the fewest blocks.
fn pack_groups(mut groups: Vec<Vec<Arc<BlockMeta>>>, jobs: usize) -> Vec<Bytes> {
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    let mut lists: Vec<Vec<Arc<BlockMeta>>> = vec![Vec::new(); jobs.clamp(1, groups.len().max(1))];
    for group in groups {
        if let Some(list) = lists.iter_mut().min_by_key(|l| l.len()) {
            list.extend(group);
        }
    }
    lists
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::to_vec(&l).unwrap_or_default().into())
        .collect()
}

/// Pieces on the wire: 16 bytes of trace id and 8 of fingerprint (little endian) each.
pub fn encode_pieces(keys: &[CopyKey]) -> Bytes {
    let mut out = Vec::with_capacity(keys.len() * 24);
    for (id, fingerprint) in keys {
        out.extend_from_slice(id);
        out.extend_from_slice(&fingerprint.to_le_bytes());
    }
    out.into()
}

pub fn decode_pieces(bytes: &[u8]) -> Result<Vec<CopyKey>, String> {
    if !bytes.len().is_multiple_of(24) {
        return Err(format!("pieces take 24 bytes each, not {} in all", bytes.len()));
    }
    Ok(bytes
        .chunks_exact(24)
        .map(|c| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&c[..16]);
            let mut fp = [0u8; 8];
            fp.copy_from_slice(&c[16..]);
            (id, u64::from_le_bytes(fp))
        })
        .collect())
}
