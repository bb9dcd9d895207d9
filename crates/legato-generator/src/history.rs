//! The generator's series history, so that Legato's own `/prometheus` API answers over any
//! range the generator covered, across restarts, with no Prometheus.
//!
//! At every collection the increase of each series since the previous collection is added
//! to the bucket of the current minute (one point per series and minute, stamped with the
//! time of the latest collection in it). Finished minutes are written to the object store as
//! one small JSON file per tenant, minute and process under
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
/// Parsed files kept for reads.
const MAX_CACHED_FILES: usize = 8_192;

/// A series' labels, sorted by name, `__name__` included.
pub type SeriesLabels = Vec<(String, String)>;

/// One series' points: (Unix ms, increase since the previous point).
pub type Points = Vec<(i64, f64)>;

/// One history file: series, and points that refer to them by index.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Chunk {
    series: Vec<SeriesLabels>,
    /// (series index, Unix ms, increase).
    points: Vec<(u32, i64, f64)>,
    /// File names (in the same hour folder) this merged file replaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replaces: Vec<String>,
}

impl Chunk {
    fn from_series(series: impl IntoIterator<Item = (SeriesLabels, Points)>) -> Self {
        let mut chunk = Chunk::default();
        for (labels, points) in series {
            let index = chunk.series.len() as u32;
            chunk.series.push(labels);
            chunk.points.extend(points.into_iter().map(|(t, v)| (index, t, v)));
        }
        chunk
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
    cache: Mutex<HashMap<Path, Arc<Chunk>>>,
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
        let ready: Vec<(TenantId, i64, Chunk)> = {
            let open = self.open.lock();
            open.iter()
                .flat_map(|(tenant, state)| {
                    state
                        .minutes
                        .iter()
                        .filter(|(m, _)| all || **m < current)
                        .map(|(m, series)| {
                            let chunk = Chunk::from_series(
                                series.iter().map(|(labels, (t, v))| (labels.clone(), vec![(*t, *v)])),
                            );
                            (tenant.clone(), *m, chunk)
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (tenant, minute, chunk) in ready {
            let path = Path::from(format!(
                "{}/{}-{}.json",
                hour_dir(&tenant, hour_of(minute)),
                minute / 1000,
                self.instance
            ));
            let written = match serde_json::to_vec(&chunk) {
                Ok(body) => self.store.put(&path, PutPayload::from(body)).await.map(|_| ()),
                Err(e) => {
                    tracing::error!(error = %e, "encoding generator history");
                    Ok(())
                }
            };
            match written {
                Ok(()) => {
                    stats.files_written += 1;
                    let mut open = self.open.lock();
                    if let Some(state) = open.get_mut(&tenant) {
                        state.minutes.remove(&minute);
                    }
                    self.cache.lock().insert(path, Arc::new(chunk));
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

    /// Every series with points in `[from_ms, to_ms]`, for which `keep` holds.
    pub async fn read(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
        keep: &(dyn Fn(&SeriesLabels) -> bool + Sync),
    ) -> Result<Vec<(SeriesLabels, Points)>, String> {
        let _gate = self.gate.read().await;
        let mut out: HashMap<SeriesLabels, Points> = HashMap::new();
        let mut add = |labels: &SeriesLabels, t: i64, v: f64| {
            if t >= from_ms && t <= to_ms && keep(labels) {
                out.entry(labels.clone()).or_default().push((t, v));
            }
        };
        let mut hour = hour_of(from_ms);
        while hour <= to_ms {
            for chunk in self.hour_chunks(tenant, hour).await? {
                for (i, t, v) in &chunk.points {
                    if let Some(labels) = chunk.series.get(*i as usize) {
                        add(labels, *t, *v);
                    }
                }
            }
            hour += HOUR_MS;
        }
        if let Some(state) = self.open.lock().get(tenant) {
            for series in state.minutes.values() {
                for (labels, (t, v)) in series {
                    add(labels, *t, *v);
                }
            }
        }
        let mut out: Vec<(SeriesLabels, Points)> = out.into_iter().collect();
        for (_, points) in &mut out {
            points.sort_by_key(|(t, _)| *t);
        }
        Ok(out)
    }

    /// The files of one hour folder that count: merged files, and files none replaces.
    async fn hour_chunks(&self, tenant: &TenantId, hour_ms: i64) -> Result<Vec<Arc<Chunk>>, String> {
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
        let bytes = self
            .store
            .get(path)
            .await
            .map_err(|e| format!("reading {path}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("reading {path}: {e}"))?;
        let chunk: Arc<Chunk> = match serde_json::from_slice(&bytes) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                // A damaged file is skipped (and logged), never fails every read.
                tracing::error!(%path, error = %e, "skipping an unreadable generator history file");
                Arc::default()
            }
        };
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED_FILES {
            cache.clear();
        }
        cache.insert(path.clone(), chunk.clone());
        Ok(chunk)
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
            if live.len() > 1 {
                let mut series: HashMap<SeriesLabels, Points> = HashMap::new();
                for (_, chunk) in &live {
                    for (i, t, v) in &chunk.points {
                        if let Some(labels) = chunk.series.get(*i as usize) {
                            series.entry(labels.clone()).or_default().push((*t, *v));
                        }
                    }
                }
                let mut merged = Chunk::from_series(series);
                merged.replaces = live
                    .iter()
                    .map(|(p, _)| p.filename().unwrap_or_default().to_string())
                    .collect();
                let path = Path::from(format!("{hour_path}/merged-{:016x}.json", rand_u64()));
                let body = serde_json::to_vec(&merged).map_err(|e| e.to_string())?;
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
        let read = h.read(&tenant, t0, t0 + HOUR_MS, &all).await.unwrap();
        assert_eq!(total(&read), 11.0, "{read:?}");
        // The finished minute is written; the current one stays in memory; nothing doubles.
        let stats = h.flush(t0 + 62_000, false).await;
        assert_eq!(stats.files_written, 1);
        assert_eq!(total(&h.read(&tenant, t0, t0 + HOUR_MS, &all).await.unwrap()), 11.0);
        h.flush(t0 + 62_000, true).await;

        // A new process (counters from 0) reads what the old one wrote, and adds its own.
        let h2 = History::new(store.clone());
        h2.record(&tenant, t0 + 125_000, &[ts("calls_total", "a", 2.0)]);
        h2.flush(t0 + 200_000, false).await;
        let only_a = |l: &SeriesLabels| l.iter().any(|(k, v)| k == "server" && v == "a");
        let read = h2.read(&tenant, t0, t0 + HOUR_MS, &only_a).await.unwrap();
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
        assert_eq!(total(&fresh.read(&tenant, t0, t0 + HOUR_MS, &all).await.unwrap()), 13.0);
        // Retention deletes the hour.
        fresh
            .compact(&tenant, t0 + 30 * HOUR_MS, Duration::from_secs(86_400))
            .await
            .unwrap();
        let fresh = History::new(store);
        assert!(fresh.read(&tenant, t0, t0 + HOUR_MS, &all).await.unwrap().is_empty());
    }
}
