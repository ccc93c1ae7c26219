//! The catalog: the record of complete backups and of restore points.
//!
//! With a `repository` in the config it is kept there, under `catalog/`, so that every admin
//! host sees one truth (read and written only through [`Repository`]):
//!
//! ```text
//! catalog/backups/<backup>.json                the backup's entry, written last: complete
//! catalog/backup-nodes/<backup>/<node>.json    a node's part, written when that node is done
//! catalog/restore-points/<name>.json           one restore point: each node's LSN, timeline
//!                                              and last segment, so no WAL scan is needed
//! lock                                         the cluster lock (crate::lock)
//! ```
//!
//! Names become key parts through [`key_part`]. Entries are created only if absent
//! (`put_create`), so two admins can never overwrite each other's. In a posix repository the
//! servers' user writes `wal/`, so `catalog/` and `lock` are checked with [`crate::trusted`]
//! rules (owner, mode, every folder above, no links) before they are believed; in S3 only
//! holders of the credentials can write, which is the trust.
//!
//! Without a `repository`, today's files in `backupBaseFolder`:
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
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{ClusterConfig, RepositoryConfig};
use crate::error::{Error, Result};
use crate::repository::{Key, RepoError, Repository};
use crate::trusted;
use crate::wal::Lsn;

/// How many catalog entries are read at once when all of a kind are listed.
const READS_AT_ONCE: usize = 16;

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
    /// The server's `wal_segment_size` in bytes, so that a restore names the backup's WAL
    /// segments without reading one first. `None` for older backups (then 16 MiB, PostgreSQL's
    /// default, or the size read from a segment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_segment_size: Option<u64>,
}

impl NodeBackup {
    /// [`Self::wal_segment_size`] when recorded and valid, else PostgreSQL's default.
    pub fn segment_size(&self) -> u64 {
        crate::wal::segment_size_or_default(self.wal_segment_size)
    }
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

impl RestorePoint {
    /// The point as `list` shows it, its time in UTC or, with `local`, in this host's time zone.
    pub fn render(&self, local: bool) -> String {
        use std::fmt::Write;
        let time = if local {
            self.time
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        } else {
            self.time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        };
        let mut out = format!(
            "  {:?}  {time}  {}\n",
            self.name,
            if self.citus { "citus" } else { "per node" }
        );
        for n in &self.nodes {
            let _ = writeln!(
                out,
                "    {:<16} timeline {}  lsn {}  archived through {}",
                n.node,
                n.timeline,
                n.lsn.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                n.segment
            );
        }
        out
    }
}

impl std::fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(false))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RestorePointFile {
    restore_points: Vec<RestorePoint>,
}

/// Key prefix of the backups' entries in a repository (`catalog/backups/<backup>.json`).
pub const BACKUPS_PREFIX: &str = "catalog/backups";
/// Key prefix of the nodes' parts of backups (`catalog/backup-nodes/<backup>/<node>.json`).
pub const BACKUP_NODES_PREFIX: &str = "catalog/backup-nodes";
/// Key prefix of the restore points (`catalog/restore-points/<name>.json`).
pub const RESTORE_POINTS_PREFIX: &str = "catalog/restore-points";

/// Where the catalog's records are kept.
#[derive(Debug, Clone)]
enum Store {
    /// Files in `backupBaseFolder` (no `repository` in the config): today's layout.
    Folder,
    /// Objects under `catalog/` in the repository. `posix_root` is the repository's folder when
    /// it is a posix one: its objects are checked with [`trusted`] rules before they are read.
    Repository {
        repo: Arc<dyn Repository>,
        posix_root: Option<PathBuf>,
    },
}

/// Reads and writes the catalog: in the config's repository when it has one, else in
/// `backupBaseFolder` (see the module's documentation for both layouts). The backups' files
/// stay in `backupBaseFolder` either way.
#[derive(Debug, Clone)]
pub struct Catalog {
    root: PathBuf,
    store: Store,
}

/// One name as one key part: letters, digits, `_ - = +` kept, every other byte (`.` too, so no
/// part is `.`, `..` or a posix repository's `.tmp-` name) as `%XX`. Reversible and unique.
pub fn key_part(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"_-=+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name a [`key_part`] was made of; `None` when `part` is not one.
pub fn decode_key_part(part: &str) -> Option<String> {
    let mut out = Vec::with_capacity(part.len());
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn key(text: String) -> Key {
    Key::new(&text).expect("catalog keys are built from encoded parts")
}

/// The key of a backup's entry, written last: the backup is complete once it exists.
pub fn backup_key(backup: &str) -> Key {
    key(format!("{BACKUPS_PREFIX}/{}.json", key_part(backup)))
}

/// The key of one node's part of a backup.
pub fn backup_node_key(backup: &str, node: &str) -> Key {
    key(format!(
        "{BACKUP_NODES_PREFIX}/{}/{}.json",
        key_part(backup),
        key_part(node)
    ))
}

/// The key of a restore point's entry.
pub fn restore_point_key(name: &str) -> Key {
    key(format!("{RESTORE_POINTS_PREFIX}/{}.json", key_part(name)))
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    let mut text = serde_json::to_vec_pretty(value).expect("plain data serializes");
    text.push(b'\n');
    text.into()
}

impl Catalog {
    /// The catalog in `config`'s `backupBaseFolder`, today's files (a config without a
    /// `repository`). [`Catalog::open`] chooses by the config.
    pub fn new(config: &ClusterConfig) -> Self {
        Catalog {
            root: config.backup_base_folder.clone(),
            store: Store::Folder,
        }
    }

    /// The catalog in `repository` when given (the config's; [`crate::Cluster`] passes its
    /// own), else in `backupBaseFolder`.
    pub fn open(config: &ClusterConfig, repository: Option<Arc<dyn Repository>>) -> Self {
        let Some(repo) = repository else {
            return Self::new(config);
        };
        let posix_root = match &config.repository {
            Some(RepositoryConfig::Posix { path }) => Some(path.clone()),
            _ => None,
        };
        Catalog {
            root: config.backup_base_folder.clone(),
            store: Store::Repository { repo, posix_root },
        }
    }

    /// Whether the records are in a repository (else in `backupBaseFolder`).
    pub fn in_repository(&self) -> bool {
        matches!(self.store, Store::Repository { .. })
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

    /// Where the records are, for messages: the backup folder or the repository's `catalog/`.
    pub fn describe(&self) -> PathBuf {
        match &self.store {
            Store::Folder => self.root.clone(),
            Store::Repository { repo, .. } => {
                PathBuf::from(format!("{}: catalog", repo.describe()))
            }
        }
    }

    /// Complete backups, oldest first.
    pub async fn backups(&self) -> Result<Vec<Backup>> {
        match &self.store {
            Store::Folder => self.folder_backups(),
            Store::Repository { .. } => {
                let mut backups = Vec::new();
                for (k, read) in self.read_all::<Backup>(BACKUPS_PREFIX).await? {
                    match read {
                        Ok(Some(backup)) => backups.push(backup),
                        Ok(None) => {}
                        // One doubtful backup must not hide the others; it is named when asked for.
                        Err(e @ Error::UntrustedFile { .. }) => {
                            tracing::warn!("backup entry {k} skipped: {e}")
                        }
                        Err(e) => return Err(e),
                    }
                }
                backups.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.name.cmp(&b.name)));
                Ok(backups)
            }
        }
    }

    fn folder_backups(&self) -> Result<Vec<Backup>> {
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
    pub async fn backup(&self, name: &str) -> Result<Backup> {
        crate::names::check_backup_name(name)?;
        let (found, shown) = match &self.store {
            Store::Folder => {
                let manifest = self.backup_dir(name).join(CLUSTER_MANIFEST);
                let found = trusted::read_json::<Backup>(&manifest)?;
                (found, manifest)
            }
            Store::Repository { .. } => {
                let k = backup_key(name);
                (self.read::<Backup>(&k).await?, PathBuf::from(k.as_str()))
            }
        };
        if let Some(backup) = found {
            if backup.name != name {
                return Err(Error::UntrustedFile {
                    path: shown,
                    problem: format!("names backup {:?}, not {name:?}", backup.name),
                    fix: "move it back to its own name".into(),
                });
            }
            return Ok(backup);
        }
        let known: Vec<String> = self.backups().await?.into_iter().map(|b| b.name).collect();
        let incomplete = match &self.store {
            Store::Folder => self.backup_dir(name).is_dir(),
            Store::Repository { .. } => !self
                .list(&format!("{BACKUP_NODES_PREFIX}/{}", key_part(name)))
                .await?
                .is_empty(),
        };
        let hint = if incomplete {
            format!(
                "{name} has no {}: the backup did not complete and cannot be restored",
                match &self.store {
                    Store::Folder => CLUSTER_MANIFEST.to_string(),
                    Store::Repository { .. } => backup_key(name).to_string(),
                }
            )
        } else if known.is_empty() {
            "there are no complete backups; take one with `citus-recovery basebackup`".into()
        } else {
            format!("complete backups: {}", known.join(", "))
        };
        Err(Error::UnknownBackup {
            name: name.into(),
            folder: self.describe(),
            hint,
        })
    }

    /// Whether a folder (complete or not) of that name exists.
    pub fn backup_folder_exists(&self, name: &str) -> bool {
        self.backup_dir(name).exists()
    }

    /// Whether a backup of that name exists in any state: its folder, or in a repository its
    /// entry or any node's part (another admin host may have taken it). A new backup must not
    /// take such a name.
    pub async fn backup_name_taken(&self, name: &str) -> Result<bool> {
        if self.backup_folder_exists(name) {
            return Ok(true);
        }
        let Store::Repository { repo, .. } = &self.store else {
            return Ok(false);
        };
        if repo.head(&backup_key(name)).await?.is_some() {
            return Ok(true);
        }
        let parts = key(format!("{BACKUP_NODES_PREFIX}/{}", key_part(name)));
        Ok(!repo.list(&parts).await?.is_empty())
    }

    /// Creates the backup's folder (the invoking user's) before any node writes into it.
    pub fn create_backup_dir(&self, name: &str) -> Result<()> {
        crate::names::check_backup_name(name)?;
        trusted::ensure_dir(&self.backup_dir(name))
    }

    /// Records a node's part of a backup (its manifest).
    pub async fn write_node_manifest(&self, node: &NodeBackup) -> Result<()> {
        match &self.store {
            Store::Folder => {
                let file = format!("{NODE_MANIFEST_PREFIX}{}.json", node.node);
                let path = trusted::file_in(&self.backup_dir(&node.backup), &file)?;
                trusted::write_json(&path, node)
            }
            Store::Repository { .. } => {
                self.create(&backup_node_key(&node.backup, &node.node), to_json(node))
                    .await
            }
        }
    }

    /// Records the backup's entry: from now on the backup is complete.
    pub async fn write_cluster_manifest(&self, backup: &Backup) -> Result<()> {
        match &self.store {
            Store::Folder => trusted::write_json(
                &self.backup_dir(&backup.name).join(CLUSTER_MANIFEST),
                backup,
            ),
            Store::Repository { .. } => {
                self.create(&backup_key(&backup.name), to_json(backup))
                    .await
            }
        }
    }

    /// Recorded restore points, oldest first.
    pub async fn restore_points(&self) -> Result<Vec<RestorePoint>> {
        match &self.store {
            Store::Folder => {
                let mut points =
                    trusted::read_json::<RestorePointFile>(&self.root.join(RESTORE_POINTS))?
                        .unwrap_or_default()
                        .restore_points;
                points.sort_by_key(|p| p.time);
                Ok(points)
            }
            Store::Repository { .. } => {
                let mut points = Vec::new();
                for (_, read) in self.read_all::<RestorePoint>(RESTORE_POINTS_PREFIX).await? {
                    if let Some(rp) = read? {
                        points.push(rp);
                    }
                }
                points.sort_by(|a, b| a.time.cmp(&b.time).then(a.name.cmp(&b.name)));
                Ok(points)
            }
        }
    }

    /// The recorded restore point of that name.
    pub async fn restore_point(&self, name: &str) -> Result<RestorePoint> {
        match self.find_restore_point(name).await? {
            Some(rp) => Ok(rp),
            None => Err(unknown_restore_point(name, &self.restore_points().await?)),
        }
    }

    /// The recorded restore point of that name, `None` when it is not recorded. In a
    /// repository that is one read of its own entry; every entry is read only when that one is
    /// missing.
    pub async fn find_restore_point(&self, name: &str) -> Result<Option<RestorePoint>> {
        if self.in_repository() {
            if let Some(rp) = self.read::<RestorePoint>(&restore_point_key(name)).await? {
                if rp.name == name {
                    return Ok(Some(rp));
                }
            }
        }
        Ok(self
            .restore_points()
            .await?
            .into_iter()
            .find(|r| r.name == name))
    }

    /// Adds a restore point to the record. A point of that name recorded already is
    /// [`Error::RestorePointExists`]; in a repository the entry is created only if absent, so
    /// two admin hosts cannot overwrite each other's.
    pub async fn record_restore_point(&self, rp: &RestorePoint) -> Result<()> {
        match &self.store {
            Store::Folder => {
                trusted::ensure_dir(&self.root)?;
                let path = self.root.join(RESTORE_POINTS);
                let mut file = trusted::read_json::<RestorePointFile>(&path)?.unwrap_or_default();
                if let Some(there) = file.restore_points.iter().find(|r| r.name == rp.name) {
                    return Err(Error::RestorePointExists {
                        name: rp.name.clone(),
                        created: there.time.to_rfc3339(),
                    });
                }
                file.restore_points.push(rp.clone());
                trusted::write_json(&path, &file)
            }
            Store::Repository { .. } => {
                let k = restore_point_key(&rp.name);
                match self.create(&k, to_json(rp)).await {
                    Err(Error::Repository(RepoError::Conflict { .. })) => {
                        let there = self.read::<RestorePoint>(&k).await?;
                        Err(Error::RestorePointExists {
                            name: rp.name.clone(),
                            created: there.map_or_else(
                                || "by another command just now".into(),
                                |t| t.time.to_rfc3339(),
                            ),
                        })
                    }
                    other => other,
                }
            }
        }
    }

    /// Removes the restore point `name` from the record and returns it. Only the record goes:
    /// the WAL record stays in every node's WAL (recovery can still stop at it by name, and a
    /// listing that scans the archive still finds it). Unknown names are
    /// [`Error::UnknownRestorePoint`], naming those that exist.
    pub async fn delete_restore_point(&self, name: &str) -> Result<RestorePoint> {
        match &self.store {
            Store::Folder => {
                let path = self.root.join(RESTORE_POINTS);
                let mut file = trusted::read_json::<RestorePointFile>(&path)?.unwrap_or_default();
                let Some(at) = file.restore_points.iter().position(|r| r.name == name) else {
                    return Err(unknown_restore_point(name, &file.restore_points));
                };
                let rp = file.restore_points.remove(at);
                trusted::write_json(&path, &file)?;
                Ok(rp)
            }
            Store::Repository { repo, .. } => {
                let rp = self.restore_point(name).await?;
                repo.delete(&restore_point_key(name)).await?;
                Ok(rp)
            }
        }
    }

    /// Removes a complete backup's entry: from then on it is neither listed nor offered (the
    /// first thing `expire` does to a backup, so that an interrupted expire never leaves a
    /// listed backup with missing files). Its node parts and files stay for the caller.
    pub async fn delete_backup_entry(&self, name: &str) -> Result<()> {
        crate::names::check_backup_name(name)?;
        match &self.store {
            Store::Folder => {
                let path = self.backup_dir(name).join(CLUSTER_MANIFEST);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::io("remove", path, e)),
                }
            }
            Store::Repository { repo, posix_root } => {
                if let Some(root) = posix_root {
                    trusted::check_repository_folders(root, BACKUPS_PREFIX)?;
                }
                Ok(repo.delete(&backup_key(name)).await?)
            }
        }
    }

    /// Removes the node parts of a backup that has no entry (expired or interrupted). In a
    /// `backupBaseFolder` catalog they are in the backup's folder and go with it.
    pub async fn delete_backup_node_parts(&self, name: &str) -> Result<()> {
        crate::names::check_backup_name(name)?;
        let Store::Repository { repo, .. } = &self.store else {
            return Ok(());
        };
        for k in self
            .list(&format!("{BACKUP_NODES_PREFIX}/{}", key_part(name)))
            .await?
        {
            repo.delete(&k).await?;
        }
        Ok(())
    }

    /// Backups with node parts in the repository's catalog: complete ones and those whose
    /// entry is missing (interrupted, or an expire that was). Empty for a folder catalog.
    pub async fn backups_with_node_parts(&self) -> Result<Vec<String>> {
        let Store::Repository { .. } = &self.store else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = self
            .list(BACKUP_NODES_PREFIX)
            .await?
            .iter()
            .filter_map(|k| {
                let rest = k.as_str().strip_prefix(BACKUP_NODES_PREFIX)?;
                decode_key_part(rest.trim_start_matches('/').split('/').next()?)
            })
            .collect();
        names.dedup();
        Ok(names)
    }

    /// Every entry under `prefix` with what reading it gave, in key order. The reads run
    /// [`READS_AT_ONCE`] at a time: against an object store each is a round trip, and a
    /// repository used for years holds hundreds of entries.
    async fn read_all<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(Key, Result<Option<T>>)>> {
        use futures::StreamExt;
        let keys = self.list(prefix).await?;
        Ok(futures::stream::iter(keys)
            .map(|k| async move {
                let read = self.read::<T>(&k).await;
                (k, read)
            })
            .buffered(READS_AT_ONCE)
            .collect()
            .await)
    }

    /// The keys under `prefix`, checked first in a posix repository.
    async fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        let Store::Repository { repo, posix_root } = &self.store else {
            return Ok(Vec::new());
        };
        if let Some(root) = posix_root {
            if !trusted::check_repository_folders(root, prefix)? {
                return Ok(Vec::new());
            }
        }
        Ok(repo
            .list(&key(prefix.to_string()))
            .await?
            .into_iter()
            .map(|m| m.key)
            .filter(|k| k.name().ends_with(".json"))
            .collect())
    }

    /// Reads and parses the entry at `k`; `None` when absent. In a posix repository the file
    /// is checked with [`trusted`] rules first: the servers' user cannot have written it.
    async fn read<T: serde::de::DeserializeOwned>(&self, k: &Key) -> Result<Option<T>> {
        let Store::Repository { repo, posix_root } = &self.store else {
            return Ok(None);
        };
        if let Some(root) = posix_root {
            if !trusted::check_repository_file(root, k.as_str())? {
                return Ok(None);
            }
        }
        let data = match repo.get(k).await {
            Ok(d) => d,
            Err(RepoError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                key: k.to_string(),
                problem: format!(
                    "it is not a catalog entry of citus-recovery ({e}); move it away if it is not needed"
                ),
            })
    }

    /// Creates the entry at `k` (create-only: never overwrites); identical content already
    /// there is fine (a retried write).
    async fn create(&self, k: &Key, data: Bytes) -> Result<()> {
        let Store::Repository { repo, posix_root } = &self.store else {
            return Ok(());
        };
        if let Some(root) = posix_root {
            let (dir, _) = k.as_str().rsplit_once('/').unwrap_or(("", ""));
            trusted::check_repository_folders(root, dir)?;
        }
        repo.put_create(k, data).await?;
        Ok(())
    }
}

fn unknown_restore_point(name: &str, all: &[RestorePoint]) -> Error {
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
    Error::UnknownRestorePoint {
        name: name.into(),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::repository::memory::MemoryRepository;

    fn config(dir: &Path, repository: Option<serde_json::Value>) -> ClusterConfig {
        let mut json = serde_json::json!({
            "clusterName": "c", "workerCount": 1,
            "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
            "workerNodes": [{"name": "worker1", "hostname": "localhost", "port": 9701, "username": "postgres", "dbname": "postgres"}],
            "clusterBaseFolder": dir.join("cluster"),
            "archiveBaseFolder": dir.join("archive"),
            "backupBaseFolder": dir.join("backup"),
        });
        if let Some(r) = repository {
            json["repository"] = r;
        }
        ClusterConfig::from_json_str(&json.to_string(), None).unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn point(name: &str, secs: i64) -> RestorePoint {
        RestorePoint {
            name: name.into(),
            time: at(secs),
            citus: true,
            nodes: ["coordinator", "worker1"]
                .iter()
                .map(|n| NodeRestorePoint {
                    node: n.to_string(),
                    lsn: Some(Lsn(0x3000028 + secs as u64)),
                    timeline: 2,
                    segment: "000000020000000000000003".into(),
                })
                .collect(),
        }
    }

    fn node_backup(backup: &str, node: &str) -> NodeBackup {
        NodeBackup {
            backup: backup.into(),
            node: node.into(),
            start_lsn: Lsn(0x2000028),
            end_lsn: Lsn(0x2000100),
            timeline: 1,
            start_time: at(0),
            end_time: at(5),
            pg_version: "15.8".into(),
            bytes: 1 << 20,
            system_identifier: Some(7),
            hot_standby: None,
            tablespaces: Vec::new(),
            wal_segment_size: None,
        }
    }

    fn backup(name: &str, secs: i64) -> Backup {
        Backup {
            name: name.into(),
            cluster_name: "c".into(),
            start_time: at(secs),
            end_time: at(secs + 5),
            citus_version: Some("13.2-1".into()),
            nodes: vec![
                node_backup(name, "coordinator"),
                node_backup(name, "worker1"),
            ],
        }
    }

    /// Restore points: recorded once each (create-only), found by name, listed oldest first
    /// with every node's LSN, timeline and segment, deleted by name.
    async fn restore_points_round_trip(catalog: &Catalog) {
        assert!(catalog.restore_points().await.unwrap().is_empty());
        // Names PostgreSQL accepts but no key part can hold as they are.
        let odd = "before upgrade: v2.1/ü";
        catalog.record_restore_point(&point(odd, 20)).await.unwrap();
        catalog
            .record_restore_point(&point("rp1", 10))
            .await
            .unwrap();
        let all = catalog.restore_points().await.unwrap();
        assert_eq!(all, vec![point("rp1", 10), point(odd, 20)]);
        assert_eq!(catalog.restore_point(odd).await.unwrap(), point(odd, 20));
        match catalog.record_restore_point(&point("rp1", 30)).await {
            Err(Error::RestorePointExists { name, created }) => {
                assert_eq!(name, "rp1");
                assert_eq!(created, at(10).to_rfc3339());
            }
            other => panic!("expected RestorePointExists, got {other:?}"),
        }
        assert_eq!(
            catalog.delete_restore_point("rp1").await.unwrap(),
            point("rp1", 10)
        );
        assert_eq!(
            catalog.restore_points().await.unwrap(),
            vec![point(odd, 20)]
        );
        match catalog.delete_restore_point("rp1").await {
            Err(Error::UnknownRestorePoint { name, hint }) => {
                assert_eq!(name, "rp1");
                assert!(hint.contains(&format!("{odd:?}")), "{hint}");
            }
            other => panic!("expected UnknownRestorePoint, got {other:?}"),
        }
        catalog.delete_restore_point(odd).await.unwrap();
        match catalog.restore_point(odd).await {
            Err(Error::UnknownRestorePoint { hint, .. }) => {
                assert!(hint.contains("no restore points are recorded"), "{hint}")
            }
            other => panic!("expected UnknownRestorePoint, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn restore_points_in_a_memory_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo: Arc<dyn Repository> = Arc::new(MemoryRepository::new());
        let catalog = Catalog::open(&config(dir.path(), None), Some(repo.clone()));
        assert!(catalog.in_repository());
        restore_points_round_trip(&catalog).await;
        // Nothing was written beside the backups.
        assert!(!dir.path().join("backup").exists());
        catalog
            .record_restore_point(&point("a.b", 1))
            .await
            .unwrap();
        let keys: Vec<String> = repo
            .list(&Key::root())
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key.as_str().to_string())
            .collect();
        assert_eq!(keys, ["catalog/restore-points/a%2Eb.json"]);
    }

    #[tokio::test]
    async fn entries_are_read_at_once_in_order_and_a_named_point_with_one_read() {
        use crate::repository::memory::{Call, Hooked, Slow};
        let dir = tempfile::tempdir().unwrap();
        // Every read held a little, so that reads one after another and reads at once differ
        // in how many are under way together.
        let repo = Arc::new(Hooked {
            inner: MemoryRepository::new(),
            hook: Slow {
                delays: vec![(String::new(), 5)],
                ..Slow::default()
            },
        });
        let catalog = Catalog::open(&config(dir.path(), None), Some(repo.clone()));
        // Written in an order that is neither the keys' nor the times'.
        for i in [7, 3, 11, 0, 5, 9, 1, 10, 2, 8, 4, 6] {
            catalog
                .record_restore_point(&point(&format!("p{i:02}"), i))
                .await
                .unwrap();
        }
        repo.hook.most.store(0, std::sync::atomic::Ordering::SeqCst);
        let names: Vec<String> = catalog
            .restore_points()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        let expected: Vec<String> = (0..12).map(|i| format!("p{i:02}")).collect();
        assert_eq!(names, expected, "oldest first, as before");
        let most = repo.hook.most.load(std::sync::atomic::Ordering::SeqCst);
        assert!(most > 1, "the 12 entries were read one after another");
        assert!(most <= READS_AT_ONCE + 1, "{most} calls at once");

        repo.hook.calls.lock().unwrap().clear();
        let found = catalog.find_restore_point("p05").await.unwrap().unwrap();
        assert_eq!(found.name, "p05");
        assert_eq!(*repo.hook.calls.lock().unwrap(), [Call::Get], "one read");
        assert_eq!(catalog.restore_point("p05").await.unwrap().name, "p05");
        // An unknown name lists them all, for the error's hint.
        repo.hook.calls.lock().unwrap().clear();
        assert!(catalog.find_restore_point("nope").await.unwrap().is_none());
        assert!(repo.hook.calls.lock().unwrap().contains(&Call::List));
        match catalog.restore_point("nope").await {
            Err(Error::UnknownRestorePoint { hint, .. }) => assert!(hint.contains("p11"), "{hint}"),
            other => panic!("expected UnknownRestorePoint, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn restore_points_in_the_backup_folder() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(&config(dir.path(), None));
        restore_points_round_trip(&catalog).await;
        assert!(dir.path().join("backup").join(RESTORE_POINTS).is_file());
    }

    #[tokio::test]
    async fn a_backup_is_complete_only_once_its_entry_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let repo: Arc<dyn Repository> = Arc::new(MemoryRepository::new());
        let catalog = Catalog::open(&config(dir.path(), None), Some(repo.clone()));
        match catalog.backup("b1").await {
            Err(Error::UnknownBackup { hint, .. }) => {
                assert!(hint.contains("no complete backups"), "{hint}")
            }
            other => panic!("expected UnknownBackup, got {other:?}"),
        }
        let b1 = backup("b1", 100);
        assert!(!catalog.backup_name_taken("b1").await.unwrap());
        catalog.write_node_manifest(&b1.nodes[0]).await.unwrap();
        assert!(
            catalog.backup_name_taken("b1").await.unwrap(),
            "a part is enough"
        );
        for n in &b1.nodes[1..] {
            catalog.write_node_manifest(n).await.unwrap();
        }
        // Node parts alone: an interrupted backup, never listed nor offered.
        assert!(catalog.backups().await.unwrap().is_empty());
        match catalog.backup("b1").await {
            Err(Error::UnknownBackup { hint, .. }) => {
                assert!(hint.contains("did not complete"), "{hint}")
            }
            other => panic!("expected UnknownBackup, got {other:?}"),
        }
        catalog.write_cluster_manifest(&b1).await.unwrap();
        // A retried write of the same entry is fine; another entry of that name is refused.
        catalog.write_cluster_manifest(&b1).await.unwrap();
        let mut other = b1.clone();
        other.end_time = at(999);
        assert!(matches!(
            catalog.write_cluster_manifest(&other).await,
            Err(Error::Repository(RepoError::Conflict { .. }))
        ));
        catalog
            .write_cluster_manifest(&backup("b0", 50))
            .await
            .unwrap();
        let names: Vec<String> = catalog
            .backups()
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["b0", "b1"]);
        assert_eq!(catalog.backup("b1").await.unwrap(), b1);
        assert!(repo
            .head(&backup_node_key("b1", "worker1"))
            .await
            .unwrap()
            .is_some());
        // A damaged entry is named, not taken for "no backup".
        repo.put_create(&backup_key("bad"), Bytes::from_static(b"{"))
            .await
            .unwrap();
        match catalog.backup("bad").await {
            Err(Error::Corrupt { key, .. }) => assert_eq!(key, "catalog/backups/bad.json"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    fn postgres() -> Option<(u32, u32)> {
        let u = nix::unistd::User::from_name("postgres").ok()??;
        Some((u.uid.as_raw(), u.gid.as_raw()))
    }

    /// In a posix repository the servers' user writes `wal/`; catalog entries it could have
    /// written or replaced are refused, never believed.
    #[tokio::test]
    async fn a_posix_catalog_others_could_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("repo");
        let config = config(
            dir.path(),
            Some(serde_json::json!({"type": "posix", "path": root})),
        );
        trusted::ensure_dir(&root).unwrap();
        let repo: Arc<dyn Repository> =
            Arc::new(crate::repository::posix::PosixRepository::new(root.clone()));
        let catalog = Catalog::open(&config, Some(repo));
        catalog.record_restore_point(&point("rp", 1)).await.unwrap();
        let file = root.join("catalog/restore-points/rp.json");
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(catalog.restore_points().await.unwrap().len(), 1);

        let untrusted = |r: Result<Vec<RestorePoint>>, needle: &str| match r {
            Err(e @ Error::UntrustedFile { .. }) => {
                assert!(e.to_string().contains(needle), "{e}")
            }
            other => panic!("expected UntrustedFile, got {other:?}"),
        };
        // A folder anyone may write: anyone could have put entries there.
        let folder = root.join("catalog/restore-points");
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
        untrusted(
            catalog.restore_points().await,
            "writable by group or others",
        );
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).unwrap();
        // A link where an entry should be: never followed.
        let forged = dir.path().join("forged.json");
        std::fs::write(&forged, serde_json::to_vec(&point("rp-link", 3)).unwrap()).unwrap();
        std::os::unix::fs::symlink(&forged, folder.join("rp-link.json")).unwrap();
        untrusted_one(catalog.restore_point("rp-link").await);
        assert_eq!(catalog.restore_points().await.unwrap().len(), 1);
        std::fs::remove_file(folder.join("rp-link.json")).unwrap();
        let Some((uid, gid)) = postgres().filter(|_| nix::unistd::Uid::effective().is_root())
        else {
            eprintln!("the forged-owner half needs root and a postgres user");
            return;
        };
        // An entry of the servers' user (archive-push runs as it).
        std::os::unix::fs::chown(&file, Some(uid), Some(gid)).unwrap();
        untrusted(catalog.restore_points().await, &format!("uid {uid}"));
        untrusted_one(catalog.restore_point("rp").await);
        std::fs::remove_file(&file).unwrap();
        // The repository's folder itself in the servers' user's hands: it could swap catalog/.
        std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
        untrusted(catalog.restore_points().await, "chown");
        assert!(matches!(
            catalog.record_restore_point(&point("rp2", 2)).await,
            Err(Error::UntrustedFile { .. })
        ));
    }

    fn untrusted_one(r: Result<RestorePoint>) {
        assert!(
            matches!(r, Err(Error::UntrustedFile { .. })),
            "expected UntrustedFile, got {r:?}"
        );
    }

    #[test]
    fn names_become_one_key_part() {
        assert_eq!(key_part("rp-1_a"), "rp-1_a");
        assert_eq!(key_part(".."), "%2E%2E");
        assert_eq!(key_part(".tmp-x"), "%2Etmp-x");
        assert_eq!(key_part("a/b c%"), "a%2Fb%20c%25");
        assert_ne!(key_part("a%2E"), key_part("a."));
        for name in ["..", "a/b", ".tmp-1", "ü", " ", "x.json"] {
            restore_point_key(name);
        }
    }
}
