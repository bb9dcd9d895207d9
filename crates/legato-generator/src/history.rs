//! The generator's series history, so that Legato's own `/prometheus` API answers over any
//! range the generator covered, across restarts, with no Prometheus.
//!
//! At every collection the increase of each series since the previous collection is added
//! to the bucket of the current minute (one point per series and minute, stamped with the
//! time of the latest collection in it). Finished minutes are written to the object store as
//! one small gzipped JSON file per tenant, minute and process under
//! `legato@generator/<tenant>/<hour>/` (`@` is not allowed in tenant ids, so block listings
//! never see these files); the compactor merges each finished hour into one file and
//! deletes hours past the tenant's block retention.
//!
//! Reads list the hour folders of the range, read the files (cached: they never change) and
//! add the minutes not yet written. A merged file names the files it replaces, which readers
//! then skip, so a merge is never counted twice even when its inputs are still there.
//! Writing a minute and dropping it from memory happen under one lock that readers share,
//! so a read sees each minute once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use legato_model::TenantId;
use legato_storage::object_store::path::Path;
use legato_storage::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::remote_write::TimeSeries;

/// Top folder of the history in the bucket.
pub const PREFIX: &str = "legato@generator";
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// Finished minutes kept in memory while the store fails; older ones are dropped (counted).
const MAX_UNWRITTEN_MINUTES: usize = 120;
/// Parsed files kept for reads, by their estimated size in memory; the oldest go first.
const MAX_CACHED_BYTES: usize = 256 << 20;

/// A series' labels, sorted by name, `__name__` included.
pub type SeriesLabels = Vec<(String, String)>;

/// One series' points: (Unix ms, increase since the previous point).
pub type Points = Vec<(i64, f64)>;

/// One history file (JSON, gzip): each series with its points.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Chunk {
    series: Vec<(SeriesLabels, Points)>,
    /// File names (in the same hour folder) this merged file replaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replaces: Vec<String>,
    /// Series positions by metric name (built when read).
    #[serde(skip)]
    by_name: HashMap<String, Vec<usize>>,
}

/// A minute's series, one chunk per family.
type FamilyChunks = Vec<(&'static str, Chunk)>;

/// Files hold one family of series each, so a service-map query never decodes span metrics.
fn family(metric: &str) -> &'static str {
    if metric.starts_with("traces_service_graph") {
        "service_graph"
    } else if metric.starts_with("traces_spanmetrics") {
        "spanmetrics"
    } else {
        "other"
    }
}

fn metric_name(labels: &SeriesLabels) -> &str {
    labels
        .binary_search_by(|(k, _)| k.as_str().cmp("__name__"))
        .map(|i| labels[i].1.as_str())
        .unwrap_or("")
}

/// The family a history file holds, from its name (`<...>.<family>.json.gz`).
fn file_family(name: &str) -> &str {
    name.strip_suffix(".json.gz")
        .and_then(|n| n.rsplit_once('.'))
        .map_or("", |(_, f)| f)
}

impl Chunk {
    fn from_series(series: impl IntoIterator<Item = (SeriesLabels, Points)>) -> Self {
        Chunk {
            series: series.into_iter().collect(),
            ..Default::default()
        }
    }

    fn index(mut self) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (labels, _)) in self.series.iter().enumerate() {
            by_name.entry(metric_name(labels).to_string()).or_default().push(i);
        }
        self.by_name = by_name;
        self
    }

    /// The series named `name` (all when `None`).
    fn named<'a>(&'a self, name: Option<&str>) -> Box<dyn Iterator<Item = &'a (SeriesLabels, Points)> + 'a> {
        match name {
            None => Box::new(self.series.iter()),
            Some(n) => Box::new(
                self.by_name
                    .get(n)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| self.series.get(*i)),
            ),
        }
    }

    /// Roughly what the chunk takes in memory.
    fn approx_bytes(&self) -> usize {
        self.series
            .iter()
            .map(|(labels, points)| {
                72 + points.len() * 16 + labels.iter().map(|(k, v)| 48 + k.len() + v.len()).sum::<usize>()
            })
            .sum()
    }

    fn encode(&self) -> Result<Vec<u8>, String> {
        use std::io::Write;
        // Whole buffers in and out: flate2 is slow when fed or drained a few bytes at a time.
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(json.len() / 8), flate2::Compression::fast());
        gz.write_all(&json).map_err(|e| e.to_string())?;
        gz.finish().map_err(|e| e.to_string())
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        use std::io::Read;
        let mut json = Vec::with_capacity(bytes.len() * 8);
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&json).map_err(|e| e.to_string())
    }
}

#[derive(Default)]
struct TenantOpen {
    /// Each series' value at the previous collection.
    last: HashMap<SeriesLabels, f64>,
    /// Minute start → series → (time of the latest collection in it, increase).
    minutes: BTreeMap<i64, HashMap<SeriesLabels, (i64, f64)>>,
}

/// What a history write or merge did, for the generator's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    pub files_written: u64,
    pub write_errors: u64,
    pub minutes_dropped: u64,
}

pub struct History {
    store: Arc<dyn ObjectStore>,
    /// Names this process's files apart from other processes' (and from its own earlier runs).
    instance: String,
    open: Mutex<HashMap<TenantId, TenantOpen>>,
    /// Held for writing while minutes move from memory to the store, for reading by reads.
    gate: tokio::sync::RwLock<()>,
    cache: Mutex<Cache>,
    loading: tokio::sync::Mutex<()>,
}

/// Parsed history files, bounded by their estimated size in memory (first in, first out).
#[derive(Default)]
struct Cache {
    files: HashMap<Path, (Arc<Chunk>, usize)>,
    order: std::collections::VecDeque<Path>,
    bytes: usize,
}

impl Cache {
    fn get(&self, path: &Path) -> Option<Arc<Chunk>> {
        self.files.get(path).map(|(c, _)| c.clone())
    }

    fn insert(&mut self, path: Path, chunk: Arc<Chunk>) {
        let size = chunk.approx_bytes();
        if size > MAX_CACHED_BYTES || self.files.contains_key(&path) {
            return;
        }
        while self.bytes + size > MAX_CACHED_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(&oldest);
        }
        self.bytes += size;
        self.order.push_back(path.clone());
        self.files.insert(path, (chunk, size));
    }

    fn remove(&mut self, path: &Path) {
        if let Some((_, size)) = self.files.remove(path) {
            self.bytes -= size;
            self.order.retain(|p| p != path);
        }
    }
}

fn minute_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(MINUTE_MS)
}

fn hour_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

fn tenant_dir(tenant: &TenantId) -> Path {
    Path::from(format!("{PREFIX}/{tenant}"))
}

fn hour_dir(tenant: &TenantId, hour_ms: i64) -> Path {
    Path::from(format!("{PREFIX}/{tenant}/{}", hour_ms / 1000))
}

impl History {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let nonce: u64 = rand_u64();
        Self {
            store,
            instance: format!("{:016x}", nonce),
            open: Mutex::default(),
            gate: tokio::sync::RwLock::new(()),
            cache: Mutex::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Adds one collection of a tenant's series (cumulative values) at `now_ms`: each
    /// series' increase since the previous collection goes to the current minute.
    pub fn record(&self, tenant: &TenantId, now_ms: i64, collected: &[TimeSeries]) {
        let mut open = self.open.lock();
        let state = open.entry(tenant.clone()).or_default();
        let minute = minute_of(now_ms);
        let mut seen = HashMap::with_capacity(collected.len());
        for ts in collected {
            let Some(value) = ts.samples.last().map(|s| s.value) else {
                continue;
            };
            let labels: SeriesLabels = ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            // A series new since the last collection (or reset) started from 0.
            let increase = match state.last.get(&labels) {
                Some(last) if value >= *last => value - last,
                _ => value,
            };
            if increase > 0.0 || !state.last.contains_key(&labels) {
                let slot = state
                    .minutes
                    .entry(minute)
                    .or_default()
                    .entry(labels.clone())
                    .or_insert((now_ms, 0.0));
                slot.0 = now_ms;
                slot.1 += increase;
            }
            seen.insert(labels, value);
        }
        // Series the registry dropped as stale are forgotten.
        state.last = seen;
    }

    /// Writes finished minutes (all of them when `all`, at shutdown) to the store and drops
    /// them from memory. A failed write keeps them for the next call.
    pub async fn flush(&self, now_ms: i64, all: bool) -> FlushStats {
        let mut stats = FlushStats::default();
        let _gate = self.gate.write().await;
        let current = minute_of(now_ms);
        // One file per tenant, minute and family; a minute leaves memory once all are written.
        let ready: Vec<(TenantId, i64, FamilyChunks)> = {
            let open = self.open.lock();
            open.iter()
                .flat_map(|(tenant, state)| {
                    state
                        .minutes
                        .iter()
                        .filter(|(m, _)| all || **m < current)
                        .map(|(m, series)| {
                            let mut families: BTreeMap<&'static str, Vec<(SeriesLabels, Points)>> = BTreeMap::new();
                            for (labels, (t, v)) in series {
                                families
                                    .entry(family(metric_name(labels)))
                                    .or_default()
                                    .push((labels.clone(), vec![(*t, *v)]));
                            }
                            let chunks = families.into_iter().map(|(f, s)| (f, Chunk::from_series(s))).collect();
                            (tenant.clone(), *m, chunks)
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (tenant, minute, chunks) in ready {
            let mut written = Ok(());
            for (family, chunk) in chunks {
                let path = Path::from(format!(
                    "{}/{}-{}.{family}.json.gz",
                    hour_dir(&tenant, hour_of(minute)),
                    minute / 1000,
                    self.instance
                ));
                written = match chunk.encode() {
                    Ok(body) => self.store.put(&path, PutPayload::from(body)).await.map(|_| ()),
                    Err(e) => {
                        tracing::error!(error = %e, "encoding generator history");
                        Ok(())
                    }
                };
                if written.is_err() {
                    break;
                }
            }
            match written {
                Ok(()) => {
                    stats.files_written += 1;
                    let mut open = self.open.lock();
                    if let Some(state) = open.get_mut(&tenant) {
                        state.minutes.remove(&minute);
                    }
                }
                Err(e) => {
                    stats.write_errors += 1;
                    tracing::warn!(%tenant, error = %e, "writing generator history failed; will retry");
                }
            }
        }
        // A long store outage must not grow memory without bound.
        let mut open = self.open.lock();
        for state in open.values_mut() {
            while state.minutes.len() > MAX_UNWRITTEN_MINUTES {
                state.minutes.pop_first();
                stats.minutes_dropped += 1;
            }
        }
        stats
    }

    /// Every series with points in `[from_ms, to_ms]` (only those named `name`, when given)
    /// for which `keep` holds.
    pub async fn read(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
        name: Option<&str>,
        keep: &(dyn Fn(&SeriesLabels) -> bool + Sync),
    ) -> Result<Vec<(SeriesLabels, Points)>, String> {
        let _gate = self.gate.read().await;
        let mut out: HashMap<SeriesLabels, Points> = HashMap::new();
        let wanted = name.map(family);
        let mut hour = hour_of(from_ms);
        while hour <= to_ms {
            for chunk in self.hour_chunks(tenant, hour, wanted).await? {
                for (labels, points) in chunk.named(name) {
                    if points.iter().any(|(t, _)| *t >= from_ms && *t <= to_ms) && keep(labels) {
                        let into = out.entry(labels.clone()).or_default();
                        into.extend(points.iter().filter(|(t, _)| *t >= from_ms && *t <= to_ms));
                    }
                }
            }
            hour += HOUR_MS;
        }
        if let Some(state) = self.open.lock().get(tenant) {
            for series in state.minutes.values() {
                for (labels, (t, v)) in series {
                    let named = name.is_none_or(|n| metric_name(labels) == n);
                    if *t >= from_ms && *t <= to_ms && named && keep(labels) {
                        out.entry(labels.clone()).or_default().push((*t, *v));
                    }
                }
            }
        }
        let mut out: Vec<(SeriesLabels, Points)> = out.into_iter().collect();
        for (_, points) in &mut out {
            points.sort_by_key(|(t, _)| *t);
        }
        Ok(out)
    }

    /// The files of one hour folder (of one family, when given) that count: merged files,
    /// and files none replaces.
    async fn hour_chunks(
        &self,
        tenant: &TenantId,
        hour_ms: i64,
        family: Option<&str>,
    ) -> Result<Vec<Arc<Chunk>>, String> {
        let dir = hour_dir(tenant, hour_ms);
        let files: Vec<Path> = self
            .store
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| format!("listing {dir}: {e}"))?;
        let mut chunks = Vec::with_capacity(files.len());
        for path in files {
            let name = path.filename().unwrap_or_default().to_string();
            if family.is_some_and(|f| file_family(&name) != f) {
                continue;
            }
            chunks.push((name, self.chunk(&path).await?));
        }
        let replaced: HashSet<&String> = chunks.iter().flat_map(|(_, c)| &c.replaces).collect();
        Ok(chunks
            .iter()
            .filter(|(name, _)| !replaced.contains(name))
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn chunk(&self, path: &Path) -> Result<Arc<Chunk>, String> {
        if let Some(c) = self.cache.lock().get(path) {
            return Ok(c.clone());
        }
        // One load at a time: concurrent queries over the same range (Grafana sends a map's
        // queries together) wait for it and then find the file cached.
        let _loading = self.loading.lock().await;
        if let Some(c) = self.cache.lock().get(path) {
            return Ok(c.clone());
        }
        let bytes = self
            .store
            .get(path)
            .await
            .map_err(|e| format!("reading {path}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("reading {path}: {e}"))?;
        let decoded = tokio::task::spawn_blocking(move || Chunk::decode(&bytes).map(Chunk::index))
            .await
            .map_err(|e| e.to_string())?;
        let chunk: Arc<Chunk> = match decoded {
            Ok(c) => Arc::new(c),
            Err(e) => {
                // A damaged file is skipped (and logged), never fails every read.
                tracing::error!(%path, error = %e, "skipping an unreadable generator history file");
                Arc::default()
            }
        };
        self.cache.lock().insert(path.clone(), chunk.clone());
        Ok(chunk)
    }

    /// Reads the service-graph files of the last `hours` of every tenant into the cache, so
    /// the first service map after a start does not wait for them.
    pub async fn warm(&self, now_ms: i64, hours: i64) -> Result<usize, String> {
        let mut files = 0;
        for tenant in self.tenants().await? {
            let mut hour = hour_of(now_ms - hours * HOUR_MS);
            while hour <= now_ms {
                files += self.hour_chunks(&tenant, hour, Some("service_graph")).await?.len();
                hour += HOUR_MS;
            }
        }
        Ok(files)
    }

    /// Tenants with history in the bucket.
    pub async fn tenants(&self) -> Result<Vec<TenantId>, String> {
        let root = Path::from(PREFIX);
        let listing = self
            .store
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|e| format!("listing {root}: {e}"))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|t| TenantId::new(t).ok()))
            .collect())
    }

    /// The compactor's part, for the tenants it keeps house for: merges each finished hour
    /// (older than `now - 1h`) that has several files into one, and deletes hours older than
    /// `retention`.
    pub async fn compact(&self, tenant: &TenantId, now_ms: i64, retention: Duration) -> Result<FlushStats, String> {
        let mut stats = FlushStats::default();
        let dir = tenant_dir(tenant);
        let listing = self
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| format!("listing {dir}: {e}"))?;
        let oldest = now_ms - retention.as_millis() as i64;
        for hour_path in listing.common_prefixes {
            let Some(hour) = hour_path
                .filename()
                .and_then(|h| h.parse::<i64>().ok())
                .map(|s| s * 1000)
            else {
                continue;
            };
            let files: Vec<Path> = self
                .store
                .list(Some(&hour_path))
                .map_ok(|m| m.location)
                .try_collect()
                .await
                .map_err(|e| format!("listing {hour_path}: {e}"))?;
            if hour + HOUR_MS < oldest {
                for f in &files {
                    self.store.delete(f).await.map_err(|e| format!("deleting {f}: {e}"))?;
                    self.cache.lock().remove(f);
                }
                continue;
            }
            if hour + 2 * HOUR_MS > now_ms || files.len() < 2 {
                continue;
            }
            // Files some merged file already replaces are leftovers of an interrupted merge.
            let mut named = Vec::new();
            for f in &files {
                named.push((f.clone(), self.chunk(f).await?));
            }
            let replaced: HashSet<String> = named.iter().flat_map(|(_, c)| c.replaces.clone()).collect();
            let (gone, live): (Vec<_>, Vec<_>) = named
                .into_iter()
                .partition(|(p, _)| replaced.contains(p.filename().unwrap_or_default()));
            let mut by_family: BTreeMap<String, Vec<(Path, Arc<Chunk>)>> = BTreeMap::new();
            for (p, c) in live {
                by_family
                    .entry(file_family(p.filename().unwrap_or_default()).to_string())
                    .or_default()
                    .push((p, c));
            }
            for (family, live) in by_family.into_iter().filter(|(_, l)| l.len() > 1) {
                let mut series: HashMap<SeriesLabels, Points> = HashMap::new();
                for (_, chunk) in &live {
                    for (labels, points) in &chunk.series {
                        series.entry(labels.clone()).or_default().extend(points);
                    }
                }
                let mut merged = Chunk::from_series(series);
                merged.replaces = live
                    .iter()
                    .map(|(p, _)| p.filename().unwrap_or_default().to_string())
                    .collect();
                for points in merged.series.iter_mut().map(|(_, p)| p) {
                    points.sort_by_key(|(t, _)| *t);
                }
                let path = Path::from(format!("{hour_path}/merged-{:016x}.{family}.json.gz", rand_u64()));
                let body = merged.encode()?;
                self.store
                    .put(&path, PutPayload::from(body))
                    .await
                    .map_err(|e| format!("writing {path}: {e}"))?;
                stats.files_written += 1;
                for (p, _) in &live {
                    self.store.delete(p).await.map_err(|e| format!("deleting {p}: {e}"))?;
                    self.cache.lock().remove(p);
                }
            }
            for (p, _) in &gone {
                self.store.delete(p).await.map_err(|e| format!("deleting {p}: {e}"))?;
                self.cache.lock().remove(p);
            }
        }
        Ok(stats)
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::{Label, Sample};
    use legato_storage::object_store::memory::InMemory;

    fn ts(name: &str, server: &str, value: f64) -> TimeSeries {
        TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                Label {
                    name: "server".into(),
                    value: server.into(),
                },
            ],
            samples: vec![Sample { value, timestamp: 0 }],
            exemplars: Vec::new(),
        }
    }

    fn total(series: &[(SeriesLabels, Points)]) -> f64 {
        series.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| v)).sum()
    }

    #[tokio::test]
    async fn increases_survive_a_restart_and_merges_count_once() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let tenant = TenantId::single();
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS;
        let h = History::new(store.clone());
        h.record(&tenant, t0 + 1_000, &[ts("calls_total", "a", 5.0)]);
        h.record(&tenant, t0 + 30_000, &[ts("calls_total", "a", 7.0)]);
        h.record(
            &tenant,
            t0 + 61_000,
            &[ts("calls_total", "a", 10.0), ts("calls_total", "b", 1.0)],
        );
        let all = |_: &SeriesLabels| true;
        let read = h.read(&tenant, t0, t0 + HOUR_MS, None, &all).await.unwrap();
        assert_eq!(total(&read), 11.0, "{read:?}");
        // The finished minute is written; the current one stays in memory; nothing doubles.
        let stats = h.flush(t0 + 62_000, false).await;
        assert_eq!(stats.files_written, 1);
        assert_eq!(
            total(&h.read(&tenant, t0, t0 + HOUR_MS, None, &all).await.unwrap()),
            11.0
        );
        h.flush(t0 + 62_000, true).await;

        // A new process (counters from 0) reads what the old one wrote, and adds its own.
        let h2 = History::new(store.clone());
        h2.record(&tenant, t0 + 125_000, &[ts("calls_total", "a", 2.0)]);
        h2.flush(t0 + 200_000, false).await;
        let only_a = |l: &SeriesLabels| l.iter().any(|(k, v)| k == "server" && v == "a");
        let read = h2
            .read(&tenant, t0, t0 + HOUR_MS, Some("calls_total"), &only_a)
            .await
            .unwrap();
        assert_eq!(total(&read), 12.0);
        assert_eq!(read[0].1.len(), 3, "one point per minute: {read:?}");

        // Merging the hour: one file, the same answers, also with an interrupted merge's leftovers.
        let merged = h2
            .compact(&tenant, t0 + 3 * HOUR_MS, Duration::from_secs(86_400))
            .await
            .unwrap();
        assert_eq!(merged.files_written, 1);
        let files: Vec<_> = store.list(Some(&hour_dir(&tenant, t0))).try_collect().await.unwrap();
        assert_eq!(files.len(), 1);
        let fresh = History::new(store.clone());
        assert_eq!(
            total(&fresh.read(&tenant, t0, t0 + HOUR_MS, None, &all).await.unwrap()),
            13.0
        );
        // Retention deletes the hour.
        fresh
            .compact(&tenant, t0 + 30 * HOUR_MS, Duration::from_secs(86_400))
            .await
            .unwrap();
        let fresh = History::new(store);
        assert!(
            fresh
                .read(&tenant, t0, t0 + HOUR_MS, None, &all)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
