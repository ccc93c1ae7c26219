//! `expire`: retention. Keeps the backups the retention says, removes the older ones and every
//! archived WAL file no kept backup needs.
//!
//! [`ExpirePlan::build`] is pure: it decides from an [`ExpireListing`] (the catalog and what the
//! store holds) and changes nothing; the plan is the `--dry-run` output. [`ExpirePlan::execute`]
//! removes in an order that keeps the repository complete for everything kept at every moment:
//!
//! 1. each expired backup's catalog entry first (from then on it is neither listed nor
//!    offered), then its files, then its node parts;
//! 2. leftovers of interrupted backups or expires (files or node parts without an entry);
//! 3. per node, WAL files before the oldest kept backup's start segment (any timeline), oldest
//!    first; `.history` files always stay, and `.backup` files of kept backups (they are at or
//!    after that segment);
//! 4. with `--restore-points`, the catalog entries of restore points no kept backup reaches.
//!
//! Killed at any moment, the next run finds what is left and finishes.

pub mod store;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::{Backup, Catalog, RestorePoint};
use crate::config::{ClusterConfig, Retention};
use crate::error::{Error, Result};
use crate::plan::{Phase, Plan};
use crate::wal::{self, parse_segment_file_name, SegNo};

pub use store::{ExpireStore, FileSet, FolderStore, RepositoryStore, StoredFile};

/// What `expire` is built from: the catalog and what the store holds, read without changing
/// anything.
#[derive(Debug, Clone, Default)]
pub struct ExpireListing {
    /// Complete backups, oldest first.
    pub backups: Vec<Backup>,
    /// Recorded restore points, oldest first.
    pub restore_points: Vec<RestorePoint>,
    /// Backups with files in the store: their size, and whether an old layout's complete
    /// manifest protects them.
    pub backup_files: BTreeMap<String, (FileSet, bool)>,
    /// Backups with node parts in the repository's catalog.
    pub node_parts: Vec<String>,
    /// Every node's archived WAL files.
    pub wal: BTreeMap<String, Vec<StoredFile>>,
    /// Every node's WAL segment size (from its archive; 16 MiB when it holds no segment).
    pub segment_size: BTreeMap<String, u64>,
}

impl ExpireListing {
    /// Reads the catalog and the store. Each node's segment size is the one its backups
    /// recorded, when they all agree; else it is read from a segment's header in its archive
    /// (through `repo`, the config's repository, when there is one).
    pub async fn read(
        config: &ClusterConfig,
        catalog: &Catalog,
        store: &dyn ExpireStore,
        repo: Option<&std::sync::Arc<dyn crate::repository::Repository>>,
    ) -> Result<Self> {
        let mut listing = Self::read_files(config, catalog, store).await?;
        for node in config.nodes() {
            if !listing.wal[&node.name].iter().any(|f| f.name.len() == 24) {
                continue;
            }
            if let Some(size) = recorded_segment_size(&listing.backups, &node.name) {
                listing.segment_size.insert(node.name.clone(), size);
                continue;
            }
            let (repo, dir, name) = (repo.cloned(), config.archive_dir(node), node.name.clone());
            let handle = tokio::runtime::Handle::current();
            let failed = |e: String| Error::node(&node.name, "read the WAL segment size", e);
            let size = tokio::task::spawn_blocking(move || {
                let source = wal::node_source(repo, dir, &name, handle)?;
                wal::ArchiveListing::read_in(source.as_ref(), None).map(|l| l.seg_size)
            })
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
            listing.segment_size.insert(node.name.clone(), size);
        }
        Ok(listing)
    }

    /// Like [`ExpireListing::read`], with every node's segment size taken to be the default
    /// 16 MiB instead of read from its archive.
    pub async fn read_files(
        config: &ClusterConfig,
        catalog: &Catalog,
        store: &dyn ExpireStore,
    ) -> Result<Self> {
        let mut listing = ExpireListing {
            backups: catalog.backups().await?,
            restore_points: catalog.restore_points().await?,
            backup_files: store.backup_files().await?,
            node_parts: catalog.backups_with_node_parts().await?,
            ..ExpireListing::default()
        };
        for node in config.nodes() {
            listing
                .wal
                .insert(node.name.clone(), store.wal_files(&node.name).await?);
            listing
                .segment_size
                .insert(node.name.clone(), wal::DEFAULT_SEGMENT_SIZE);
        }
        Ok(listing)
    }
}

/// The WAL segment size every backup of `node` in `backups` recorded, when there is at least
/// one and they agree (backups before the size was recorded do not count).
fn recorded_segment_size(backups: &[Backup], node: &str) -> Option<u64> {
    let mut sizes = backups
        .iter()
        .filter_map(|b| b.node(node)?.wal_segment_size)
        .filter(|s| wal::is_valid_segment_size(*s));
    let first = sizes.next()?;
    sizes.all(|s| s == first).then_some(first)
}

/// A backup `expire` removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiredBackup {
    /// Its name.
    pub name: String,
    /// When it ended (`None` for an incomplete one).
    pub end_time: Option<DateTime<Utc>>,
    /// Its files in the store.
    pub files: FileSet,
    /// Why it goes.
    pub reason: String,
}

/// One node's WAL that `expire` removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeWalExpiry {
    /// The node.
    pub node: String,
    /// Everything from this segment on stays (the oldest kept backup's start segment on this
    /// node); `None`: no kept backup has this node, nothing is removed.
    pub keep_from: Option<String>,
    /// The files removed, oldest first.
    pub remove: Vec<StoredFile>,
    /// Their bytes.
    pub bytes: u64,
    /// How many files stay.
    pub kept_files: usize,
}

/// The plan of `expire`: plain data, built from an [`ExpireListing`] without changing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpirePlan {
    /// The retention applied.
    pub retention: Retention,
    /// When the plan was made (the `days` rule counts from it).
    pub now: DateTime<Utc>,
    /// The backups kept, oldest first.
    pub kept: Vec<String>,
    /// The complete backups removed, oldest first.
    pub backups: Vec<ExpiredBackup>,
    /// Leftovers of interrupted backups or expires: files or node parts without an entry.
    pub incomplete: Vec<ExpiredBackup>,
    /// Per node, the WAL removed.
    pub wal: Vec<NodeWalExpiry>,
    /// Recorded restore points no kept backup reaches (older than the oldest kept backup).
    pub unreachable_restore_points: Vec<String>,
    /// Whether their catalog entries are removed (`--restore-points`).
    pub remove_restore_points: bool,
    /// Bytes freed in all.
    pub bytes_freed: u64,
    /// Remarks.
    pub notes: Vec<String>,
}

/// What [`ExpirePlan::execute`] did: the plan, all of it done.
pub type ExpireReport = ExpirePlan;

/// Whether `rp` can be reached from `backup`: on every node both have, the point is at or after
/// the end of the node's backup (by time where the point has no LSN).
pub fn reaches(backup: &Backup, rp: &RestorePoint) -> bool {
    rp.nodes
        .iter()
        .all(|n| match (backup.node(&n.node), n.lsn) {
            (None, _) => true,
            (Some(part), Some(lsn)) => lsn >= part.end_lsn,
            (Some(_), None) => rp.time >= backup.end_time,
        })
}

/// The recorded restore points none of `backups` reaches: restoring to them is impossible.
pub fn unreachable_restore_points<'a>(
    backups: &[Backup],
    points: &'a [RestorePoint],
) -> Vec<&'a RestorePoint> {
    if backups.is_empty() {
        return Vec::new();
    }
    points
        .iter()
        .filter(|rp| !backups.iter().any(|b| reaches(b, rp)))
        .collect()
}

/// The retention from the config, with the command line's values over it.
pub fn effective_retention(
    config: &ClusterConfig,
    full: Option<u32>,
    days: Option<u32>,
) -> Result<Retention> {
    let base = config.retention.unwrap_or(Retention {
        full: None,
        days: None,
    });
    let r = if full.is_some() || days.is_some() {
        Retention { full, days }
    } else {
        base
    };
    crate::config::check_retention(&r).map_err(|(field, problem)| Error::Config {
        path: config.source.clone(),
        field: format!("retention.{field}"),
        problem,
        fix: "set \"retention\": {\"full\": N} and/or {\"days\": D} in the config, or pass --retain-full N / --retain-days D".into(),
    })?;
    Ok(r)
}

/// The segment of a WAL file name, whatever its kind: segments, `.partial` and `.backup` files.
/// `None` for `.history` and anything else (kept).
fn segment_of(name: &str, seg_size: u64) -> Option<SegNo> {
    let stem = name
        .strip_suffix(".partial")
        .or_else(|| {
            wal::segment::is_backup_history_name(name).then(|| name.get(..24).unwrap_or(name))
        })
        .unwrap_or(name);
    parse_segment_file_name(stem, seg_size).map(|(_, segno)| segno)
}

impl ExpirePlan {
    /// Decides what goes: the backups the retention does not keep (the newest complete backup
    /// always stays), leftovers of interrupted runs, and each node's WAL before the oldest kept
    /// backup's start segment. Pure: no I/O.
    pub fn build(
        listing: &ExpireListing,
        retention: Retention,
        remove_restore_points: bool,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let backups = &listing.backups;
        let mut keep = vec![false; backups.len()];
        if let Some(last) = keep.last_mut() {
            *last = true;
        }
        if let Some(full) = retention.full {
            let n = backups.len().saturating_sub(full as usize);
            keep[n..].iter_mut().for_each(|k| *k = true);
        }
        if let Some(days) = retention.days {
            let since = now - chrono::Duration::days(i64::from(days));
            for (k, b) in keep.iter_mut().zip(backups) {
                *k |= b.end_time > since;
            }
        }
        // Kept backups are a suffix of the ordered list; everything before the oldest kept goes.
        let first_kept = keep.iter().position(|k| *k).unwrap_or(backups.len());
        let kept: Vec<&Backup> = backups[first_kept..].iter().collect();
        let mut notes = Vec::new();
        let files_of = |name: &str| {
            listing
                .backup_files
                .get(name)
                .map(|(s, _)| *s)
                .unwrap_or_default()
        };
        let expired: Vec<ExpiredBackup> = backups[..first_kept]
            .iter()
            .map(|b| ExpiredBackup {
                name: b.name.clone(),
                end_time: Some(b.end_time),
                files: files_of(&b.name),
                reason: "older than the retention keeps".into(),
            })
            .collect();
        let complete: std::collections::BTreeSet<&str> =
            backups.iter().map(|b| b.name.as_str()).collect();
        let mut incomplete: BTreeMap<String, ExpiredBackup> = BTreeMap::new();
        for (name, (set, protected)) in &listing.backup_files {
            if complete.contains(name.as_str()) {
                continue;
            }
            if *protected {
                notes.push(format!(
                    "backup folder {name} has a complete manifest but the catalog does not list it (taken before the config had a repository, or its manifest is not trusted: see the warnings): left alone"
                ));
                continue;
            }
            incomplete.insert(
                name.clone(),
                ExpiredBackup {
                    name: name.clone(),
                    end_time: None,
                    files: *set,
                    reason: "has no catalog entry: an interrupted backup or expire".into(),
                },
            );
        }
        for name in &listing.node_parts {
            if !complete.contains(name.as_str()) && !incomplete.contains_key(name) {
                incomplete
                    .entry(name.clone())
                    .or_insert_with(|| ExpiredBackup {
                        name: name.clone(),
                        end_time: None,
                        files: FileSet::default(),
                        reason:
                            "node parts without a catalog entry: an interrupted backup or expire"
                                .into(),
                    });
            }
        }

        // Names no backup can have were not written by citus-recovery: never removed.
        incomplete.retain(|name, _| {
            let ok = crate::names::check_backup_name(name).is_ok();
            if !ok {
                notes.push(format!(
                    "{name:?} under the backups is not a backup name citus-recovery writes: left alone"
                ));
            }
            ok
        });
        let mut wal_plan = Vec::new();
        for (node, files) in &listing.wal {
            let seg_size = listing
                .segment_size
                .get(node)
                .copied()
                .unwrap_or(wal::DEFAULT_SEGMENT_SIZE);
            let start = kept
                .iter()
                .filter_map(|b| b.node(node))
                .min_by_key(|p| p.start_lsn);
            let Some(start) = start else {
                if !kept.is_empty() {
                    notes.push(format!(
                        "no kept backup has node {node}: its WAL is left alone"
                    ));
                }
                wal_plan.push(NodeWalExpiry {
                    node: node.clone(),
                    keep_from: None,
                    remove: Vec::new(),
                    bytes: 0,
                    kept_files: files.len(),
                });
                continue;
            };
            let keep_segno = start.start_lsn.segment(seg_size);
            let remove: Vec<StoredFile> = files
                .iter()
                .filter(|f| segment_of(&f.name, seg_size).is_some_and(|s| s < keep_segno))
                .cloned()
                .collect();
            wal_plan.push(NodeWalExpiry {
                node: node.clone(),
                keep_from: Some(wal::segno_file_name(start.timeline, keep_segno, seg_size)),
                bytes: remove.iter().map(|f| f.size).sum(),
                kept_files: files.len() - remove.len(),
                remove,
            });
        }
        if backups.is_empty() {
            notes.push("there is no complete backup: no WAL is removed".into());
        }
        let kept_owned: Vec<Backup> = kept.iter().map(|b| (*b).clone()).collect();
        let unreachable: Vec<String> =
            unreachable_restore_points(&kept_owned, &listing.restore_points)
                .into_iter()
                .map(|rp| rp.name.clone())
                .collect();
        if !unreachable.is_empty() && !remove_restore_points {
            notes.push(format!(
                "{} restore point(s) can no longer be reached and stay in the catalog, marked in `list`; --restore-points removes them",
                unreachable.len()
            ));
        }
        let incomplete: Vec<ExpiredBackup> = incomplete.into_values().collect();
        let bytes_freed = expired
            .iter()
            .chain(&incomplete)
            .map(|b| b.files.bytes)
            .sum::<u64>()
            + wal_plan.iter().map(|w| w.bytes).sum::<u64>();
        Ok(ExpirePlan {
            retention,
            now,
            kept: kept.iter().map(|b| b.name.clone()).collect(),
            backups: expired,
            incomplete,
            wal: wal_plan,
            unreachable_restore_points: unreachable,
            remove_restore_points,
            bytes_freed,
            notes,
        })
    }

    /// Whether there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.backups.is_empty()
            && self.incomplete.is_empty()
            && self.wal.iter().all(|w| w.remove.is_empty())
            && (!self.remove_restore_points || self.unreachable_restore_points.is_empty())
    }

    /// Removes what the plan says, in the order of the module's documentation. The caller
    /// holds the cluster lock. An error stops at once: what is left is still complete for
    /// everything kept, and running expire again finishes.
    pub async fn execute(self, catalog: &Catalog, store: &dyn ExpireStore) -> Result<ExpireReport> {
        for b in &self.backups {
            tracing::info!("expire: backup {}", b.name);
            catalog.delete_backup_entry(&b.name).await?;
            store.delete_backup_files(&b.name).await?;
            catalog.delete_backup_node_parts(&b.name).await?;
        }
        for b in &self.incomplete {
            tracing::info!("expire: leftovers of backup {}", b.name);
            store.delete_backup_files(&b.name).await?;
            catalog.delete_backup_node_parts(&b.name).await?;
        }
        for w in &self.wal {
            if !w.remove.is_empty() {
                tracing::info!(
                    "expire: {} WAL file(s) of node {} before {}",
                    w.remove.len(),
                    w.node,
                    w.keep_from.as_deref().unwrap_or("-")
                );
            }
            for f in &w.remove {
                store.delete_wal(&w.node, f).await?;
            }
        }
        if self.remove_restore_points {
            for name in &self.unreachable_restore_points {
                match catalog.delete_restore_point(name).await {
                    Ok(_) | Err(Error::UnknownRestorePoint { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(self)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl fmt::Display for ExpirePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match (self.retention.full, self.retention.days) {
            (Some(n), Some(d)) => {
                format!("the newest {n} backup(s) and those of the last {d} day(s)")
            }
            (Some(n), None) => format!("the newest {n} backup(s)"),
            (None, Some(d)) => format!("the backups of the last {d} day(s)"),
            (None, None) => "the newest backup".into(),
        };
        writeln!(f, "expire: keep {rule}; frees {}", mib(self.bytes_freed))?;
        writeln!(
            f,
            "kept backups ({}): {}",
            self.kept.len(),
            if self.kept.is_empty() {
                "none".to_string()
            } else {
                self.kept.join(", ")
            }
        )?;
        for line in self.step_lines() {
            writeln!(f, "  {line}")?;
        }
        if self.is_empty() {
            writeln!(f, "nothing to remove")?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

impl Plan for ExpirePlan {
    fn command(&self) -> &'static str {
        "expire"
    }

    /// None: nothing of an expiry runs on the nodes (see [`Plan::step_lines`]).
    fn phases(&self) -> &[Phase] {
        &[]
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }

    /// One line per removal, in the order they run.
    fn step_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for b in &self.backups {
            lines.push(format!(
                "remove backup {} (ended {}): catalog entry first, then {} file(s), {}",
                b.name,
                b.end_time
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default(),
                b.files.files,
                mib(b.files.bytes)
            ));
        }
        for b in &self.incomplete {
            lines.push(format!(
                "remove leftovers of backup {} ({}): {} file(s), {}",
                b.name,
                b.reason,
                b.files.files,
                mib(b.files.bytes)
            ));
        }
        for w in &self.wal {
            match (&w.keep_from, w.remove.as_slice()) {
                (_, []) => {}
                (Some(from), [first, .., last]) => lines.push(format!(
                    "{}: remove {} WAL file(s) {} .. {} ({}), keep {} from {from}",
                    w.node,
                    w.remove.len(),
                    first.name,
                    last.name,
                    mib(w.bytes),
                    w.kept_files
                )),
                (Some(from), [only]) => lines.push(format!(
                    "{}: remove WAL file {} ({}), keep {} from {from}",
                    w.node,
                    only.name,
                    mib(w.bytes),
                    w.kept_files
                )),
                (None, _) => {}
            }
        }
        for name in &self.unreachable_restore_points {
            lines.push(if self.remove_restore_points {
                format!(
                    "remove restore point {name:?} from the catalog (no kept backup reaches it)"
                )
            } else {
                format!("restore point {name:?} can no longer be reached (kept in the catalog)")
            });
        }
        lines
    }
}

#[cfg(test)]
mod tests;
