//! `legato blocks list|inspect|verify`: the blocks of a bucket, read directly through the
//! storage crate (a local directory, or the backend of a server's config file), the way the
//! compactor lists them: tenants are the bucket's top-level prefixes, each tenant listed in
//! full, visible blocks being those with a meta.json that nothing compacted or replaced.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::{ArgGroup, Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use legato_model::TenantId;
use legato_storage::metrics::StorageMetrics;
use legato_storage::{
    BlockLayout, BlockMeta, BlockReader, CompactedBlockMeta, ObjectStore, StorageBackend, TraceStorageConfig,
    build_object_store, list_tenant,
};

use super::emit;
use super::table::grid;
use super::text::{self, Style};

#[derive(Debug, Subcommand)]
pub enum BlocksCommand {
    /// A table of the visible blocks: tenant, id, time range, traces, spans, size, level.
    List {
        #[command(flatten)]
        bucket: Bucket,
        /// Print the blocks' meta.json documents as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One block's meta.json and its Parquet row groups and columns.
    Inspect {
        /// Block id, or a prefix of one that only one block has.
        block: String,
        #[command(flatten)]
        bucket: Bucket,
        /// Print {"meta":..,"layout":..} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reads every visible block fully: checks that it decodes and that its data, bloom
    /// filter and meta.json agree. Exits non-zero if any block is bad.
    Verify {
        #[command(flatten)]
        bucket: Bucket,
        /// Only these blocks (ids or unique prefixes); all visible blocks by default.
        blocks: Vec<String>,
    },
}

/// Which bucket to read.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("bucket").required(true).args(["path", "config_file"])))]
pub struct Bucket {
    /// A local directory of blocks (what `storage.trace.local.path` points at).
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// A Legato config file: its `storage.trace` backend (local or S3) is read.
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Expand ${VAR} references in the config file.
    #[arg(long = "config.expand-env")]
    pub expand_env: bool,
    /// Only this tenant's blocks.
    #[arg(long)]
    pub tenant: Option<String>,
}

impl Bucket {
    fn open(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let storage = match (&self.path, &self.config_file) {
            (Some(path), _) => {
                let mut storage = TraceStorageConfig::default();
                storage.local.path = path.clone();
                storage
            }
            (None, Some(file)) => crate::config::Config::load(file, self.expand_env)?.storage.trace,
            (None, None) => bail!("name the bucket with --path DIR or -config.file FILE"),
        };
        match storage.backend {
            StorageBackend::Memory => bail!("storage.trace.backend is memory: there is no bucket to read"),
            StorageBackend::Local if !storage.local.path.is_dir() => bail!(
                "no block directory at {} (relative paths are taken from the current directory)",
                storage.local.path.display()
            ),
            _ => {}
        }
        Ok(build_object_store(&storage)?)
    }
}

/// What a bucket holds, all tenants (or the one asked for).
#[derive(Default)]
struct Contents {
    /// Visible blocks by tenant, then start time.
    live: Vec<Arc<BlockMeta>>,
    compacted: Vec<Arc<CompactedBlockMeta>>,
    orphans: usize,
}

async fn contents(store: &Arc<dyn ObjectStore>, only: Option<&str>) -> anyhow::Result<Contents> {
    let root = store.list_with_delimiter(None).await.context("listing the bucket")?;
    let mut out = Contents::default();
    for dir in root.common_prefixes {
        let Some(Ok(tenant)) = dir.filename().map(TenantId::new) else {
            continue;
        };
        if only.is_some_and(|t| t != tenant.as_str()) {
            continue;
        }
        let listing = list_tenant(store, &tenant, &Default::default(), &Default::default()).await?;
        out.live.extend(listing.live().into_values());
        out.compacted.extend(listing.compacted.into_values());
        out.orphans += listing.orphans.len();
    }
    out.live.sort_by(|a, b| {
        (a.tenant_id.as_str(), a.start_time_unix_nano, a.block_id).cmp(&(
            b.tenant_id.as_str(),
            b.start_time_unix_nano,
            b.block_id,
        ))
    });
    Ok(out)
}

/// The one block whose id is or starts with `wanted`, visible or compacted.
fn find<'a>(found: &'a Contents, wanted: &str) -> anyhow::Result<(&'a BlockMeta, Option<u64>)> {
    let wanted = wanted.trim().to_ascii_lowercase();
    let live = found.live.iter().map(|m| (m.as_ref(), None));
    let compacted = found
        .compacted
        .iter()
        .map(|c| (&c.meta, Some(c.compacted_at_unix_nano)));
    let matches: Vec<(&BlockMeta, Option<u64>)> = live
        .chain(compacted)
        .filter(|(m, _)| m.block_id.to_string().starts_with(&wanted))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(anyhow!("no block {wanted:?} in the bucket")),
        many => Err(anyhow!("{wanted:?} is ambiguous: {} blocks start with it", many.len())),
    }
}

pub async fn run(command: BlocksCommand, style: Style) -> anyhow::Result<()> {
    match command {
        BlocksCommand::List { bucket, json } => {
            let found = contents(&bucket.open()?, bucket.tenant.as_deref()).await?;
            if json {
                let metas: Vec<&BlockMeta> = found.live.iter().map(Arc::as_ref).collect();
                emit(&format!("{}\n", serde_json::to_string_pretty(&metas)?));
                return Ok(());
            }
            emit(&render_list(&found.live, style));
            if found.compacted.len() + found.orphans > 0 {
                emit(&format!(
                    "also {} awaiting deletion and {} (no meta.json)\n",
                    text::count(found.compacted.len() as u64, "compacted block"),
                    text::count(found.orphans as u64, "orphaned block")
                ));
            }
            Ok(())
        }
        BlocksCommand::Inspect { block, bucket, json } => {
            let store = bucket.open()?;
            let found = contents(&store, bucket.tenant.as_deref()).await?;
            let (meta, compacted_at) = find(&found, &block)?;
            let reader = BlockReader::new(store, StorageMetrics::default());
            let layout = reader.layout(meta).await?;
            if json {
                let doc = serde_json::json!({"meta": meta, "compactedAtUnixNano": compacted_at, "layout": layout});
                emit(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
            } else {
                emit(&render_inspect(meta, compacted_at, &layout, style));
            }
            Ok(())
        }
        BlocksCommand::Verify { bucket, blocks } => verify(&bucket, &blocks, style).await,
    }
}

async fn verify(bucket: &Bucket, wanted: &[String], style: Style) -> anyhow::Result<()> {
    let store = bucket.open()?;
    let found = contents(&store, bucket.tenant.as_deref()).await?;
    let metas: Vec<&BlockMeta> = if wanted.is_empty() {
        found.live.iter().map(Arc::as_ref).collect()
    } else {
        wanted
            .iter()
            .map(|w| find(&found, w).map(|f| f.0))
            .collect::<anyhow::Result<_>>()?
    };
    let reader = BlockReader::new(store, StorageMetrics::default());
    let total_spans = metas.iter().map(|m| m.total_spans).sum();
    // Drawn on stderr, and only when it is a terminal.
    let progress = ProgressBar::new(total_spans).with_style(
        ProgressStyle::with_template("{spinner} block {msg} [{bar:30}] {human_pos}/{human_len} spans, {eta} left")?
            .progress_chars("=> "),
    );
    let mut bad = 0;
    for (n, meta) in metas.iter().enumerate() {
        progress.set_message(format!("{}/{}", n + 1, metas.len()));
        let check = reader.verify(meta, |spans| progress.inc(spans)).await;
        let name = format!("{}/{}", meta.tenant_id, meta.block_id);
        let line = if check.problems.is_empty() {
            format!(
                "ok   {name}  {}, {}",
                text::count(check.traces, "trace"),
                text::count(check.spans, "span")
            )
        } else {
            bad += 1;
            format!("BAD  {name}: {}", check.problems.join("; "))
        };
        progress.suspend(|| emit(&format!("{line}\n")));
    }
    progress.finish_and_clear();
    let summary = format!(
        "verified {}: {} ok, {bad} bad",
        text::count(metas.len() as u64, "block"),
        metas.len() - bad
    );
    if bad > 0 {
        bail!("{summary}");
    }
    emit(&format!("{}\n", style.paint(text::BOLD, &summary)));
    Ok(())
}

/// The table of `legato blocks list` and a totals line.
pub fn render_list(metas: &[Arc<BlockMeta>], style: Style) -> String {
    if metas.is_empty() {
        return "no blocks\n".into();
    }
    let rows = metas
        .iter()
        .map(|m| {
            vec![
                m.tenant_id.to_string(),
                m.block_id.to_string(),
                text::time_seconds(m.start_time_unix_nano),
                text::duration(m.end_time_unix_nano.saturating_sub(m.start_time_unix_nano)),
                m.total_traces.to_string(),
                m.total_spans.to_string(),
                text::bytes(m.data_size + m.bloom_size),
                m.compaction_level.to_string(),
            ]
        })
        .collect();
    let header = [
        "TENANT", "BLOCK", "START", "DURATION", "TRACES", "SPANS", "SIZE", "LEVEL",
    ];
    let mut out = grid(&header, rows, &[3, 4, 5, 6, 7], &[0, 1, 2, 3, 4, 5, 6, 7], style.width);
    let mut tenants: BTreeMap<&str, usize> = BTreeMap::new();
    for m in metas {
        *tenants.entry(m.tenant_id.as_str()).or_default() += 1;
    }
    out.push_str(&format!(
        "{} of {}: {}, {}, {}\n",
        text::count(metas.len() as u64, "block"),
        text::count(tenants.len() as u64, "tenant"),
        text::count(metas.iter().map(|m| m.total_traces).sum::<u64>(), "trace"),
        text::count(metas.iter().map(|m| m.total_spans).sum::<u64>(), "span"),
        text::bytes(metas.iter().map(|m| m.data_size + m.bloom_size).sum()),
    ));
    out
}

/// `legato blocks inspect`: the meta as key/value lines, then row groups and columns.
pub fn render_inspect(meta: &BlockMeta, compacted_at: Option<u64>, layout: &BlockLayout, style: Style) -> String {
    let mut fields = vec![
        ("block", meta.block_id.to_string()),
        ("tenant", meta.tenant_id.to_string()),
        ("encoding", meta.encoding.clone()),
        ("start", text::time_millis(meta.start_time_unix_nano)),
        ("end", text::time_millis(meta.end_time_unix_nano)),
        ("traces", meta.total_traces.to_string()),
        ("spans", meta.total_spans.to_string()),
        ("level", meta.compaction_level.to_string()),
        ("created", text::time_millis(meta.created_at_unix_nano)),
        (
            "size",
            format!(
                "data {} (footer {}), bloom {}",
                text::bytes(meta.data_size),
                text::bytes(meta.footer_size),
                text::bytes(meta.bloom_size)
            ),
        ),
        ("writer", layout.created_by.clone().unwrap_or_else(|| "-".into())),
    ];
    if let Some(at) = compacted_at {
        fields.push((
            "compacted",
            format!("{} (hidden; deleted later)", text::time_millis(at)),
        ));
    }
    if !meta.replaces.is_empty() {
        let ids: Vec<String> = meta.replaces.iter().map(ToString::to_string).collect();
        fields.push(("replaces", ids.join(", ")));
    }
    if let Some(filter) = &meta.retention_filter {
        fields.push(("retained by", filter.clone()));
    }
    let mut out: String = fields
        .iter()
        .map(|(k, v)| format!("{:<12}{v}\n", format!("{k}:")))
        .collect();
    out.push_str(&format!("\n{}\n", style.paint(text::BOLD, "Row groups")));
    let groups = layout
        .row_groups
        .iter()
        .enumerate()
        .map(|(i, rg)| {
            vec![
                i.to_string(),
                rg.rows.to_string(),
                text::bytes(rg.compressed_bytes),
                text::bytes(rg.uncompressed_bytes),
                rg.min_trace_id.clone().unwrap_or_default(),
                rg.max_trace_id.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["#", "ROWS", "COMPRESSED", "UNCOMPRESSED", "FIRST TRACE", "LAST TRACE"];
    out.push_str(&grid(&header, groups, &[0, 1, 2, 3], &[0, 1, 2, 3, 4, 5], style.width));
    out.push_str(&format!("\n{}\n", style.paint(text::BOLD, "Columns")));
    let columns = layout
        .columns
        .iter()
        .map(|c| {
            let ratio = c.uncompressed_bytes as f64 / c.compressed_bytes.max(1) as f64;
            vec![
                c.name.clone(),
                c.compression.clone(),
                text::bytes(c.compressed_bytes),
                text::bytes(c.uncompressed_bytes),
                format!("{}x", text::number(ratio)),
            ]
        })
        .collect();
    let header = ["COLUMN", "CODEC", "COMPRESSED", "UNCOMPRESSED", "RATIO"];
    out.push_str(&grid(&header, columns, &[2, 3, 4], &[0, 2, 3, 4], style.width));
    out
}

#[cfg(test)]
mod tests {
    use legato_model::BlockId;
    use legato_storage::{ColumnLayout, RowGroupLayout};

    use super::*;

    fn meta(id: u128, tenant: &str, start_s: u64, spans: u64, level: u32) -> BlockMeta {
        BlockMeta {
            encoding: "legato-v1".into(),
            block_id: block_id(id),
            tenant_id: TenantId::new(tenant).unwrap(),
            start_time_unix_nano: start_s * 1_000_000_000,
            end_time_unix_nano: (start_s + 300) * 1_000_000_000,
            total_traces: spans / 4,
            total_spans: spans,
            row_groups: 1,
            data_size: spans * 90,
            footer_size: 4000,
            bloom_size: 1200,
            compaction_level: level,
            created_at_unix_nano: (start_s + 310) * 1_000_000_000,
            replaces: Vec::new(),
            retention_filter: None,
        }
    }

    fn block_id(n: u128) -> BlockId {
        serde_json::from_value(serde_json::json!(format!("{n:032x}"))).unwrap()
    }

    #[test]
    fn block_list_and_inspect() {
        let metas = vec![
            Arc::new(meta(
                0x4f1c8a52_6d3e_4b7a_9c0f_2e8d5a1b3c7e,
                "acme",
                1_700_000_000,
                48_000,
                1,
            )),
            Arc::new(meta(
                0x9b2e_0000_0000_4000_8000_0000_0000_0001,
                "single-tenant",
                1_700_000_300,
                812,
                0,
            )),
        ];
        insta::assert_snapshot!(render_list(&metas, Style::plain(110)));
        let layout = BlockLayout {
            created_by: Some("parquet-rs version 60.0.0".into()),
            rows: 812,
            row_groups: vec![RowGroupLayout {
                rows: 812,
                compressed_bytes: 61_000,
                uncompressed_bytes: 190_000,
                min_trace_id: Some("00".repeat(16)),
                max_trace_id: Some("ff".repeat(16)),
            }],
            columns: vec![ColumnLayout {
                name: "trace_id".into(),
                compression: "ZSTD(ZstdLevel(1))".into(),
                compressed_bytes: 4_100,
                uncompressed_bytes: 13_000,
            }],
        };
        insta::assert_snapshot!(
            "block_inspect",
            render_inspect(&metas[1], Some(1_700_001_000_000_000_000), &layout, Style::plain(110))
        );
    }
}
