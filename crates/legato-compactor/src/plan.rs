//! Planning: which blocks to merge. A pure function of the tenant's visible blocks and the
//! limits, kept apart from execution so it can be tested exhaustively.

use std::collections::BTreeMap;
use std::sync::Arc;

use legato_model::TenantId;
use legato_storage::{BlockMeta, ENCODING_V1};

/// Bounds of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Window length in nanoseconds; blocks merge only within one window (by end time).
    pub window_nanos: u64,
    pub max_input_blocks: usize,
    /// Most spans in the output (sum of the inputs' spans).
    pub max_spans: u64,
    /// Most bytes in the output (sum of the inputs' data files).
    pub max_bytes: u64,
}

/// Blocks to merge into one: same tenant, window and level, at least two.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub tenant: TenantId,
    /// `end_time / window`.
    pub window: u64,
    pub level: u32,
    pub blocks: Vec<Arc<BlockMeta>>,
}

impl Job {
    /// The ownership key: compactors sharing a ring each take the jobs whose key they own.
    pub fn key(&self) -> String {
        job_key(&self.tenant, self.window, self.level)
    }

    pub fn total_spans(&self) -> u64 {
        self.blocks.iter().map(|b| b.total_spans).sum()
    }
}

/// `<tenant>/<window>/<level>`.
pub fn job_key(tenant: &TenantId, window: u64, level: u32) -> String {
    format!("{tenant}/{window}/{level}")
}

/// The ownership key of a tenant's housekeeping (retention, deletion, the tenant index).
pub fn index_key(tenant: &TenantId) -> String {
    format!("index/{tenant}")
}

/// Groups blocks by (window, level), smallest blocks first, and cuts each group into runs of
/// at least two blocks within the limits. Blocks of other encodings are left alone; a block
/// that alone exceeds a limit is never picked. Older windows and lower levels come first.
pub fn plan(tenant: &TenantId, blocks: &[Arc<BlockMeta>], limits: &PlanLimits) -> Vec<Job> {
    let window_nanos = limits.window_nanos.max(1);
    let mut groups: BTreeMap<(u64, u32), Vec<Arc<BlockMeta>>> = BTreeMap::new();
    for block in blocks {
        if block.encoding != ENCODING_V1 || block.tenant_id != *tenant {
            continue;
        }
        let window = block.end_time_unix_nano / window_nanos;
        groups
            .entry((window, block.compaction_level))
            .or_default()
            .push(block.clone());
    }
    let mut jobs = Vec::new();
    for ((window, level), mut group) in groups {
        group.sort_by_key(|b| (b.total_spans, b.data_size, b.block_id));
        let mut run: Vec<Arc<BlockMeta>> = Vec::new();
        let (mut spans, mut bytes) = (0u64, 0u64);
        for block in group {
            if block.total_spans > limits.max_spans || block.data_size > limits.max_bytes {
                continue;
            }
            let fits = run.len() < limits.max_input_blocks
                && spans.saturating_add(block.total_spans) <= limits.max_spans
                && bytes.saturating_add(block.data_size) <= limits.max_bytes;
            if !fits {
                push_job(&mut jobs, tenant, window, level, std::mem::take(&mut run));
                (spans, bytes) = (0, 0);
            }
            spans += block.total_spans;
            bytes += block.data_size;
            run.push(block);
        }
        push_job(&mut jobs, tenant, window, level, run);
    }
    jobs
}

fn push_job(jobs: &mut Vec<Job>, tenant: &TenantId, window: u64, level: u32, run: Vec<Arc<BlockMeta>>) {
    if run.len() >= 2 {
        jobs.push(Job {
            tenant: tenant.clone(),
            window,
            level,
            blocks: run,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use legato_model::BlockId;
    use proptest::prelude::*;

    use super::*;

    const HOUR: u64 = 3_600_000_000_000;

    fn block(end: u64, level: u32, spans: u64, bytes: u64) -> Arc<BlockMeta> {
        Arc::new(BlockMeta {
            encoding: ENCODING_V1.into(),
            block_id: BlockId::random(),
            tenant_id: TenantId::single(),
            start_time_unix_nano: end.saturating_sub(1),
            end_time_unix_nano: end,
            total_traces: spans,
            total_spans: spans,
            row_groups: 1,
            data_size: bytes,
            footer_size: 0,
            bloom_size: 0,
            compaction_level: level,
            created_at_unix_nano: 0,
            replaces: Vec::new(),
            retention_filter: None,
        })
    }

    fn limits() -> PlanLimits {
        PlanLimits {
            window_nanos: HOUR,
            max_input_blocks: 3,
            max_spans: 100,
            max_bytes: 1000,
        }
    }

    #[test]
    fn groups_by_window_and_level_and_respects_limits() {
        let t = TenantId::single();
        let blocks = vec![
            block(10, 0, 10, 10),
            block(20, 0, 10, 10),
            block(30, 0, 10, 10),
            block(40, 0, 10, 10),
            block(HOUR + 1, 0, 10, 10), // alone in its window
            block(50, 1, 10, 10),       // alone at its level
            block(60, 0, 500, 10),      // too many spans for any job
        ];
        let jobs = plan(&t, &blocks, &limits());
        // Four level-0 blocks in window 0 with at most three per job: one job of three; the
        // fourth is left for a later cycle.
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].blocks.len(), 3);
        assert_eq!(jobs[0].key(), format!("{t}/0/0"));
    }

    #[test]
    fn other_encodings_are_not_merged() {
        let t = TenantId::single();
        let mut odd = block(10, 0, 1, 1).as_ref().clone();
        odd.encoding = "vParquet4".into();
        let jobs = plan(&t, &[Arc::new(odd), block(20, 0, 1, 1)], &limits());
        assert!(jobs.is_empty());
    }

    proptest! {
        #[test]
        fn jobs_are_disjoint_homogeneous_and_within_limits(
            specs in proptest::collection::vec((0u64..3, 0u32..2, 0u64..60, 0u64..400), 0..40),
            max_input_blocks in 2usize..6,
        ) {
            let t = TenantId::single();
            let blocks: Vec<_> = specs.iter().map(|(w, l, s, b)| block(w * HOUR + 5, *l, *s, *b)).collect();
            let limits = PlanLimits { window_nanos: HOUR, max_input_blocks, max_spans: 100, max_bytes: 1000 };
            let jobs = plan(&t, &blocks, &limits);
            let mut seen = HashSet::new();
            for job in &jobs {
                prop_assert!(job.blocks.len() >= 2 && job.blocks.len() <= max_input_blocks);
                prop_assert!(job.total_spans() <= limits.max_spans);
                prop_assert!(job.blocks.iter().map(|b| b.data_size).sum::<u64>() <= limits.max_bytes);
                for b in &job.blocks {
                    prop_assert!(seen.insert(b.block_id), "a block is in two jobs");
                    prop_assert_eq!(b.end_time_unix_nano / HOUR, job.window);
                    prop_assert_eq!(b.compaction_level, job.level);
                }
            }
        }
    }
}
