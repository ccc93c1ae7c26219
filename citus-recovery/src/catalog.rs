//! The catalog: what is recorded beside the backups.
//!
//! ```text
//! <backupBaseFolder>/                     the invoking user's, mode 0755
//!   restore-points.json                   every restore point created through the library
//!   citus-recovery-restore.json           the restore under way, if any
//!   citus-recovery.lock                   the cluster lock
//!   <backup>/                             the invoking user's, mode 0755
//!     citus-recovery-backup.json          the cluster manifest, written last
//!     citus-recovery-node-<node>.json     a node's manifest, written when that node is done
//!     <node>/base.tar, pg_wal.tar, backup_manifest   written by pg_basebackup as the servers' user
//! ```
//!
//! Readers trust only backups whose cluster manifest exists: a failed or interrupted backup has
//! none, so it is never listed or offered for restore. The catalog's files are the invoking
//! user's and are checked before they are read ([`crate::trusted`]): the servers' user, which
//! writes the node folders, can change none of them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::trusted;
use crate::wal::Lsn;

/// File name of a backup's cluster manifest.
pub const CLUSTER_MANIFEST: &str = "citus-recovery-backup.json";
/// Prefix of a node's manifest file name in its backup's folder (`citus-recovery-node-<node>.json`).
pub const NODE_MANIFEST_PREFIX: &str = "citus-recovery-node-";
/// File name of the restore point record.
pub const RESTORE_POINTS: &str = "restore-points.json";

/// One node's part of a base backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBackup {
    /// The backup's name.
    pub backup: String,
    /// The node's name.
    pub node: String,
    /// Where the backup's WAL starts (from PostgreSQL's `backup_manifest`).
    pub start_lsn: Lsn,
    /// Where it ends: recovery must replay at least this far to be consistent.
    pub end_lsn: Lsn,
    /// The timeline the backup was taken on.
    pub timeline: u32,
    /// When pg_basebackup started.
    pub start_time: DateTime<Utc>,
    /// When the node's backup was complete (files written, WAL archived).
    pub end_time: DateTime<Utc>,
    /// The server's version (`server_version`).
    pub pg_version: String,
    /// Bytes written.
    pub bytes: u64,
    /// The server's `system_identifier`: a restore puts this backup only into that server's
    /// place. `None` for backups made before it was recorded.
    #[serde(default)]
    pub system_identifier: Option<u64>,
    /// The hot-standby settings of the server when the backup began (the running server's
    /// values are those its `pg_control` records): a restored server never gets lower ones.
    /// `None` for older backups.
    #[serde(default)]
    pub hot_standby: Option<crate::wal::HotStandbyParameters>,
    /// The oids of the user tablespaces backed up (one `<oid>.tar` each).
    #[serde(default)]
    pub tablespaces: Vec<u32>,
}

/// A complete base backup of the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// The backup's name (also its folder name).
    pub name: String,
    /// The cluster's name from the config.
    pub cluster_name: String,
    /// When the backup started.
    pub start_time: DateTime<Utc>,
    /// When every node's backup was complete.
    pub end_time: DateTime<Utc>,
    /// The Citus version on the coordinator, `None` on plain PostgreSQL.
    pub citus_version: Option<String>,
    /// Every node's part, in config order.
    pub nodes: Vec<NodeBackup>,
}

impl Backup {
    /// The part of the backup for `node`.
    pub fn node(&self, node: &str) -> Option<&NodeBackup> {
        self.nodes.iter().find(|n| n.node == node)
    }

    /// Total bytes over all nodes.
    pub fn bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.bytes).sum()
    }
}

/// Where one node's copy of a restore point lies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRestorePoint {
    /// The node's name.
    pub node: String,
    /// The record's LSN where known (Citus reports only the coordinator's).
    pub lsn: Option<Lsn>,
    /// The node's timeline when the point was made.
    pub timeline: u32,
    /// The last WAL segment that had to be archived for the point to be usable.
    pub segment: String,
}

/// A named restore point, written on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// The name recovery stops at.
    pub name: String,
    /// When it was created.
    pub time: DateTime<Utc>,
    /// Whether `citus_create_restore_point` made it (consistent across nodes) or
    /// `pg_create_restore_point` on each plain node.
    pub citus: bool,
    /// Every node's copy, in config order.
    pub nodes: Vec<NodeRestorePoint>,
}

impl RestorePoint {
    /// The copy on `node`.
    pub fn node(&self, node: &str) -> Option<&NodeRestorePoint> {
        self.nodes.iter().find(|n| n.node == node)
    }
}

impl std::fmt::Display for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  {}  {} .. {}  {:.1} MiB{}",
            self.name,
            self.start_time.format("%Y-%m-%d %H:%M:%S UTC"),
            self.end_time.format("%H:%M:%S"),
            self.bytes() as f64 / (1024.0 * 1024.0),
            self.citus_version
                .as_ref()
                .map(|v| format!("  citus {v}"))
                .unwrap_or_default()
        )?;
        for n in &self.nodes {
            writeln!(
                f,
                "    {:<16} timeline {}  wal {} .. {}  {:.1} MiB  PostgreSQL {}",
                n.node,
                n.timeline,
                n.start_lsn,
                n.end_lsn,
                n.bytes as f64 / (1024.0 * 1024.0),
                n.pg_version
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  {:?}  {}  {}",
            self.name,
            self.time.format("%Y-%m-%d %H:%M:%S UTC"),
            if self.citus { "citus" } else { "per node" }
        )?;
        for n in &self.nodes {
            writeln!(
                f,
                "    {:<16} timeline {}  lsn {}  archived through {}",
                n.node,
                n.timeline,
                n.lsn.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                n.segment
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RestorePointFile {
    restore_points: Vec<RestorePoint>,
}

/// Reads and writes the catalog under a cluster's `backupBaseFolder`.
#[derive(Debug, Clone)]
pub struct Catalog {
    root: PathBuf,
}

impl Catalog {
    /// The catalog of `config`.
    pub fn new(config: &ClusterConfig) -> Self {
        Catalog {
            root: config.backup_base_folder.clone(),
        }
    }

    /// The backup folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of a backup.
    pub fn backup_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The folder of one node's part of a backup.
    pub fn node_backup_dir(&self, backup: &str, node: &str) -> PathBuf {
        self.root.join(backup).join(node)
    }

    /// Complete backups, oldest first.
    pub fn backups(&self) -> Result<Vec<Backup>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &self.root, e)),
        };
        let mut backups = Vec::new();
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let manifest = entry.path().join(CLUSTER_MANIFEST);
            match trusted::read_json::<Backup>(&manifest) {
                Ok(Some(backup)) => backups.push(backup),
                Ok(None) => {}
                // One doubtful backup must not hide the others; it is named when asked for.
                Err(e @ Error::UntrustedFile { .. }) => {
                    tracing::warn!("backup {} skipped: {e}", entry.path().display())
                }
                Err(e) => return Err(e),
            }
        }
        backups.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.name.cmp(&b.name)));
        Ok(backups)
    }

    /// The complete backup of that name.
    pub fn backup(&self, name: &str) -> Result<Backup> {
        crate::names::check_backup_name(name)?;
        let manifest = self.backup_dir(name).join(CLUSTER_MANIFEST);
        if let Some(backup) = trusted::read_json::<Backup>(&manifest)? {
            if backup.name != name {
                return Err(Error::UntrustedFile {
                    path: manifest,
                    problem: format!("names backup {:?}, not {name:?}", backup.name),
                    fix: "move the folder back to its own name".into(),
                });
            }
            return Ok(backup);
        }
        let known: Vec<String> = self.backups()?.into_iter().map(|b| b.name).collect();
        let hint = if self.backup_dir(name).is_dir() {
            format!(
                "{} has no {CLUSTER_MANIFEST}: the backup did not complete and cannot be restored",
                self.backup_dir(name).display()
            )
        } else if known.is_empty() {
            "there are no complete backups; take one with `citus-recovery basebackup`".into()
        } else {
            format!("complete backups: {}", known.join(", "))
        };
        Err(Error::UnknownBackup {
            name: name.into(),
            folder: self.root.clone(),
            hint,
        })
    }

    /// Whether a folder (complete or not) of that name exists.
    pub fn backup_folder_exists(&self, name: &str) -> bool {
        self.backup_dir(name).exists()
    }

    /// Creates the backup's folder (the invoking user's) before any node writes into it.
    pub fn create_backup_dir(&self, name: &str) -> Result<()> {
        crate::names::check_backup_name(name)?;
        trusted::ensure_dir(&self.backup_dir(name))
    }

    /// Writes a node's manifest into its backup's folder.
    pub fn write_node_manifest(&self, node: &NodeBackup) -> Result<()> {
        let file = format!("{NODE_MANIFEST_PREFIX}{}.json", node.node);
        let path = trusted::file_in(&self.backup_dir(&node.backup), &file)?;
        trusted::write_json(&path, node)
    }

    /// Writes the cluster manifest: from now on the backup is complete.
    pub fn write_cluster_manifest(&self, backup: &Backup) -> Result<()> {
        trusted::write_json(
            &self.backup_dir(&backup.name).join(CLUSTER_MANIFEST),
            backup,
        )
    }

    /// Recorded restore points, oldest first.
    pub fn restore_points(&self) -> Result<Vec<RestorePoint>> {
        Ok(
            trusted::read_json::<RestorePointFile>(&self.root.join(RESTORE_POINTS))?
                .unwrap_or_default()
                .restore_points,
        )
    }

    /// The recorded restore point of that name.
    pub fn restore_point(&self, name: &str) -> Result<RestorePoint> {
        let all = self.restore_points()?;
        if let Some(rp) = all.iter().find(|r| r.name == name) {
            return Ok(rp.clone());
        }
        let hint = if all.is_empty() {
            "no restore points are recorded; create one with `citus-recovery restore-point`".into()
        } else {
            let names: Vec<String> = all
                .iter()
                .rev()
                .take(10)
                .map(|r| format!("{:?}", r.name))
                .collect();
            format!("known restore points (newest first): {}", names.join(", "))
        };
        Err(Error::UnknownRestorePoint {
            name: name.into(),
            hint,
        })
    }

    /// Adds a restore point to the record.
    pub fn record_restore_point(&self, rp: &RestorePoint) -> Result<()> {
        trusted::ensure_dir(&self.root)?;
        let path = self.root.join(RESTORE_POINTS);
        let mut file = trusted::read_json::<RestorePointFile>(&path)?.unwrap_or_default();
        file.restore_points.push(rp.clone());
        trusted::write_json(&path, &file)
    }
}
