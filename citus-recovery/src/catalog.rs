//! The catalog: what is recorded beside the backups.
//!
//! ```text
//! <backupBaseFolder>/
//!   restore-points.json                   every restore point created through the library
//!   <backup>/
//!     citus-recovery-backup.json          the cluster manifest, written last
//!     <node>/base.tar, pg_wal.tar, backup_manifest
//!     <node>/citus-recovery-node.json     the node manifest, written when that node is done
//! ```
//!
//! Readers trust only backups whose cluster manifest exists: a failed or interrupted backup has
//! none, so it is never listed or offered for restore.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::ClusterBackend;
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::files;
use crate::wal::Lsn;

/// File name of a backup's cluster manifest.
pub const CLUSTER_MANIFEST: &str = "citus-recovery-backup.json";
/// File name of a node's manifest inside its backup folder.
pub const NODE_MANIFEST: &str = "citus-recovery-node.json";
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
            if let Some(backup) = files::read_json::<Backup>(&manifest)? {
                backups.push(backup);
            }
        }
        backups.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.name.cmp(&b.name)));
        Ok(backups)
    }

    /// The complete backup of that name.
    pub fn backup(&self, name: &str) -> Result<Backup> {
        let manifest = self.backup_dir(name).join(CLUSTER_MANIFEST);
        if let Some(backup) = files::read_json::<Backup>(&manifest)? {
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

    /// Writes a node's manifest into its backup folder.
    pub async fn write_node_manifest(
        &self,
        backend: &dyn ClusterBackend,
        node: &NodeBackup,
    ) -> Result<()> {
        let path = self
            .node_backup_dir(&node.backup, &node.node)
            .join(NODE_MANIFEST);
        write_json(backend, &path, node).await
    }

    /// Writes the cluster manifest: from now on the backup is complete.
    pub async fn write_cluster_manifest(
        &self,
        backend: &dyn ClusterBackend,
        backup: &Backup,
    ) -> Result<()> {
        let path = self.backup_dir(&backup.name).join(CLUSTER_MANIFEST);
        write_json(backend, &path, backup).await
    }

    /// Recorded restore points, oldest first.
    pub fn restore_points(&self) -> Result<Vec<RestorePoint>> {
        Ok(
            files::read_json::<RestorePointFile>(&self.root.join(RESTORE_POINTS))?
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
    pub async fn record_restore_point(
        &self,
        backend: &dyn ClusterBackend,
        rp: &RestorePoint,
    ) -> Result<()> {
        let coordinator = &backend.config().coordinator;
        backend.create_dir(coordinator, &self.root).await?;
        let path = self.root.join(RESTORE_POINTS);
        let mut file = files::read_json::<RestorePointFile>(&path)?.unwrap_or_default();
        file.restore_points.push(rp.clone());
        write_json(backend, &path, &file).await
    }
}

/// Catalog files live where the library runs; they are written through the backend so they
/// belong to the servers' user like everything else the library creates.
async fn write_json<T: Serialize>(
    backend: &dyn ClusterBackend,
    path: &Path,
    value: &T,
) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value).expect("plain data serializes");
    text.push(b'\n');
    backend
        .write_file(
            &backend.config().coordinator,
            path,
            &text,
            crate::backend::FileSync::Now,
        )
        .await
}
