//! `compactor`: Tempo's key names under `compactor.compaction`.

use std::time::Duration;

use legato_model::ByteSize;
use legato_storage::config_durations as dur;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `compactor`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    pub compaction: CompactionConfig,
}

/// `compactor.compaction`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    /// Blocks whose newest span ended longer ago than this are marked compacted (expired) and
    /// deleted after `compacted_block_retention`. Overridable per tenant.
    #[serde(with = "dur")]
    pub block_retention: Duration,
    /// How long compacted (and expired) blocks stay in the bucket before they are deleted, so
    /// that readers with an older blocklist can still read them. Also the grace period after
    /// which a block directory without meta.json (an abandoned upload) is deleted.
    #[serde(with = "dur")]
    pub compacted_block_retention: Duration,
    /// Blocks are merged only with blocks whose end time falls in the same window.
    #[serde(with = "dur")]
    pub compaction_window: Duration,
    /// Most spans in one output block.
    pub max_compaction_objects: u64,
    /// Most bytes (sum of the inputs' data files) in one output block.
    pub max_block_bytes: ByteSize,
    /// Most blocks merged by one job.
    pub max_input_blocks: usize,
    /// How often a compaction cycle runs.
    #[serde(with = "dur")]
    pub compaction_cycle: Duration,
    /// *Legato*: the nice value (Linux, 0-19) of the thread that merges and encodes a job's
    /// output, so that queries and ingest in the same process come first when CPU is short.
    /// 0 (the default) runs it at the process's priority: at the maximum ingest rate a
    /// lowered compactor falls behind (docs/benchmarks.md).
    pub nice: i32,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            block_retention: Duration::from_secs(336 * 3600),
            compacted_block_retention: Duration::from_secs(3600),
            compaction_window: Duration::from_secs(3600),
            max_compaction_objects: 6_000_000,
            max_block_bytes: ByteSize(100 << 30),
            max_input_blocks: 8,
            compaction_cycle: Duration::from_secs(30),
            nice: 0,
        }
    }
}

impl CompactorConfig {
    /// Refuses settings that cannot work; the message names the key.
    pub fn validate(&self) -> Result<()> {
        let c = &self.compaction;
        let positive = [
            ("compactor.compaction.block_retention", c.block_retention),
            ("compactor.compaction.compaction_window", c.compaction_window),
            ("compactor.compaction.compaction_cycle", c.compaction_cycle),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::Config(format!("{key} must be greater than 0")));
        }
        if c.max_compaction_objects == 0 {
            return Err(Error::Config(
                "compactor.compaction.max_compaction_objects must be greater than 0".into(),
            ));
        }
        if c.max_block_bytes.0 == 0 {
            return Err(Error::Config(
                "compactor.compaction.max_block_bytes must be greater than 0".into(),
            ));
        }
        if !(0..=19).contains(&c.nice) {
            return Err(Error::Config(format!(
                "compactor.compaction.nice must be between 0 and 19, got {}",
                c.nice
            )));
        }
        if c.max_input_blocks < 2 {
            return Err(Error::Config(format!(
                "compactor.compaction.max_input_blocks must be at least 2, got {}",
                c.max_input_blocks
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_is_a_linux_nice_value() {
        let parse = |yaml: &str| serde_yaml::from_str::<CompactorConfig>(yaml).unwrap().validate();
        assert_eq!(CompactorConfig::default().compaction.nice, 0);
        assert!(parse("compaction:\n  nice: 0\n").is_ok());
        assert!(parse("compaction:\n  nice: 19\n").is_ok());
        let err = parse("compaction:\n  nice: 20\n").unwrap_err().to_string();
        assert!(err.contains("compactor.compaction.nice"), "{err}");
        assert!(parse("compaction:\n  nice: -1\n").is_err());
    }

    #[test]
    fn defaults_and_tempo_keys() {
        let cfg: CompactorConfig = serde_yaml::from_str(
            "compaction:\n  block_retention: 48h\n  compacted_block_retention: 10m\n  max_block_bytes: 1GiB\n  max_input_blocks: 4\n",
        )
        .unwrap();
        assert_eq!(cfg.compaction.block_retention, Duration::from_secs(48 * 3600));
        assert_eq!(cfg.compaction.compacted_block_retention, Duration::from_secs(600));
        assert_eq!(cfg.compaction.max_block_bytes, ByteSize(1 << 30));
        assert_eq!(cfg.compaction.max_input_blocks, 4);
        assert_eq!(cfg.compaction.compaction_window, Duration::from_secs(3600));
        assert_eq!(cfg.compaction.max_compaction_objects, 6_000_000);
        assert_eq!(cfg.compaction.compaction_cycle, Duration::from_secs(30));
        cfg.validate().unwrap();
        CompactorConfig::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_nonsense_are_refused_by_name() {
        assert!(serde_yaml::from_str::<CompactorConfig>("compaction:\n  retention: 1h\n").is_err());
        let mut cfg = CompactorConfig::default();
        cfg.compaction.max_input_blocks = 1;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("compactor.compaction.max_input_blocks"), "{err}");
        let mut cfg = CompactorConfig::default();
        cfg.compaction.compaction_window = Duration::ZERO;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("compactor.compaction.compaction_window"), "{err}");
    }
}
