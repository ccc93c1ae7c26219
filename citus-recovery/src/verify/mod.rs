//! `verify`: prove a restore will work before any data directory is touched.
//!
//! The checks, per node: the backup is complete and its files match PostgreSQL's manifest; the
//! restore point is in the node's WAL archive after the backup's end; the target timeline's
//! history runs through the backup; the WAL is continuous (every segment present, every record
//! intact) from the backup's start to the restore point. Per cluster: enough free disk for the
//! extraction. restore-start runs the same checks first and stops when one fails.
//!
//! The restore point is read from the archives themselves (the truth), so points made outside the
//! library (`SELECT citus_create_restore_point(...)`) can be restored to as well.

pub mod before;
pub mod choose;
pub mod listing;
pub mod manifest;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::catalog::{Backup, Catalog, NodeRestorePoint, RestorePoint};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::wal::source::ListedOnce;
use crate::wal::{
    self, ContinuityOptions, HotStandbyParameters, Lsn, RestorePointRecord, TimeLineId,
    TimelineHistory, WalSource,
};

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The node checked, `None` for a cluster-wide check.
    pub node: Option<String>,
    /// What was checked.
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found; for a failure, also what to do.
    pub detail: String,
}

/// How much of a backup in the repository verify reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupRead {
    /// Every byte, each file against the manifest: `verify` itself, so damage shows before a
    /// restore is even tried.
    Full,
    /// The manifest and each object with the size recorded when it was stored, not the bytes:
    /// restore-start's pre-flight, since extracting checks every file against the manifest as
    /// it writes it (one pass over the backup, not two) and a damaged file fails the restore,
    /// which rolls every node back. It also keeps the first WAL segments of each node's
    /// prefetch window as it reads them, and hands them to the backend
    /// ([`crate::backend::ClusterBackend::hold_proven_wal`]) for the node's spool.
    Objects,
}

/// Every check for one backup and restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The backup checked.
    pub backup: String,
    /// Why that backup, when it was chosen rather than given.
    pub chosen_because: Option<String>,
    /// The restore point checked.
    pub restore_point: String,
    /// The restore point as found in each node's archive: what recovery will stop at.
    pub target: RestorePoint,
    /// Per node, the highest hot-standby settings the WAL from the backup to the restore point
    /// asks for (`XLOG_PARAMETER_CHANGE` records); absent where it changes none. Recovery pauses
    /// early unless the restored server's settings are at least these.
    pub wal_parameters: BTreeMap<String, HotStandbyParameters>,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// When the restore point was chosen for a time (`--before`): which, and how far before it.
    /// Set by the caller that chose it; `None` when the point was named.
    pub before: Option<before::ChosenPoint>,
}

impl VerifyReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The failed checks, one line each, naming the node.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| match &c.node {
                Some(n) => format!("node {n}: {}: {}", c.check, c.detail),
                None => format!("{}: {}", c.check, c.detail),
            })
            .collect()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "verify backup {} to restore point {:?}",
            self.backup, self.restore_point
        )?;
        if let Some(chosen) = &self.before {
            writeln!(f, "chosen: {}", chosen.note)?;
        }
        if let Some(why) = &self.chosen_because {
            writeln!(f, "chosen: {why}")?;
        }
        for c in &self.checks {
            writeln!(
                f,
                "  [{}] {:<16} {}: {}",
                if c.ok { " ok " } else { "FAIL" },
                c.node.as_deref().unwrap_or("cluster"),
                c.check,
                c.detail
            )?;
        }
        writeln!(
            f,
            "{}",
            if self.ok() {
                "every check passed: the restore can start"
            } else {
                "some checks failed: a restore would not reach the restore point; nothing was changed"
            }
        )
    }
}

/// The restore point records of one node's archive, and its timeline histories.
struct NodeArchive {
    /// Where the archive is, for messages: the folder or `<repository>/wal/<node>`.
    dir: PathBuf,
    /// How to read it again.
    search: Search,
    /// The archive as the search read it (listed once), for the continuity check to read on;
    /// `None` when it could not be opened.
    source: Option<Arc<dyn WalSource>>,
    records: Vec<RestorePointRecord>,
    /// Every `.history` file the archive holds, read once (off the async threads).
    histories: HashMap<TimeLineId, TimelineHistory>,
    error: Option<String>,
}

impl NodeArchive {
    /// The history of `timeline`: its file, or no ancestors for timeline 1 without one.
    fn history(&self, timeline: TimeLineId) -> Option<TimelineHistory> {
        match self.histories.get(&timeline) {
            Some(h) => Some(h.clone()),
            None if timeline == 1 => Some(TimelineHistory::new(1)),
            None => None,
        }
    }
}

/// Where to look for a restore point on one node: from the oldest backup that may be restored
/// on (so segments before it are never read), or straight at the segment recorded when the
/// library made the point.
#[derive(Clone)]
struct Search {
    dir: PathBuf,
    /// The repository holding the WAL, when the config has one (then `dir` is unused).
    repo: Option<Arc<dyn Repository>>,
    node: String,
    handle: tokio::runtime::Handle,
    from: Option<(TimeLineId, Lsn)>,
    recorded_segment: Option<String>,
    /// The segments' size when the backups recorded it: no segment is read to learn it.
    segment_size: Option<u64>,
}

/// How many segments before the recorded one are read to find a point the library made.
const LOCATE_BACK: usize = 4;

impl Search {
    /// The node's WAL, from the repository or the folder; call from a blocking thread.
    fn source(&self) -> std::result::Result<Box<dyn WalSource>, wal::WalError> {
        wal::node_source(
            self.repo.clone(),
            self.dir.clone(),
            &self.node,
            self.handle.clone(),
        )
    }
}

/// The history the WAL continuity check from backup `part` to `target` follows: none needed
/// on the backup's own timeline, else the target timeline's (`None` when its file is missing).
fn continuity_history(
    archive: &NodeArchive,
    part: &crate::catalog::NodeBackup,
    target: &RestorePointRecord,
) -> Option<TimelineHistory> {
    if target.timeline == part.timeline {
        Some(TimelineHistory::new(target.timeline))
    } else {
        archive.history(target.timeline)
    }
}

/// A node's WAL continuity check from `from` to `to`, started in a blocking thread.
type ContinuityTask =
    tokio::task::JoinHandle<std::result::Result<wal::ContinuityReport, wal::WalError>>;

/// How many nodes' WAL a pre-flight reads at once: each holds up to 6 decoded segments (96 MiB)
/// while read from a repository (`wal::source::READ_AHEAD`), so a large cluster is not read
/// all at once.
const CONTINUITY_NODES_AT_ONCE: usize = 4;

/// Starts reading `search`'s WAL (through `source`, the search's own, when there is one) from
/// `from` to `to`, following `history`, once one of `slots` is free (they are handed out in the
/// order the checks were started).
fn start_continuity(
    search: Search,
    source: Option<Arc<dyn WalSource>>,
    history: Option<TimelineHistory>,
    from: Lsn,
    to: Lsn,
    slots: &Arc<tokio::sync::Semaphore>,
) -> ContinuityTask {
    let slots = slots.clone();
    tokio::task::spawn_blocking(move || {
        // Never closed, so acquiring only waits.
        let _slot = search.handle.block_on(slots.acquire_owned());
        let source = match source {
            Some(source) => source,
            None => Arc::from(search.source()?),
        };
        wal::check_continuity_in(
            source.as_ref(),
            history.as_ref(),
            from,
            to,
            &ContinuityOptions {
                verify_crc: true,
                segment_size: search.segment_size,
            },
        )
    })
}

/// Every `.history` file in `source`, by timeline; unreadable ones are left out (the check
/// that needs one reports it missing).
fn read_histories(source: &dyn WalSource) -> HashMap<TimeLineId, TimelineHistory> {
    let names = source.list().map(|l| l.files).unwrap_or_default();
    names
        .iter()
        .filter_map(|n| n.strip_suffix(".history"))
        .filter_map(|stem| TimeLineId::from_str_radix(stem, 16).ok())
        .filter_map(|tli| Some((tli, TimelineHistory::load_in(source, tli).ok()?)))
        .collect()
}

fn search_node(
    source: &dyn WalSource,
    search: &Search,
    point: &str,
) -> std::result::Result<Vec<RestorePointRecord>, String> {
    if let Some(segment) = &search.recorded_segment {
        if let Ok(Some(r)) = wal::locate_restore_point_in(source, point, segment, LOCATE_BACK) {
            if !matches!(search.from, Some((_, start)) if r.lsn < start) {
                return Ok(vec![r]);
            }
        }
    }
    let options = wal::ScanOptions {
        segment_size: search.segment_size,
        ..wal::ScanOptions::default()
    };
    let scan = match search.from {
        Some((tli, start)) => wal::scan_archive_from_in(source, tli, start, &options),
        None => wal::scan_archive_in(source, &options),
    }
    .map_err(|e| e.to_string())?;
    let records: Vec<RestorePointRecord> = scan
        .restore_points
        .into_iter()
        .filter(|r| r.name == point)
        .collect();
    // Damage after the point does not block a restore (the continuity check reads up to it);
    // with no point found, damage may be what hides it.
    match scan.problems.first() {
        Some(problem) if records.is_empty() => Err(problem.to_string()),
        _ => Ok(records),
    }
}

/// Reads every node's archive for records of `point` (all at once, off the async threads).
async fn read_archives(
    config: &ClusterConfig,
    repo: Option<&Arc<dyn Repository>>,
    point: &str,
    backups: &[&Backup],
    recorded: Option<&RestorePoint>,
    budget: &Arc<wal::FrameBudget>,
) -> Result<HashMap<String, NodeArchive>> {
    let mut tasks = Vec::new();
    for node in config.nodes() {
        let parts: Vec<_> = backups.iter().filter_map(|b| b.node(&node.name)).collect();
        let from = parts
            .iter()
            .map(|p| (p.timeline, p.start_lsn))
            .min_by_key(|(_, lsn)| *lsn);
        // One size for the node's WAL, when every backup recorded the same.
        let mut sizes = parts.iter().map(|p| p.wal_segment_size);
        let first_size = sizes.next().flatten();
        let segment_size = first_size.filter(|_| sizes.all(|s| s == first_size));
        let search = Search {
            dir: config.archive_dir(node),
            repo: repo.cloned(),
            node: node.name.clone(),
            handle: tokio::runtime::Handle::current(),
            from,
            recorded_segment: recorded
                .and_then(|r| r.node(&node.name))
                .map(|n| n.segment.clone())
                .filter(|s| !s.is_empty()),
            segment_size,
        };
        let (name, point, budget) = (node.name.clone(), point.to_string(), budget.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            let (source, dir, histories, (records, error)) = match search.source() {
                Ok(source) => {
                    // Listed once for the search and the continuity check after it.
                    let source: Arc<dyn WalSource> = Arc::new(ListedOnce::new(source));
                    // The continuity check ends in the recorded segment: read once for both.
                    if let Some(segment) = &search.recorded_segment {
                        source.keep_frames(std::slice::from_ref(segment), &budget);
                    }
                    let histories = read_histories(source.as_ref());
                    let found = match search_node(source.as_ref(), &search, &point) {
                        Ok(records) => (records, None),
                        Err(e) => (Vec::new(), Some(e)),
                    };
                    // Nothing decoded stays held while the node waits for its check.
                    source.release();
                    (Some(source.clone()), source.location(), histories, found)
                }
                Err(e) => (
                    None,
                    search.dir.clone(),
                    HashMap::new(),
                    (Vec::new(), Some(e.to_string())),
                ),
            };
            (
                name,
                NodeArchive {
                    dir,
                    search,
                    source,
                    records,
                    histories,
                    error,
                },
            )
        }));
    }
    let mut archives = HashMap::new();
    for task in tasks {
        let (name, archive) = task.await.map_err(Error::task("reading a WAL archive"))?;
        archives.insert(name, archive);
    }
    Ok(archives)
}

/// Runs every check for restoring `backup` (or the one chosen) to `point`; changes nothing.
/// Unknown names are errors; failed checks are in the report.
///
/// `repo` is the WAL archive's repository when the config has one ([`crate::Cluster`] passes
/// its own); `None` reads `<archiveBaseFolder>/<node>`.
pub async fn verify(
    config: &ClusterConfig,
    repo: Option<&Arc<dyn Repository>>,
    catalog: &Catalog,
    backup: Option<&str>,
    point: &str,
) -> Result<VerifyReport> {
    verify_on(config, repo, catalog, backup, point, None).await
}

/// Like [`verify`], with the free space looked up through `backend` on each node's host when
/// it can ([`ClusterBackend::free_space`]: nodes over SSH), one check per host, rather than on
/// this host.
pub async fn verify_on(
    config: &ClusterConfig,
    repo: Option<&Arc<dyn Repository>>,
    catalog: &Catalog,
    backup: Option<&str>,
    point: &str,
    backend: Option<&dyn crate::backend::ClusterBackend>,
) -> Result<VerifyReport> {
    verify_reading(
        config,
        repo,
        catalog,
        backup,
        point,
        backend,
        BackupRead::Full,
    )
    .await
}

/// Like [`verify_on`], reading a repository backup as `read` says.
pub async fn verify_reading(
    config: &ClusterConfig,
    repo: Option<&Arc<dyn Repository>>,
    catalog: &Catalog,
    backup: Option<&str>,
    point: &str,
    backend: Option<&dyn crate::backend::ClusterBackend>,
    read: BackupRead,
) -> Result<VerifyReport> {
    // One read each for a named point and backup: the whole catalog only when needed.
    let in_record = catalog.find_restore_point(point).await?;
    let in_record = in_record.as_ref();
    let given = match backup {
        Some(name) => Some(catalog.backup(name).await?),
        None => None,
    };
    let all_backups = match given {
        Some(_) => Vec::new(),
        None => catalog.backups().await?,
    };
    let candidates: Vec<&Backup> = match &given {
        Some(b) => vec![b],
        None => all_backups.iter().collect(),
    };
    // What the WAL sources keep, over all nodes: the restore point's segment between the
    // search and the continuity check, and restore-start's first window.
    let budget = Arc::new(wal::FrameBudget::new(wal::PROVEN_WAL_BUDGET));
    let archives = read_archives(config, repo, point, &candidates, in_record, &budget).await?;
    if in_record.is_none() && archives.values().all(|a| a.records.is_empty()) {
        let mut known: Vec<String> = catalog
            .restore_points()
            .await?
            .iter()
            .rev()
            .take(10)
            .map(|r| format!("{:?}", r.name))
            .collect();
        known.dedup();
        return Err(Error::UnknownRestorePoint {
            name: point.into(),
            hint: if known.is_empty() {
                "it is neither recorded nor in any node's WAL archive; create one with `citus-recovery restore-point`".into()
            } else {
                format!(
                    "it is neither recorded nor in any node's WAL archive; known restore points (newest first): {}",
                    known.join(", ")
                )
            },
        });
    }
    let nodes: Vec<String> = config.nodes().map(|n| n.name.clone()).collect();
    let histories = |node: &str, tli: TimeLineId| archives.get(node).and_then(|a| a.history(tli));
    let (backup, chosen_because) = match given {
        Some(b) => (b, None),
        None => {
            let backups = all_backups;
            let records: HashMap<String, Vec<RestorePointRecord>> = archives
                .iter()
                .map(|(n, a)| (n.clone(), a.records.clone()))
                .collect();
            let (b, why) = choose::choose_backup(&backups, &nodes, point, &records, &histories)
                .map_err(|e| match e {
                    Error::UnknownBackup { name, hint, .. } => Error::UnknownBackup {
                        name,
                        folder: catalog.describe(),
                        hint,
                    },
                    other => other,
                })?;
            (b.clone(), Some(why))
        }
    };

    let mut checks = Vec::new();
    let mut target_nodes = Vec::new();
    let mut raised = BTreeMap::new();
    let mut tar_checks = Vec::new();
    // Where the catalog is, the backups are (plan::in_backup_folder).
    let stored = repo.filter(|_| !crate::plan::in_backup_folder(catalog));
    for node in config.nodes() {
        let folder = catalog.node_backup_dir(&backup.name, &node.name);
        let in_folder = stored.is_none();
        tar_checks.push(tokio::task::spawn_blocking(move || {
            if in_folder {
                manifest::check_tar_backup(&folder)
            } else {
                manifest::TarCheck::default()
            }
        }));
    }
    // Every node's WAL is read at once (the slowest part of a pre-flight from a repository);
    // the results are reported node by node below, as before.
    let mut continuity_checks: HashMap<String, ContinuityTask> = HashMap::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONTINUITY_NODES_AT_ONCE));
    // Restore-start's pre-flight: what it reads first is what replay asks for first.
    let keep_proven = read == BackupRead::Objects && backend.is_some();
    for node in config.nodes() {
        let (Some(part), Some(archive)) = (backup.node(&node.name), archives.get(&node.name))
        else {
            continue;
        };
        if archive.error.is_some() {
            continue;
        }
        if let Ok(target) = choose::target_on_node(part, &archive.records, &histories) {
            let history = continuity_history(archive, part, target);
            if let Some(source) = archive.source.as_ref().filter(|_| keep_proven) {
                let end = target.lsn.segment(part.segment_size());
                let window = crate::plan::prefetch_segments(
                    part,
                    target.timeline,
                    end,
                    config.archive_get_queue,
                );
                source.keep_frames(&window, &budget);
            }
            let task = start_continuity(
                archive.search.clone(),
                archive.source.clone(),
                history,
                part.start_lsn,
                target.end_lsn,
                &slots,
            );
            continuity_checks.insert(node.name.clone(), task);
        }
    }
    // Every node's stored backup is looked at while the WAL is read, not one node after
    // another's continuity result: against an object store each look is round trips.
    let mut stored_checks: HashMap<String, (bool, String, u64)> = match stored {
        Some(repo) => {
            use futures::StreamExt;
            futures::stream::iter(config.nodes().filter_map(|n| backup.node(&n.name)))
                .map(|part| async move {
                    let result = stored_backup_check(repo.as_ref(), part, read).await;
                    (part.node.clone(), result)
                })
                .buffered(CONTINUITY_NODES_AT_ONCE)
                .collect()
                .await
        }
        None => HashMap::new(),
    };
    let mut needed_bytes = 0u64;
    // What each node's restore needs, by host, for the free space on that host.
    let mut per_host: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for (node, tar_check) in config.nodes().zip(tar_checks) {
        let name = node.name.clone();
        let mut check = |what: &str, ok: bool, detail: String| {
            checks.push(Check {
                node: Some(name.clone()),
                check: what.into(),
                ok,
                detail,
            })
        };
        let tar = tar_check.await.map_err(Error::task("checking a backup"))?;
        let Some(part) = backup.node(&node.name) else {
            check(
                "backup",
                false,
                format!(
                    "backup {} has no part for this node; choose another backup",
                    backup.name
                ),
            );
            continue;
        };
        if let Some((ok, detail, needed)) = stored_checks.remove(&node.name) {
            needed_bytes += needed;
            per_host
                .entry(node.hostname.clone())
                .or_insert_with(|| (node.name.clone(), 0))
                .1 += needed;
            check("backup files", ok, detail);
            check(
                "backup WAL",
                true,
                format!(
                    "stored without WAL: its WAL from {} to {} comes from the archive, checked below with the WAL continuity",
                    part.start_lsn, part.end_lsn
                ),
            );
        } else {
            per_host
                .entry(node.hostname.clone())
                .or_insert_with(|| (node.name.clone(), 0))
                .1 += part.bytes;
            check(
                "backup files",
                tar.problems.is_empty(),
                if tar.problems.is_empty() {
                    format!(
                        "{} files, {} bytes match backup_manifest",
                        tar.files, tar.bytes
                    )
                } else {
                    format!(
                        "{} in {}; the backup is damaged: choose another backup",
                        tar.problems
                            .iter()
                            .take(5)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("; "),
                        catalog.node_backup_dir(&backup.name, &node.name).display()
                    )
                },
            );
            let folder = catalog.node_backup_dir(&backup.name, &node.name);
            let (tar, tli, start, end) = (
                folder.join("pg_wal.tar"),
                part.timeline,
                part.start_lsn,
                part.end_lsn,
            );
            let backup_wal =
                tokio::task::spawn_blocking(move || wal::check_backup_wal(&tar, tli, start, end))
                    .await
                    .map_err(Error::task("checking a backup's WAL"))?;
            check(
                "backup WAL",
                backup_wal.is_ok(),
                match backup_wal {
                    Ok(r) => format!(
                        "pg_wal.tar: {} segment(s), {} records intact from {start} to {end}",
                        r.segments.len(),
                        r.records
                    ),
                    Err(e) => format!(
                        "pg_wal.tar in {}: {e}; the backup is damaged: choose another backup",
                        folder.display()
                    ),
                },
            );
        }
        let archive = &archives[&node.name];
        if let Some(e) = &archive.error {
            check(
                "WAL archive",
                false,
                format!("{e}; check {}", archive.dir.display()),
            );
            continue;
        }
        let target = match choose::target_on_node(part, &archive.records, &histories) {
            Ok(r) => {
                check(
                    "restore point",
                    true,
                    format!(
                        "at {} on timeline {}, made {}",
                        r.lsn,
                        r.timeline,
                        r.time.to_rfc3339()
                    ),
                );
                r.clone()
            }
            Err(why) => {
                check(
                    "restore point",
                    false,
                    format!(
                        "{why} ({}); choose another backup or restore point",
                        archive.dir.display()
                    ),
                );
                continue;
            }
        };
        let history = continuity_history(archive, part, &target);
        check(
            "timeline",
            history.is_some(),
            match &history {
                Some(_) if target.timeline == part.timeline => {
                    format!("backup and restore point on timeline {}", part.timeline)
                }
                Some(_) => format!(
                    "timeline {}'s history runs through the backup's timeline {} at {}",
                    target.timeline, part.timeline, part.start_lsn
                ),
                None => format!(
                    "{:08X}.history is missing from {}: timeline {} cannot be reached",
                    target.timeline,
                    archive.dir.display(),
                    target.timeline
                ),
            },
        );
        let (from, to) = (part.start_lsn, target.end_lsn);
        let continuity = match continuity_checks.remove(&node.name) {
            Some(started) => started,
            None => start_continuity(
                archive.search.clone(),
                archive.source.clone(),
                history,
                from,
                to,
                &slots,
            ),
        }
        .await
        .map_err(Error::task("checking WAL"))?;
        if let (Some(backend), Some(source)) = (backend.filter(|_| keep_proven), &archive.source) {
            // Only WAL that passed is handed on: a failed check holds nothing.
            let frames = source.take_frames();
            let proven = if continuity.is_ok() {
                frames
            } else {
                Vec::new()
            };
            backend.hold_proven_wal(&node.name, proven);
        }
        if let Ok(r) = &continuity {
            if let Some(p) = r.parameter_max {
                raised.insert(node.name.clone(), p);
            }
            if let Some(lsn) = r.tablespace_creates.first() {
                check(
                    "tablespaces",
                    false,
                    format!(
                        "a tablespace was created at {lsn}, after the backup: replaying that would write into the tablespace's original folder, which the live cluster uses; take a new backup and restore from it"
                    ),
                );
            }
        }
        check(
            "WAL continuity",
            continuity.is_ok(),
            match continuity {
                Ok(r) => format!(
                    "{} segment(s), {} records intact from {from} to {to}",
                    r.segments.len(),
                    r.records
                ),
                Err(e) => format!("{e}; restore the missing or damaged segment into the archive, or choose a later backup"),
            },
        );
        target_nodes.push(NodeRestorePoint {
            node: node.name.clone(),
            lsn: Some(target.lsn),
            timeline: target.timeline,
            segment: target.last_segment.clone(),
        });
    }
    match backend {
        Some(backend) if config.uses_ssh() => {
            for (node_name, needed) in per_host.values() {
                let node = config.node(node_name).expect("a node of the config");
                checks.push(host_disk_check(backend, config, node, *needed).await);
            }
        }
        _ => checks.push(disk_check(
            config,
            catalog,
            &backup,
            stored.map(|_| needed_bytes),
        )),
    }
    let time = archives
        .values()
        .flat_map(|a| a.records.iter().map(|r| r.time))
        .min()
        .or(in_record.map(|r| r.time))
        .unwrap_or_else(chrono::Utc::now);
    Ok(VerifyReport {
        backup: backup.name.clone(),
        chosen_because,
        restore_point: point.into(),
        wal_parameters: raised,
        target: RestorePoint {
            name: point.into(),
            time,
            citus: in_record.is_some_and(|r| r.citus),
            nodes: target_nodes,
        },
        checks,
        before: None,
    })
}

/// The check of a node's backup in the repository: the manifest is there, intact and
/// readable; every tar object is there, together of the size recorded when the backup was
/// taken; and every object read in full (decoded, chunk checksums checked) holds exactly the
/// manifest's files with their sizes and CRC32C. Returns whether it passed, the detail, and the
/// bytes extracting it writes (the manifest's total).
async fn stored_backup_check(
    repo: &dyn Repository,
    part: &crate::catalog::NodeBackup,
    read: BackupRead,
) -> (bool, String, u64) {
    let fail = |detail: String| (false, format!("{detail}; choose another backup"), 0);
    let (mkey, manifest, tars) =
        match crate::repository::backup::stored_objects(repo, &part.backup, &part.node).await {
            Ok(found) => found,
            Err(e) => return fail(e.to_string()),
        };
    let listed = match manifest::ManifestCheck::parse(&manifest) {
        Ok(m) => m.listed(),
        Err(e) => return fail(format!("{mkey}: {e}")),
    };
    let mut wanted = vec!["base".to_string()];
    wanted.extend(part.tablespaces.iter().map(|oid| oid.to_string()));
    let mut stored = 0;
    let mut keys = Vec::new();
    for name in &wanted {
        match tars.iter().find(|(n, _)| n == name) {
            Some((_, meta)) => {
                stored += meta.size;
                keys.push((name.clone(), meta.key.clone()));
            }
            None => {
                return fail(format!(
                    "{name}.tar of backup {} is not in the repository beside {mkey}",
                    part.backup
                ))
            }
        }
    }
    if stored != part.bytes {
        return fail(format!(
            "the tar objects beside {mkey} hold {stored} bytes where {} were stored when the backup was taken: an object was changed or replaced",
            part.bytes
        ));
    }
    if read == BackupRead::Objects {
        return (
            true,
            format!(
                "{} tar object(s) ({stored} bytes stored) and {mkey} ({} files) are there; every file is checked against the manifest as it is extracted",
                keys.len(),
                listed.0
            ),
            listed.1,
        );
    }
    // Read in full, as the check of a backup folder does: damage is found before any data
    // directory is touched.
    let tar = match crate::repository::backup::check_stored_tars(repo, &manifest, &keys).await {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    if !tar.problems.is_empty() {
        return fail(format!(
            "{}; the backup is damaged",
            tar.problems[..tar.problems.len().min(5)].join("; ")
        ));
    }
    (
        true,
        format!(
            "{} files, {} bytes in {} tar object(s) ({stored} bytes stored) match {mkey}",
            tar.files,
            tar.bytes,
            keys.len()
        ),
        listed.1,
    )
}

/// Whether the file system of the data directories on `node`'s host has room for `needed`
/// bytes (every node's extracted backup on that host), looked up through `backend`.
async fn host_disk_check(
    backend: &dyn crate::backend::ClusterBackend,
    config: &ClusterConfig,
    node: &crate::config::NodeConfig,
    needed: u64,
) -> Check {
    let dir = &config.cluster_base_folder;
    let want = needed + needed / 20;
    let (ok, detail) = match backend.free_space(node, dir).await {
        Ok(Some(free)) => (
            free >= want,
            format!(
                "{} MiB free in {} on {}, {} MiB needed{}",
                free >> 20,
                dir.display(),
                node.hostname,
                want >> 20,
                if free >= want {
                    ""
                } else {
                    "; free some space there (the data directories moved aside by earlier restores may go)"
                }
            ),
        ),
        Ok(None) => (
            false,
            format!(
                "the free space in {} on {} is unknown",
                dir.display(),
                node.hostname
            ),
        ),
        Err(e) => (false, format!("cannot read the free space: {e}")),
    };
    Check {
        node: Some(node.name.clone()),
        check: "disk space".into(),
        ok,
        detail,
    }
}

/// Whether the file system of the data directories has room for every node's extracted backup
/// (`stored`: the bytes a backup in the repository extracts to, from its manifests).
fn disk_check(
    config: &ClusterConfig,
    catalog: &Catalog,
    backup: &Backup,
    stored: Option<u64>,
) -> Check {
    let needed: u64 = stored.unwrap_or_else(|| {
        config
            .nodes()
            .flat_map(|n| {
                let folder = catalog.node_backup_dir(&backup.name, &n.name);
                ["base.tar", "pg_wal.tar"].map(|f| {
                    std::fs::metadata(folder.join(f))
                        .map(|m| m.len())
                        .unwrap_or(0)
                })
            })
            .sum()
    });
    let mut dir = config.cluster_base_folder.as_path();
    while !dir.exists() {
        dir = dir.parent().unwrap_or(Path::new("/"));
    }
    match nix::sys::statvfs::statvfs(dir) {
        Ok(st) => {
            let free = st.blocks_available() * st.fragment_size();
            // Some slack: file system overhead, and WAL the servers write while recovering.
            let want = needed + needed / 20;
            Check {
                node: None,
                check: "disk space".into(),
                ok: free >= want,
                detail: format!(
                    "{} MiB free in {}, {} MiB needed{}",
                    free >> 20,
                    dir.display(),
                    want >> 20,
                    if free >= want {
                        ""
                    } else {
                        "; free some space (the data directories moved aside by earlier restores may go) or restore elsewhere"
                    }
                ),
            }
        }
        Err(e) => Check {
            node: None,
            check: "disk space".into(),
            ok: false,
            detail: format!("cannot read the free space of {}: {e}", dir.display()),
        },
    }
}
