//! What the WAL archives say about restore points: on which nodes each one really is.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::{Backup, RestorePoint};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::wal::{self, Lsn, TimeLineId};

/// One node's copy of a restore point, as its archive holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchivedCopy {
    /// The node.
    pub node: String,
    /// The record's LSN.
    pub lsn: Lsn,
    /// The timeline of the segment file it was read from.
    pub timeline: TimeLineId,
    /// The time written in the record.
    pub time: DateTime<Utc>,
}

/// A restore point name found in the archives or the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchivedRestorePoint {
    /// The name.
    pub name: String,
    /// Whether the library recorded it (made by `restore-point`).
    pub recorded: bool,
    /// Every copy found, in config order of the nodes (a name may occur more than once).
    pub copies: Vec<ArchivedCopy>,
    /// Nodes whose archive lacks it: restoring to it there is impossible.
    pub missing_on: Vec<String>,
}

impl fmt::Display for ArchivedRestorePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl ArchivedRestorePoint {
    /// The listing's lines for this point, its time in UTC, or with `local` in this host's time
    /// zone (with its offset).
    pub fn render(&self, local: bool) -> String {
        let mut out = String::new();
        self.write(&mut out, local).expect("writing to a String");
        out
    }

    fn write(&self, f: &mut impl fmt::Write, local: bool) -> fmt::Result {
        let first = self.copies.iter().map(|c| c.time).min();
        writeln!(
            f,
            "  {:?}  {}{}{}",
            self.name,
            first
                .map(|t| if local {
                    t.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S %:z")
                        .to_string()
                } else {
                    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                })
                .unwrap_or_default(),
            if self.recorded {
                ""
            } else {
                "  (not made by citus-recovery)"
            },
            if self.missing_on.is_empty() {
                String::new()
            } else {
                format!("  MISSING on {}", self.missing_on.join(", "))
            }
        )?;
        for c in &self.copies {
            writeln!(
                f,
                "    {:<16} lsn {}  timeline {}",
                c.node, c.lsn, c.timeline
            )?;
        }
        Ok(())
    }
}

/// Every restore point in any node's archive or in the record, oldest first. Each archive is
/// read from the start of the oldest complete backup on (points before it cannot be restored
/// to), so the work does not grow with the archive's age; without a backup, all of it.
///
/// `repo` is the WAL archive's repository when the config has one; `None` reads
/// `<archiveBaseFolder>/<node>`.
pub async fn archived_restore_points(
    config: &ClusterConfig,
    repo: Option<&Arc<dyn Repository>>,
    recorded: &[RestorePoint],
    backups: &[Backup],
) -> Result<Vec<ArchivedRestorePoint>> {
    let mut tasks = Vec::new();
    for node in config.nodes() {
        let (name, dir) = (node.name.clone(), config.archive_dir(node));
        let from = backups
            .iter()
            .filter_map(|b| b.node(&node.name))
            .map(|p| (p.timeline, p.start_lsn))
            .min_by_key(|(_, lsn)| *lsn);
        let (repo, handle) = (repo.cloned(), tokio::runtime::Handle::current());
        tasks.push(tokio::task::spawn_blocking(move || {
            let in_folder = repo.is_none();
            let found =
                wal::node_source(repo, dir.clone(), &name, handle).and_then(|source| match from {
                    Some((tli, start)) => wal::find_restore_points_from_in(
                        source.as_ref(),
                        tli,
                        start,
                        &wal::ScanOptions::default(),
                    ),
                    None => wal::find_restore_points_in(source.as_ref()),
                });
            (name, dir, in_folder, found)
        }));
    }
    let mut by_name: BTreeMap<String, ArchivedRestorePoint> = BTreeMap::new();
    for task in tasks {
        let (node, dir, in_folder, found) =
            task.await.map_err(Error::task("reading a WAL archive"))?;
        let found = match found {
            Ok(found) => found,
            // An archive that was never made holds nothing; any other failure is an error.
            Err(_) if in_folder && !dir.exists() => Vec::new(),
            Err(source) => return Err(Error::WalArchive { node, source }),
        };
        for r in found {
            let entry = by_name
                .entry(r.name.clone())
                .or_insert_with(|| ArchivedRestorePoint {
                    name: r.name.clone(),
                    recorded: false,
                    copies: Vec::new(),
                    missing_on: Vec::new(),
                });
            // A record before a timeline switch shows up in both timelines' copy of the segment.
            if !entry
                .copies
                .iter()
                .any(|c| c.node == node && c.lsn == r.lsn)
            {
                entry.copies.push(ArchivedCopy {
                    node: node.clone(),
                    lsn: r.lsn,
                    timeline: r.timeline,
                    time: r.time,
                });
            }
        }
    }
    for rp in recorded {
        by_name
            .entry(rp.name.clone())
            .or_insert_with(|| ArchivedRestorePoint {
                name: rp.name.clone(),
                recorded: true,
                copies: Vec::new(),
                missing_on: Vec::new(),
            })
            .recorded = true;
    }
    let mut all: Vec<ArchivedRestorePoint> = by_name.into_values().collect();
    for rp in &mut all {
        rp.missing_on = config
            .nodes()
            .filter(|n| !rp.copies.iter().any(|c| c.node == n.name))
            .map(|n| n.name.clone())
            .collect();
    }
    all.sort_by_key(|rp| rp.copies.iter().map(|c| c.time).min());
    Ok(all)
}
