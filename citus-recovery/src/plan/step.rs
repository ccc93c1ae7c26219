//! The steps plans are made of: plain data that prints as a sentence (the dry run) and runs
//! through a [`ClusterBackend`] (the real run), so what a person reads is what is done.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use super::recovery_conf;
use crate::archiving::SpoolRemoval;
use crate::backend::{ClusterBackend, FileSync, StartWait, TablespaceTarget};
use crate::catalog::{Catalog, NodeBackup};
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::wal::Lsn;

/// A configuration parameter set with `ALTER SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parameter {
    /// The parameter's name.
    pub name: String,
    /// Its value, unquoted.
    pub value: String,
}

/// How a restore point is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestorePointFunction {
    /// `citus_create_restore_point` on the coordinator: one consistent point on every node.
    Citus,
    /// `pg_create_restore_point` on this node alone.
    Postgres,
}

/// One thing done on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Create a folder owned by the servers' user.
    CreateFolder {
        /// The folder.
        path: PathBuf,
    },
    /// `ALTER SYSTEM SET` each parameter.
    SetParameters {
        /// The parameters.
        parameters: Vec<Parameter>,
        /// What this replaces that belongs to something else (another tool's archiving), one
        /// sentence each; printed with the step so the dry run says it.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        replaces: Vec<String>,
    },
    /// `pg_reload_conf()`.
    Reload,
    /// Stop and start the server.
    Restart {
        /// The parameters that need it.
        because: Vec<String>,
    },
    /// `pg_basebackup` into a folder, wait until the WAL up to its stop LSN is archived, and write
    /// the node manifest.
    BaseBackup {
        /// The backup's name.
        backup: String,
        /// The node's backup folder.
        folder: PathBuf,
        /// The node's WAL archive.
        archive: PathBuf,
    },
    /// A base backup into the repository, checked against its `backup_manifest` as it
    /// passes: compressed by the server with zstd and stored as it comes (`by_server`), or
    /// `pg_basebackup` as one tar stream (`-X fetch`, its WAL segments left out; `-X none`
    /// when a segment was recycled) compressed here; then wait until the WAL up to its stop
    /// LSN is archived, and write the node manifest.
    BaseBackupToRepository {
        /// The backup's name.
        backup: String,
        /// The key of the `base.tar` object.
        object: String,
        /// The compression (`zstd:1`, `lz4`, `none`).
        compression: String,
        /// Whether the server compresses it ([`super::basebackup::compressed_by_server`]).
        by_server: bool,
    },
    /// Write a named restore point.
    CreateRestorePoint {
        /// Its name.
        name: String,
        /// How.
        function: RestorePointFunction,
        /// For Citus: how long each attempt may wait for its locks, and how often it is
        /// retried (from the config's `restorePointLockTimeout`/`restorePointRetries`).
        #[serde(skip_serializing_if = "Option::is_none")]
        lock_wait: Option<crate::config::RestorePointLocks>,
    },
    /// `pg_switch_wal()`, then wait until the closed segment is in the archive.
    SwitchWalAndWait {
        /// The node's WAL archive.
        archive: PathBuf,
    },
    /// Stop the server (fast shutdown).
    Stop,
    /// Rename a folder; the old data directory is kept, never deleted.
    MoveAside {
        /// What is moved.
        from: PathBuf,
        /// Where to.
        to: PathBuf,
    },
    /// Extract a base backup into a new data directory, every tablespace into a new folder of
    /// its own; `global/pg_control` is held back under a temporary name.
    Extract {
        /// The node's backup folder.
        backup: PathBuf,
        /// The new data directory.
        data_dir: PathBuf,
        /// The backup's tablespaces and the new folders they go to.
        tablespaces: Vec<TablespaceTarget>,
    },
    /// Stream a base backup from the repository into a new data directory (every tablespace
    /// into a new folder of its own), decoding, checking every file against the backup's
    /// manifest as it is written; `global/pg_control` is held back under a temporary name and
    /// `pg_wal` stays empty (recovery fetches WAL through `restore_command`).
    ExtractFromRepository {
        /// The backup's name.
        backup: String,
        /// The key of the node's folder of objects (`backups/<backup>/<node>`).
        objects: String,
        /// The new data directory.
        data_dir: PathBuf,
        /// The backup's tablespaces and the new folders they go to.
        tablespaces: Vec<TablespaceTarget>,
    },
    /// Put recovery settings into `postgresql.auto.conf`.
    WriteRecoverySettings {
        /// The file.
        file: PathBuf,
        /// Parameter and quoted value.
        settings: Vec<(String, String)>,
        /// Settings raised to what the WAL up to the restore point needs (kept after
        /// restore-finish), parameter and value.
        raised: Vec<(String, String)>,
    },
    /// Create an empty signal file (`recovery.signal`).
    CreateSignal {
        /// The file.
        path: PathBuf,
    },
    /// Make everything extracted and written durable (one `syncfs` per file system), then put
    /// `global/pg_control` in place: a directory without it cannot start, so a crash at any
    /// earlier moment can never start a server without its recovery settings.
    InstallControlFile {
        /// The new data directory.
        data_dir: PathBuf,
        /// The tablespaces' new folders.
        tablespaces: Vec<TablespaceTarget>,
    },
    /// Start the server.
    Start {
        /// Whether to wait until it accepts connections (a recovering server is watched by
        /// [`Step::WaitPaused`] instead).
        wait: bool,
    },
    /// Wait until recovery pauses at the restore point: paused, and replayed past the restore
    /// point record (a pause anywhere else is a failure).
    WaitPaused {
        /// The restore point.
        restore_point: String,
        /// Where the restore point record starts on this node, as read from its archive.
        lsn: Option<Lsn>,
    },
    /// `pg_wal_replay_resume()`: end recovery at the paused target.
    Resume,
    /// Wait until the server has left recovery and is writable.
    WaitPromoted,
    /// Remove our recovery settings from `postgresql.auto.conf` and reload.
    RemoveRecoverySettings {
        /// The file.
        file: PathBuf,
    },
    /// A fork: point every `pg_dist_node` row of this node's Citus metadata at the fork's
    /// nodes in one transaction, and refuse (rolled back) when a row names a node not moved.
    /// Nothing to do on a node without Citus metadata.
    RewriteDistNode {
        /// Every node's address in the source cluster and in the fork.
        moves: Vec<crate::fork::NodeMove>,
    },
    /// A fork: `ALTER SYSTEM RESET citus.node_conninfo` and reload, so the node may connect to
    /// other nodes again (the fork started with outbound Citus connections made impossible).
    AllowOutboundConnections,
    /// Start the archive-get prefetch worker on the node's host, as the servers' user, before
    /// the server starts: it fetches the segments replay will ask for first into the spool
    /// `<pg_wal>/citus-recovery-spool` ([`ClusterBackend::start_prefetch`]). Best effort: when
    /// it cannot start, a warning is logged and archive-get fetches each segment when asked.
    PrefetchWal {
        /// The new data directory's `pg_wal`.
        pg_wal: PathBuf,
        /// The first segment (where the backup starts).
        first: String,
        /// The last segment of the window.
        last: String,
        /// How many segments, `first` to `last`.
        count: usize,
        /// The segments' size in bytes (the backup's `wal_segment_size`).
        segment_size: u64,
    },
    /// Remove the archive-get prefetch spool `<pg_wal>/citus-recovery-spool`: only its
    /// regular files with spool names, never through a link
    /// ([`ClusterBackend::remove_spool`]). Best effort: what cannot be removed is logged.
    RemoveSpool {
        /// The data directory's `pg_wal`.
        pg_wal: PathBuf,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateFolder { path } => write!(f, "create folder {}", path.display()),
            Step::SetParameters {
                parameters,
                replaces,
            } => {
                let list: Vec<String> = parameters
                    .iter()
                    .map(|p| format!("{} = {}", p.name, recovery_conf::quote_value(&p.value)))
                    .collect();
                write!(f, "ALTER SYSTEM SET {}", list.join(", "))?;
                for r in replaces {
                    write!(f, "; {r}")?;
                }
                Ok(())
            }
            Step::Reload => write!(f, "reload the configuration (pg_reload_conf)"),
            Step::Restart { because } => {
                write!(f, "restart the server ({} change only at a restart)", because.join(", "))
            }
            Step::BaseBackup { folder, archive, .. } => write!(
                f,
                "pg_basebackup into {} (tar, WAL streamed, fast checkpoint), wait until WAL up to its stop LSN is in {}, write the node manifest",
                folder.display(),
                archive.display()
            ),
            Step::BaseBackupToRepository {
                object,
                compression,
                by_server: true,
                ..
            } => write!(
                f,
                "pg_basebackup compressed by the server ({compression}; WAL from the archive, fast checkpoint), stored as it comes into the repository as {object}, each file checked against its backup_manifest as it streams (read and freed as it grows in a staging folder beside the data directory), wait until WAL up to its stop LSN is in the repository, write the node manifest"
            ),
            Step::BaseBackupToRepository {
                object,
                compression,
                by_server: false,
                ..
            } => write!(
                f,
                "pg_basebackup as a tar stream (WAL from the archive, fast checkpoint), each file checked against its backup_manifest as it streams, compressed ({compression}) into the repository as {object} (no copy on local disk), wait until WAL up to its stop LSN is in the repository, write the node manifest"
            ),
            Step::CreateRestorePoint {
                name,
                function,
                lock_wait,
            } => match function {
                RestorePointFunction::Citus => {
                    write!(
                        f,
                        "SELECT citus_create_restore_point({}) (on every node at once, distributed commits blocked briefly)",
                        recovery_conf::quote_value(name)
                    )?;
                    if let Some(w) = lock_wait {
                        write!(
                            f,
                            " with lock_timeout {} ms (statement_timeout {} ms), retried up to {} times so writers never queue longer",
                            w.lock_timeout_ms,
                            w.lock_timeout_ms + STATEMENT_MARGIN_MS,
                            w.retries
                        )?;
                    }
                    Ok(())
                }
                RestorePointFunction::Postgres => {
                    write!(f, "SELECT pg_create_restore_point({})", recovery_conf::quote_value(name))
                }
            },
            Step::SwitchWalAndWait { archive } => write!(
                f,
                "pg_switch_wal(), wait until the closed segment is in {}",
                archive.display()
            ),
            Step::Stop => write!(f, "stop the server (fast)"),
            Step::MoveAside { from, to } => write!(
                f,
                "move {} aside to {} (kept, never deleted)",
                from.display(),
                to.display()
            ),
            Step::Extract {
                backup,
                data_dir,
                tablespaces,
            } => {
                write!(
                    f,
                    "extract {}/{{base.tar,pg_wal.tar}} into {} as the servers' user (mode 0700, global/pg_control held back)",
                    backup.display(),
                    data_dir.display()
                )?;
                for t in tablespaces {
                    write!(
                        f,
                        ", {}.tar into {} (tablespace_map rewritten)",
                        t.oid,
                        t.location.display()
                    )?;
                }
                Ok(())
            }
            Step::ExtractFromRepository {
                objects,
                data_dir,
                tablespaces,
                ..
            } => {
                write!(
                    f,
                    "stream {objects}/base.tar from the repository into {} as the servers' user, checking every file against {objects}/backup_manifest as it is written (mode 0700, global/pg_control held back, pg_wal left empty)",
                    data_dir.display()
                )?;
                for t in tablespaces {
                    write!(
                        f,
                        ", {objects}/{}.tar into {} (tablespace_map rewritten)",
                        t.oid,
                        t.location.display()
                    )?;
                }
                Ok(())
            }
            Step::InstallControlFile {
                data_dir,
                tablespaces,
            } => write!(
                f,
                "sync {}{} to disk, then put global/pg_control in place",
                data_dir.display(),
                if tablespaces.is_empty() {
                    ""
                } else {
                    " and the tablespace folders"
                }
            ),
            Step::WriteRecoverySettings {
                file,
                settings,
                raised,
            } => {
                let list = |l: &[(String, String)]| -> String {
                    l.iter()
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                write!(f, "write into {}: {}", file.display(), list(settings))?;
                if !raised.is_empty() {
                    write!(
                        f,
                        "; raise {} (the WAL up to the restore point needs them; kept after restore-finish)",
                        list(raised)
                    )?;
                }
                Ok(())
            }
            Step::CreateSignal { path } => write!(f, "create {}", path.display()),
            Step::Start { wait: true } => write!(f, "start the server"),
            Step::Start { wait: false } => write!(f, "start the server in recovery"),
            Step::WaitPaused { restore_point, lsn } => {
                write!(
                    f,
                    "wait until recovery is paused at restore point {}",
                    recovery_conf::quote_value(restore_point)
                )?;
                match lsn {
                    Some(lsn) => write!(f, " (replayed past its record at {lsn})"),
                    None => Ok(()),
                }
            }
            Step::Resume => write!(f, "SELECT pg_wal_replay_resume() (ends recovery, new timeline)"),
            Step::RewriteDistNode { moves } => {
                write!(f, "in one transaction UPDATE pg_dist_node (if Citus metadata is here):")?;
                for m in moves {
                    write!(
                        f,
                        " {} {}:{} -> {}:{};",
                        m.node, m.from_host, m.from_port, m.to_host, m.to_port
                    )?;
                }
                write!(f, " rolled back if any row names another node")
            }
            Step::AllowOutboundConnections => write!(
                f,
                "ALTER SYSTEM RESET citus.node_conninfo, pg_reload_conf() (Citus may connect to the fork's nodes now)"
            ),
            Step::WaitPromoted => write!(f, "wait until the server has left recovery and is writable"),
            Step::RemoveRecoverySettings { file } => write!(
                f,
                "remove the recovery settings from {} and reload",
                file.display()
            ),
            Step::PrefetchWal {
                pg_wal,
                first,
                last,
                count,
                ..
            } => write!(
                f,
                "start the archive-get prefetch worker as the servers' user: WAL segments {first} to {last} ({count}) from the repository into {} before the server asks for them (best effort)",
                pg_wal.join(crate::archiving::SPOOL_DIR).display()
            ),
            Step::RemoveSpool { pg_wal } => write!(
                f,
                "remove the archive-get prefetch spool {} (its regular files only, never through a link)",
                pg_wal.join(crate::archiving::SPOOL_DIR).display()
            ),
        }
    }
}

/// What a step found out, for the command's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutput {
    /// A node's part of a base backup.
    Backup(NodeBackup),
    /// A restore point was written; the LSN where the server told it.
    RestorePoint {
        /// The record's LSN, where known.
        lsn: Option<Lsn>,
    },
    /// WAL was switched and the segment archived.
    Archived {
        /// The LSN `pg_switch_wal` returned.
        lsn: Lsn,
        /// The timeline.
        timeline: u32,
        /// The archived segment's file name.
        segment: String,
    },
    /// Recovery is paused at the target.
    Paused {
        /// `pg_last_wal_replay_lsn()`.
        replay_lsn: Lsn,
    },
    /// The server left recovery.
    Promoted {
        /// Its new timeline.
        timeline: u32,
    },
}

/// Settings for running plans.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How many nodes are worked on at once (0: all).
    pub concurrency: usize,
    /// How long to wait for WAL to be archived, recovery to pause, a promotion.
    pub wait_timeout: Duration,
    /// How often to look while waiting (in a wait's first two seconds, at least every 20 ms).
    pub poll_interval: Duration,
    /// The repository of the WAL archive, when the config has one; [`crate::Cluster`] sets it
    /// (from the config's `repository`) whatever options it is given.
    pub repository: Option<std::sync::Arc<dyn crate::repository::Repository>>,
    /// Where every node's step reports its progress (see [`crate::progress`]); `None`: nowhere.
    pub progress: Option<crate::progress::ProgressSink>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            concurrency: 0,
            wait_timeout: Duration::from_secs(3600),
            poll_interval: Duration::from_millis(100),
            repository: None,
            progress: None,
        }
    }
}

impl Step {
    /// Runs the step on `node`.
    pub async fn run(
        &self,
        backend: &dyn ClusterBackend,
        node: &NodeConfig,
        opts: &RunOptions,
    ) -> Result<Option<StepOutput>> {
        match self {
            Step::CreateFolder { path } => backend.create_dir(node, path).await.map(|_| None),
            Step::SetParameters { parameters, .. } => {
                let client = backend.connect(node).await?;
                for p in parameters {
                    if let Some((module, _)) = p.name.split_once('.') {
                        // A module's parameters are unknown to ALTER SYSTEM until it is loaded.
                        let load = format!("LOAD {}", recovery_conf::quote_value(module));
                        client
                            .batch_execute(&load)
                            .await
                            .map_err(|e| Error::sql(&node.name, format!("LOAD {module}"), e))?;
                    }
                    // ALTER SYSTEM takes no parameters: the server quotes the name and value.
                    let row = client
                        .query_one(
                            "SELECT format('ALTER SYSTEM SET %I = %L', $1::text, $2::text)",
                            &[&p.name, &p.value],
                        )
                        .await
                        .map_err(|e| Error::sql(&node.name, "quote ALTER SYSTEM", e))?;
                    let statement: String = row.get(0);
                    client
                        .batch_execute(&statement)
                        .await
                        .map_err(|e| Error::sql(&node.name, format!("set {}", p.name), e))?;
                }
                Ok(None)
            }
            Step::Reload => run_sql(backend, node, "reload", "SELECT pg_reload_conf()")
                .await
                .map(|_| None),
            Step::Restart { .. } => {
                backend.stop(node).await?;
                backend
                    .start(node, StartWait::UntilReady)
                    .await
                    .map(|_| None)
            }
            Step::BaseBackup {
                backup,
                folder,
                archive,
            } => base_backup(backend, node, backup, Some(folder), archive, opts)
                .await
                .map(Some),
            Step::BaseBackupToRepository { backup, .. } => base_backup(
                backend,
                node,
                backup,
                None,
                &config_archive(backend, node),
                opts,
            )
            .await
            .map(Some),
            Step::CreateRestorePoint {
                name,
                function,
                lock_wait,
            } => {
                let client = backend.connect(node).await?;
                let lsn = match function {
                    RestorePointFunction::Citus => {
                        let wait = lock_wait.unwrap_or_default();
                        citus_restore_point(&client, node, name, wait).await?
                    }
                    RestorePointFunction::Postgres => client
                        .query_one("SELECT pg_create_restore_point($1)::text", &[name])
                        .await
                        .map_err(|e| Error::sql(&node.name, "create restore point", e))?
                        .get(0),
                };
                Ok(Some(StepOutput::RestorePoint {
                    lsn: lsn.parse().ok(),
                }))
            }
            Step::SwitchWalAndWait { archive } => {
                let (client, row) = one_row(
                    backend,
                    node,
                    "pg_switch_wal",
                    "SELECT lsn::text, pg_walfile_name(lsn) FROM pg_switch_wal() AS lsn",
                    &[],
                )
                .await?;
                let (lsn, segment): (String, String) = (row.get(0), row.get(1));
                wait_archived(backend, &client, node, archive, &segment, opts).await?;
                Ok(Some(StepOutput::Archived {
                    lsn: parse_lsn(node, &lsn)?,
                    timeline: timeline_of(&segment),
                    segment,
                }))
            }
            Step::Stop => backend.stop(node).await.map(|_| None),
            Step::MoveAside { from, to } => backend.rename(node, from, to).await.map(|_| None),
            Step::Extract {
                backup,
                data_dir,
                tablespaces,
            } => {
                for parent in tablespaces.iter().filter_map(|t| t.location.parent()) {
                    backend.create_dir(node, parent).await?;
                }
                backend
                    .extract_backup(node, backup, data_dir, tablespaces)
                    .await
                    .map(|_| None)
            }
            Step::ExtractFromRepository {
                backup,
                data_dir,
                tablespaces,
                ..
            } => {
                for parent in tablespaces.iter().filter_map(|t| t.location.parent()) {
                    backend.create_dir(node, parent).await?;
                }
                let repo = opts.repository.as_deref().ok_or_else(|| {
                    no_repository(backend, "restore a backup stored in the repository")
                })?;
                super::basebackup::extract_from_repository(
                    backend,
                    repo,
                    node,
                    backup,
                    data_dir,
                    tablespaces,
                )
                .await
                .map(|_| None)
            }
            Step::InstallControlFile {
                data_dir,
                tablespaces,
            } => backend
                .install_control_file(node, data_dir, tablespaces)
                .await
                .map(|_| None),
            Step::WriteRecoverySettings {
                file,
                settings,
                raised,
            } => {
                let old = backend.read_file(node, file).await?.unwrap_or_default();
                let new = recovery_conf::apply(&old, settings, raised);
                backend
                    .write_file(node, file, new.as_bytes(), FileSync::Later)
                    .await
                    .map(|_| None)
            }
            Step::CreateSignal { path } => backend
                .write_file(node, path, b"", FileSync::Later)
                .await
                .map(|_| None),
            Step::Start { wait } => {
                let wait = if *wait {
                    StartWait::UntilReady
                } else {
                    StartWait::NoWait
                };
                backend.start(node, wait).await.map(|_| None)
            }
            Step::WaitPaused { restore_point, lsn } => {
                super::wait::paused(backend, node, restore_point, *lsn, opts)
                    .await
                    .map(Some)
            }
            Step::Resume => run_sql(
                backend,
                node,
                "pg_wal_replay_resume",
                "SELECT pg_wal_replay_resume()",
            )
            .await
            .map(|_| None),
            Step::WaitPromoted => super::wait::promoted(backend, node, opts).await.map(Some),
            Step::RewriteDistNode { moves } => crate::fork::rewrite_dist_node(backend, node, moves)
                .await
                .map(|_| None),
            Step::AllowOutboundConnections => {
                let client = backend.connect(node).await?;
                client
                    .batch_execute("ALTER SYSTEM RESET citus.node_conninfo")
                    .await
                    .map_err(|e| Error::sql(&node.name, "reset citus.node_conninfo", e))?;
                client
                    .batch_execute("SELECT pg_reload_conf()")
                    .await
                    .map_err(|e| Error::sql(&node.name, "reload", e))?;
                Ok(None)
            }
            Step::RemoveRecoverySettings { file } => {
                if let Some(old) = backend.read_file(node, file).await? {
                    if recovery_conf::has_block(&old) {
                        let new = recovery_conf::strip_block(&old);
                        backend
                            .write_file(node, file, new.as_bytes(), FileSync::Now)
                            .await?;
                    }
                }
                run_sql(backend, node, "reload", "SELECT pg_reload_conf()")
                    .await
                    .map(|_| None)
            }
            Step::PrefetchWal {
                pg_wal,
                first,
                count,
                segment_size,
                ..
            } => {
                if let Err(e) = backend
                    .start_prefetch(node, pg_wal, first, *count, *segment_size)
                    .await
                {
                    tracing::warn!(
                        "node {}: no WAL prefetch before the start, archive-get fetches each segment when asked: {e}",
                        node.name
                    );
                }
                Ok(None)
            }
            Step::RemoveSpool { pg_wal } => {
                let spool = pg_wal.join(crate::archiving::SPOOL_DIR);
                let left = match backend.remove_spool(node, pg_wal).await {
                    Ok(SpoolRemoval::Absent | SpoolRemoval::Removed) => None,
                    Ok(SpoolRemoval::Busy) => {
                        Some("a prefetch worker still runs there; remove it once it ended".into())
                    }
                    Ok(SpoolRemoval::Foreign(names)) => Some(format!(
                        "it holds entries that are not the spool's ({}); look at them and remove the folder by hand",
                        names.join(", ")
                    )),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = left {
                    tracing::warn!(
                        "node {}: the prefetch spool {} is left: {why}",
                        node.name,
                        spool.display()
                    );
                }
                Ok(None)
            }
        }
    }
}

/// Connects to `node` and runs one statement that returns one row.
async fn one_row(
    backend: &dyn ClusterBackend,
    node: &NodeConfig,
    action: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(tokio_postgres::Client, tokio_postgres::Row)> {
    let client = backend.connect(node).await?;
    let row = client
        .query_one(sql, params)
        .await
        .map_err(|e| Error::sql(&node.name, action, e))?;
    Ok((client, row))
}

/// Connects to `node` and runs one parameterless statement for its effect.
async fn run_sql(
    backend: &dyn ClusterBackend,
    node: &NodeConfig,
    action: &str,
    sql: &str,
) -> Result<()> {
    one_row(backend, node, action, sql, &[]).await.map(|_| ())
}

/// Parses an LSN the server printed.
pub(crate) fn parse_lsn(node: &NodeConfig, text: &str) -> Result<Lsn> {
    text.parse().map_err(|_| {
        Error::node(
            &node.name,
            "read an LSN",
            format!("the server returned {text:?}"),
        )
    })
}

/// The timeline in a WAL segment file name (its first eight hex digits).
pub(crate) fn timeline_of(segment: &str) -> u32 {
    segment
        .get(..8)
        .and_then(|t| u32::from_str_radix(t, 16).ok())
        .unwrap_or(0)
}

async fn base_backup(
    backend: &dyn ClusterBackend,
    node: &NodeConfig,
    backup: &str,
    folder: Option<&std::path::Path>,
    archive: &std::path::Path,
    opts: &RunOptions,
) -> Result<StepOutput> {
    let (client, row) = one_row(
        backend,
        node,
        "read server settings",
        "SELECT current_setting('server_version'), setting::bigint, (SELECT system_identifier FROM pg_control_system()), \
         current_setting('max_connections')::int, current_setting('max_worker_processes')::int, \
         current_setting('max_wal_senders')::int, current_setting('max_prepared_transactions')::int, \
         current_setting('max_locks_per_transaction')::int \
         FROM pg_settings WHERE name = 'wal_segment_size'",
        &[],
    )
    .await?;
    let (pg_version, seg_size, system_id): (String, i64, i64) =
        (row.get(0), row.get(1), row.get(2));
    let setting = |i: usize| u32::try_from(row.get::<_, i32>(i)).unwrap_or(0);
    let hot_standby = crate::wal::HotStandbyParameters {
        max_connections: setting(3),
        max_worker_processes: setting(4),
        max_wal_senders: setting(5),
        max_prepared_xacts: setting(6),
        max_locks_per_xact: setting(7),
    };
    let start_time = Utc::now();
    let started = Instant::now();
    // Without a folder the backup goes into the repository.
    let taken = async {
        Ok::<_, Error>(match folder {
            Some(folder) => {
                let files = backend.base_backup(node, folder, backup).await?;
                let manifest_path = folder.join("backup_manifest");
                let manifest = backend
                    .read_file(node, &manifest_path)
                    .await?
                    .ok_or_else(|| {
                        Error::node(
                            &node.name,
                            "pg_basebackup",
                            format!("it wrote no {}", manifest_path.display()),
                        )
                    })?;
                let place = manifest_path.display().to_string();
                (files.bytes, files.tablespaces, manifest, place)
            }
            None => {
                let repo = opts
                    .repository
                    .as_deref()
                    .ok_or_else(|| no_repository(backend, "take a backup into the repository"))?;
                // Without WAL in the stream, the server ends the backup only once the WAL it needs
                // is archived: when archiving is stuck, fail rather than wait for ever. Dropping
                // the stream stops pg_basebackup and leaves nothing visible in the repository.
                let stored = tokio::select! {
                    stored = super::basebackup::into_repository(backend, repo, node, backup, &client) => stored?,
                    stuck = archiving_stuck(backend, &client, node, opts) => return Err(stuck),
                };
                (
                    stored.bytes,
                    stored.tablespaces,
                    stored.manifest,
                    stored.manifest_key,
                )
            }
        })
    };
    let (bytes, tablespaces, manifest, manifest_place) =
        crate::progress::base_backup(&client, taken).await?;
    // The real size, which the server's estimate only approached: the step ends at 100% of it.
    crate::progress::update(crate::progress::ProgressUnit::Bytes, bytes, Some(bytes));
    let (start_lsn, end_lsn, timeline) = wal_range(&manifest).ok_or_else(|| {
        Error::node(
            &node.name,
            "read backup_manifest",
            format!("{manifest_place} has no usable WAL-Ranges"),
        )
    })?;
    let segment =
        crate::wal::segment_file_name(timeline, Lsn(end_lsn.0.saturating_sub(1)), seg_size as u64);
    let streamed = started.elapsed();
    wait_archived(backend, &client, node, archive, &segment, opts).await?;
    let archived = started.elapsed();
    let node_backup = NodeBackup {
        backup: backup.to_string(),
        node: node.name.clone(),
        start_lsn,
        end_lsn,
        timeline,
        start_time,
        end_time: Utc::now(),
        pg_version,
        bytes,
        // A uint64 shown through a signed bigint: the bits are the identifier.
        system_identifier: Some(system_id as u64),
        hot_standby: Some(hot_standby),
        tablespaces,
        wal_segment_size: u64::try_from(seg_size).ok(),
    };
    Catalog::open(backend.config(), opts.repository.clone())
        .write_node_manifest(&node_backup)
        .await?;
    // Where a backup's time goes, for anyone comparing it with pg_basebackup's alone.
    tracing::debug!(
        streamed_ms = streamed.as_millis() as u64,
        archived_ms = archived.as_millis() as u64,
        recorded_ms = started.elapsed().as_millis() as u64,
        "base backup stored, its last WAL segment {segment} archived, and its node manifest written"
    );
    Ok(StepOutput::Backup(node_backup))
}

/// Returns (an error saying why) once the node's archiver has failed for six checks in a row
/// (half a minute at least) or archiving is off; never returns while archiving works.
async fn archiving_stuck(
    backend: &dyn ClusterBackend,
    client: &tokio_postgres::Client,
    node: &NodeConfig,
    opts: &RunOptions,
) -> Error {
    let mut failing_checks = 0;
    let check_every = Duration::from_secs(5).max(opts.poll_interval);
    loop {
        tokio::time::sleep(check_every).await;
        let row = match client
            .query_one(
                "SELECT failed_count, coalesce(last_failed_wal, ''), current_setting('archive_mode'), \
                 coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false) FROM pg_stat_archiver",
                &[],
            )
            .await
        {
            Ok(row) => row,
            Err(e) => return Error::sql(&node.name, "read pg_stat_archiver", e),
        };
        let (failed, last_failed, mode, failing): (i64, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        failing_checks = if failing { failing_checks + 1 } else { 0 };
        if mode == "off" || failing_checks >= 6 {
            return Error::node(
                &node.name,
                "base backup",
                format!(
                    "WAL archiving fails (archive_mode = {mode}, {failed} failure(s), last failed {last_failed:?}), and PostgreSQL ends a backup only once its WAL is archived, so the backup was stopped and nothing of it is kept; make archiving work (is the repository reachable?) and take the backup again:\n{}",
                    backend.log_tail(node, 10).await
                ),
            );
        }
    }
}

/// The node's archive folder (unused with a repository, where WAL is looked up by node).
fn config_archive(backend: &dyn ClusterBackend, node: &NodeConfig) -> PathBuf {
    backend.config().archive_dir(node)
}

/// The error of a repository step run without the config's repository.
fn no_repository(backend: &dyn ClusterBackend, what: &str) -> Error {
    Error::Config {
        path: backend.config().source.clone(),
        field: "repository".into(),
        problem: format!("is not set, so nothing can {what}"),
        fix: "run the plan through citus_recovery::Cluster, which opens the config's repository"
            .into(),
    }
}

/// The WAL range of a backup from PostgreSQL's `backup_manifest`: first start, last end, and the
/// timeline of the last range.
pub(crate) fn wal_range(manifest: &str) -> Option<(Lsn, Lsn, u32)> {
    let json: serde_json::Value = serde_json::from_str(manifest).ok()?;
    let ranges = json.get("WAL-Ranges")?.as_array()?;
    let first = ranges.first()?;
    let last = ranges.last()?;
    let start = first.get("Start-LSN")?.as_str()?.parse().ok()?;
    let end = last.get("End-LSN")?.as_str()?.parse().ok()?;
    let timeline = u32::try_from(last.get("Timeline")?.as_u64()?).ok()?;
    Some((start, end, timeline))
}

/// Waits until `segment` is in the node's archive; fails early, quoting `pg_stat_archiver`, when
/// the server reports that archiving it fails.
async fn wait_archived(
    backend: &dyn ClusterBackend,
    client: &tokio_postgres::Client,
    node: &NodeConfig,
    archive: &std::path::Path,
    segment: &str,
    opts: &RunOptions,
) -> Result<()> {
    crate::progress::message(format!("waiting until WAL segment {segment} is archived"));
    let target = archive.join(segment);
    // With a repository, archive-push puts it there, not in the folder.
    let place = match &opts.repository {
        Some(repo) => format!("the repository ({})", repo.describe()),
        None => archive.display().to_string(),
    };
    let started = Instant::now();
    let mut last_check = Instant::now();
    // A single failed attempt may be passing (the archiver retries). Archiving goes in order, so a
    // failing segment, ours or an earlier one, blocks ours: six checks in a row (half a minute)
    // that find the archiver failing mean it is stuck.
    let mut failing_checks = 0;
    // The folder may be unreadable for a while (the servers' user looks): the archiver fails
    // then too, and pg_stat_archiver below decides when to give up.
    let mut look_error = None;
    loop {
        let found = match &opts.repository {
            Some(repo) => crate::archiving::is_archived(repo.as_ref(), &node.name, segment).await,
            None => backend.exists(node, &target).await,
        };
        crate::progress::tick();
        let unreadable = found.is_err();
        match found {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => look_error = Some(e.to_string()),
        }
        if last_check.elapsed() > Duration::from_secs(5) || started.elapsed() > opts.wait_timeout {
            last_check = Instant::now();
            let row = client
                .query_one(
                    "SELECT failed_count, coalesce(last_failed_wal, ''), coalesce(last_archived_wal, ''), current_setting('archive_mode'), \
                     coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false) FROM pg_stat_archiver",
                    &[],
                )
                .await
                .map_err(|e| Error::sql(&node.name, "read pg_stat_archiver", e))?;
            let (failed, last_failed, last_archived, mode, failing): (
                i64,
                String,
                String,
                String,
                bool,
            ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            if failing {
                failing_checks += 1;
            } else {
                failing_checks = 0;
            }
            // The server archived it (or a later file: a segment, or the `.backup` file that
            // follows it) and we still cannot look: waiting cannot help (for example an admin
            // who may not read the servers' user's files).
            if unreadable
                && last_archived
                    .get(..segment.len())
                    .is_some_and(|f| f >= segment)
            {
                return Err(Error::node(
                    &node.name,
                    format!("archive WAL segment {segment}"),
                    format!(
                        "the server archived {last_archived:?}, but this host cannot look for {segment} in {place}: {}; \
                         the user running citus-recovery must be able to read what the servers' user writes there: \
                         with a shared posix folder run it as that user (the same uid as on the node hosts) or as root, or use an S3 repository",
                        look_error.as_deref().unwrap_or_default()
                    ),
                ));
            }
            let stuck = mode == "off" || failing_checks >= 6;
            if stuck || started.elapsed() > opts.wait_timeout {
                return Err(Error::node(
                    &node.name,
                    format!("archive WAL segment {segment}"),
                    format!(
                        "{} is not in {} after {:?}: archive_mode = {mode}, last archived {last_archived:?}, {failed} failure(s), last failed {last_failed:?}{}; \
                         check the server log and that prepare-archiving ran:\n{}",
                        segment,
                        place,
                        started.elapsed(),
                        look_error
                            .as_ref()
                            .map(|e| format!(" (looking for it: {e})"))
                            .unwrap_or_default(),
                        backend.log_tail(node, 10).await
                    ),
                ));
            }
        }
        // The segment was switched just now and archiving one takes tens of milliseconds.
        tokio::time::sleep(pace(opts, started)).await;
    }
}

/// How long a wait begun at `started` sleeps between looks: [`FAST_POLL`] during its first
/// [`FAST_POLL_FOR`], then the configured pace. What is waited for (a segment archived, a
/// server paused) often comes within tens of milliseconds, and the whole restore waits on the
/// slowest node's look.
pub(super) fn pace(opts: &RunOptions, started: Instant) -> Duration {
    if started.elapsed() < FAST_POLL_FOR {
        opts.poll_interval.min(FAST_POLL)
    } else {
        opts.poll_interval
    }
}

/// How often a wait looks during its first [`FAST_POLL_FOR`] (see [`pace`]).
const FAST_POLL: Duration = Duration::from_millis(20);

/// See [`FAST_POLL`].
const FAST_POLL_FOR: Duration = Duration::from_secs(2);

/// What `statement_timeout` allows a restore point beyond its `lock_timeout`: the work itself
/// (a connection to every node and a WAL record on each) takes milliseconds.
const STATEMENT_MARGIN_MS: u64 = 2000;

/// `citus_create_restore_point(name)` with a bounded lock wait: each attempt sets
/// `lock_timeout`, so it never queues distributed commits behind a long transaction for longer;
/// a lock timeout (SQLSTATE 55P03) is retried after [`crate::config::RestorePointLocks::backoff`],
/// any other error ends it. Returns the LSN as text.
async fn citus_restore_point(
    client: &tokio_postgres::Client,
    node: &NodeConfig,
    name: &str,
    wait: crate::config::RestorePointLocks,
) -> Result<String> {
    // lock_timeout bounds the coordinator's own lock waits; with metadata on the workers (MX)
    // Citus also locks there over its own connections, which this session's lock_timeout does
    // not reach: statement_timeout bounds those waits (Citus cancels the remote commands).
    client
        .batch_execute(&format!(
            "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
            wait.lock_timeout_ms,
            wait.lock_timeout_ms + STATEMENT_MARGIN_MS
        ))
        .await
        .map_err(|e| Error::sql(&node.name, "set lock_timeout", e))?;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match client
            .query_one("SELECT citus_create_restore_point($1)::text", &[&name])
            .await
        {
            Ok(row) => return Ok(row.get(0)),
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
                    || e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) =>
            {
                let detail = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_string());
                if attempt > wait.retries {
                    return Err(Error::RestorePointLockTimeout {
                        name: name.to_string(),
                        node: node.name.clone(),
                        lock_timeout_ms: wait.lock_timeout_ms,
                        attempts: attempt,
                        detail,
                    });
                }
                tracing::warn!(
                    attempt,
                    "citus_create_restore_point: {detail}; retrying after a pause so queued writers go first"
                );
                tokio::time::sleep(wait.backoff(attempt)).await;
            }
            Err(e) => return Err(Error::sql(&node.name, "create restore point", e)),
        }
    }
}
