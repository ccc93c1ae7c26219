//! What the plans need of the nodes: the [`ClusterBackend`] trait and its implementations.
//!
//! A backend knows how to reach a node's server (SQL), how to run its server-side programs
//! (start, stop, `pg_basebackup`) and how to do the file work on the node's host (move a data
//! directory aside, extract a backup, write recovery settings). Plans hold no I/O of their own:
//! they are executed through a `&dyn ClusterBackend`. [`LocalBackend`] serves nodes on this host, [`SshBackend`] nodes on
//! other hosts.

#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod local;
mod ssh;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{ClusterConfig, NodeConfig};
use crate::error::Result;

pub use local::{LocalBackend, PENDING_CONTROL_FILE};
pub use ssh::{node_side, SshBackend};

/// Whether a node's server is running, as its data directory and process tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// The postmaster is running.
    Running,
    /// The data directory exists but no server runs on it.
    Stopped,
    /// There is no data directory.
    Missing,
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerState::Running => "running",
            ServerState::Stopped => "stopped",
            ServerState::Missing => "no data directory",
        })
    }
}

/// How `start` waits for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartWait {
    /// Until it accepts connections.
    UntilReady,
    /// Not at all: the caller watches the server itself (a recovering server may take long to
    /// accept connections, and may also stop before it ever does).
    NoWait,
}

/// What a base backup of one node wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFiles {
    /// The folder holding `base.tar`, `pg_wal.tar` and `backup_manifest`.
    pub folder: PathBuf,
    /// Total bytes written.
    pub bytes: u64,
    /// The oids of the user tablespaces it holds (one `<oid>.tar` each), in ascending order.
    pub tablespaces: Vec<u32>,
}

/// Which WAL a streamed base backup ([`ClusterBackend::base_backup_stream`]) carries, and so
/// whether the server waits for the archive before it ends the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamedWal {
    /// `-X fetch`: the WAL from the backup's start to its stop comes in the tar under `pg_wal/`
    /// (a reader drops it: the archive has it), and pg_basebackup asks the server not to wait
    /// for the archive (`NOWAIT`), so the caller must wait for the last segment itself. Fails
    /// ("requested WAL segment ... has already been removed") when a checkpoint recycled a
    /// segment during the backup.
    Fetch,
    /// `-X none`: no WAL in the tar; the server ends the backup only once its last segment is
    /// archived, checking once a second.
    None,
}

/// A base backup being written as one tar into a pipe ([`ClusterBackend::base_backup_stream`]).
pub struct BackupStream {
    /// The tar, to be read on a blocking thread: the data directory's files, then PostgreSQL's
    /// `backup_manifest` as the last member.
    pub tar: Box<dyn std::io::Read + Send>,
    /// Resolves once the program has exited: `Ok` only if it succeeded (its error quotes the
    /// program's messages). Dropping it unfinished stops the program.
    pub done: futures::future::BoxFuture<'static, Result<()>>,
}

impl std::fmt::Debug for BackupStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupStream").finish_non_exhaustive()
    }
}

/// The tars of a backup as streams, for [`ClusterBackend::extract_backup_streams`]: each is
/// read on a blocking thread, and each has a name for messages (the repository key).
pub struct TarStreams {
    /// `base.tar`: its name and its reader.
    pub base: (String, Box<dyn std::io::Read + Send>),
    /// Each tablespace's `<oid>.tar`, by oid.
    pub tablespaces: Vec<(u32, String, Box<dyn std::io::Read + Send>)>,
    /// PostgreSQL's `backup_manifest` of the backup: every file is checked against it while it
    /// is written.
    pub manifest: Vec<u8>,
}

impl std::fmt::Debug for TarStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarStreams")
            .field("base", &self.base.0)
            .finish_non_exhaustive()
    }
}

/// A tablespace of a backup and the new folder it is restored into.
///
/// `oid` names the backup's `<oid>.tar`; `location` is a folder that must not exist yet (its
/// parent must), never the live tablespace's folder: the restored `tablespace_map` points there,
/// so WAL replay writes only into the copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TablespaceTarget {
    /// The tablespace's oid.
    pub oid: u32,
    /// The new folder it is extracted into.
    pub location: PathBuf,
}

/// How durable [`ClusterBackend::write_file`] makes a file before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSync {
    /// Synced before returning: the file, then its folder after the rename.
    Now,
    /// Renamed into place atomically but not synced: the caller syncs the whole data directory
    /// later ([`ClusterBackend::install_control_file`] does).
    Later,
}

/// The nodes as the plans see them.
///
/// Contract: every method works on one node (or one path on that node's host) and is safe to call
/// for several nodes at once. Paths are the ones the config gives (`data_dir`, `archive_dir`);
/// files and folders a backend creates belong to the servers' OS user. Errors name the node.
///
/// Every file operation on a node's host is done with the servers' user's rights (never root's,
/// so a link or file that user planted cannot lead the library anywhere that user could not go
/// itself), and the last component of a path is never followed when it is a symbolic link: that
/// is an error naming the path.
#[async_trait]
pub trait ClusterBackend: Send + Sync {
    /// The validated configuration this backend serves.
    fn config(&self) -> &ClusterConfig;

    /// Connects to the node's database as its configured superuser.
    async fn connect(&self, node: &NodeConfig) -> Result<tokio_postgres::Client>;

    /// Whether the node's server is running.
    async fn server_state(&self, node: &NodeConfig) -> Result<ServerState>;

    /// Creates the node's data directory (`initdb`, trust authentication on localhost) and appends
    /// `settings` to its `postgresql.conf`.
    async fn init_node(&self, node: &NodeConfig, settings: &[(String, String)]) -> Result<()>;

    /// Like [`Self::init_node`] for a node whose server is reached from another host: `initdb`
    /// sets the superuser's `password` (scram-sha-256) and admits only peer connections on the
    /// host's socket and passwords over TCP, so no one is trusted even before the first start.
    /// The password never appears on a command line or in a file. Only [`SshBackend`] has it.
    async fn init_node_with_password(
        &self,
        node: &NodeConfig,
        settings: &[(String, String)],
        password: &crate::connect::passfile::Secret,
    ) -> Result<()> {
        let _ = (settings, password);
        Err(crate::error::Error::node(
            &node.name,
            "initdb",
            "this node host cannot set the password at initdb; use cluster create on this host",
        ))
    }

    /// Starts the node's server.
    async fn start(&self, node: &NodeConfig, wait: StartWait) -> Result<()>;

    /// Stops the node's server (fast shutdown), waiting until it is down.
    async fn stop(&self, node: &NodeConfig) -> Result<()>;

    /// Takes a base backup of the node into `folder` (made by the servers' user when missing; it
    /// must be empty; missing parents are made too): tar format,
    /// WAL streamed, fast checkpoint, with PostgreSQL's `backup_manifest`.
    async fn base_backup(
        &self,
        node: &NodeConfig,
        folder: &Path,
        label: &str,
    ) -> Result<BackupFiles>;

    /// Extracts the base backup in `backup` into `data_dir`, which must not exist (its parent
    /// must, writable by the servers' user, as must the parent of each tablespace location); the
    /// result belongs to the servers' user, the data directory has mode 0700.
    ///
    /// `base.tar` goes into `data_dir`, `pg_wal.tar` into its `pg_wal`, and each `<oid>.tar` into
    /// the location `tablespaces` gives for that oid (a new folder); the backup's set of
    /// `<oid>.tar` files must equal `tablespaces`, and the restored `tablespace_map` names the new
    /// locations. Only regular files and folders are written (never through a link); any other
    /// entry, a hard link, a path leaving its folder or a setuid/setgid/sticky mode is an error
    /// naming the tar and the entry. Nothing is synced (each file's writeback is only started
    /// as it is written, so that the later sync has little left), and `global/pg_control` is
    /// written under the name [`PENDING_CONTROL_FILE`] so that the directory cannot start until
    /// [`Self::install_control_file`].
    async fn extract_backup(
        &self,
        node: &NodeConfig,
        backup: &Path,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<()>;

    /// Starts a base backup of the node written as one tar into a pipe (`pg_basebackup -D -
    /// -Ft -X <wal> -c fast --manifest-checksums=CRC32C`): nothing is written on the node's
    /// host, and the backup's WAL must come from the archive (`wal` only decides whether the
    /// server waits for it, see [`StreamedWal`]). PostgreSQL refuses this for a node with user
    /// tablespaces. The default refuses: a backend that cannot do it says so.
    async fn base_backup_stream(
        &self,
        node: &NodeConfig,
        label: &str,
        wal: StreamedWal,
    ) -> Result<BackupStream> {
        let _ = (label, wal);
        Err(crate::error::Error::node(
            &node.name,
            "pg_basebackup",
            "this backend cannot stream a base backup; use a backup folder (no \"repository\")",
        ))
    }

    /// Starts a base backup of the node compressed by the server with zstd at `level`, so the
    /// tar never crosses the connection uncompressed and is never compressed again
    /// (`pg_basebackup -Ft -X stream --compress=server-zstd:<level> --no-sync -D <folder>`;
    /// `folder` is made as for [`Self::base_backup`]). pg_basebackup writes it only into a
    /// folder: [`BackupStream::tar`] gives the bytes of `base.tar.zst` (a zstd stream, not a
    /// tar) as they are written, and frees from the disk what it has read, so the folder never
    /// holds the whole backup. The WAL pg_basebackup streams into `pg_wal.tar` beside it is not
    /// needed (the archive has it). Once `done` resolved, the caller reads `backup_manifest`
    /// from `folder` and removes the folder's files. PostgreSQL 15 or newer, built with zstd,
    /// and no user tablespaces. The default refuses: a backend that cannot do it says so.
    async fn base_backup_server_zstd(
        &self,
        node: &NodeConfig,
        folder: &Path,
        label: &str,
        level: i32,
    ) -> Result<BackupStream> {
        let _ = (folder, label, level);
        Err(crate::error::Error::node(
            &node.name,
            "pg_basebackup",
            "this backend cannot take a base backup compressed by the server",
        ))
    }

    /// The fallback of [`Self::base_backup_stream`] for a node with user tablespaces, which
    /// PostgreSQL cannot write as one stream: a base backup into `folder` (made as for
    /// [`Self::base_backup`]) as zstd-compressed tars (`base.tar.zst`, one `<oid>.tar.zst` per
    /// tablespace; `pg_basebackup -Ft -X none --compress=client-zstd:1`) beside
    /// `backup_manifest`, so that no uncompressed copy is written. `BackupFiles::tablespaces`
    /// lists the oids.
    async fn base_backup_staged(
        &self,
        node: &NodeConfig,
        folder: &Path,
        label: &str,
    ) -> Result<BackupFiles> {
        let _ = (folder, label);
        Err(crate::error::Error::node(
            &node.name,
            "pg_basebackup",
            "this backend cannot stage a compressed base backup",
        ))
    }

    /// Opens a regular file on the node's host for reading, as the servers' user; a link is an
    /// error. The reader is read on a blocking thread.
    async fn open_read(
        &self,
        node: &NodeConfig,
        path: &Path,
    ) -> Result<Box<dyn std::io::Read + Send>> {
        let _ = path;
        Err(crate::error::Error::node(
            &node.name,
            "open a file",
            "this backend cannot read files on the node's host",
        ))
    }

    /// Removes an empty folder on the node's host (the staging folder of
    /// [`Self::base_backup_staged`], once uploaded); a link is an error.
    async fn remove_empty_dir(&self, node: &NodeConfig, path: &Path) -> Result<()> {
        let _ = path;
        Err(crate::error::Error::node(
            &node.name,
            "remove a folder",
            "this backend cannot remove folders",
        ))
    }

    /// Like [`Self::extract_backup`], from tar streams instead of a backup folder, and checking
    /// every file against `tars.manifest` as it is written (a file differing from the
    /// manifest, one it lacks or one it does not list fails the extraction, naming the tar and
    /// the file). No `pg_wal.tar`: `pg_wal` stays empty and recovery fetches WAL through
    /// `restore_command`. A top-level `backup_manifest` member of `base.tar` is not written.
    async fn extract_backup_streams(
        &self,
        node: &NodeConfig,
        tars: TarStreams,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<()> {
        let _ = (tars, data_dir, tablespaces);
        Err(crate::error::Error::node(
            &node.name,
            "extract backup",
            "this backend cannot extract a backup from the repository",
        ))
    }

    /// Takes the node's base backup into the config's repository on the node's host itself
    /// (as [`crate::plan::StoredBackup`] describes; its `manifest` may hold only the
    /// `WAL-Ranges`), so its bytes never pass through this process. `Ok(None)`: this backend
    /// does not; the caller streams the backup through this process instead.
    async fn backup_to_repository_on_host(
        &self,
        node: &NodeConfig,
        backup: &str,
    ) -> Result<Option<crate::plan::StoredBackup>> {
        let _ = (node, backup);
        Ok(None)
    }

    /// Restores the node's part of `backup` from the config's repository into `data_dir` on the
    /// node's host itself, as [`Self::extract_backup_streams`] describes. `Ok(false)`: this
    /// backend does not; the caller streams the backup through this process instead.
    async fn restore_from_repository_on_host(
        &self,
        node: &NodeConfig,
        backup: &str,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<bool> {
        let _ = (node, backup, data_dir, tablespaces);
        Ok(false)
    }

    /// Checks what the node's host needs to run this tool's commands itself (its
    /// `archive_command`/`restore_command`, and over SSH its base backups and restores): the
    /// config's `binary` there, of this library's version, and the config file at the same path.
    /// The error says what to install or copy, where. Nodes on this host need nothing: `Ok`.
    async fn check_node_tools(&self, node: &NodeConfig) -> Result<()> {
        let _ = node;
        Ok(())
    }

    /// The bytes free for the servers' user in the file system holding `path` on the node's host
    /// (its nearest existing folder when it does not exist). `Ok(None)`: this backend's nodes are
    /// on this host, where the caller looks itself.
    async fn free_space(&self, node: &NodeConfig, path: &Path) -> Result<Option<u64>> {
        let _ = (node, path);
        Ok(None)
    }

    /// Makes an extracted data directory startable, as its last step: syncs every filesystem
    /// holding `data_dir` or a tablespace location, renames [`PENDING_CONTROL_FILE`] to
    /// `global/pg_control` (never replacing one), and syncs `global/`. Idempotent: with no pending
    /// file and a `pg_control` in place it only syncs `global/`; with neither it is an error.
    async fn install_control_file(
        &self,
        node: &NodeConfig,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<()>;

    /// Creates a folder (and missing parents) on the node's host, owned by the servers' user,
    /// mode 0700. A missing folder is created as that user, or, inside a folder only root can
    /// change, by root and handed to the user. An existing folder is accepted; an existing link
    /// or file is an error.
    async fn create_dir(&self, node: &NodeConfig, path: &Path) -> Result<()>;

    /// Whether a path exists on the node's host (a link counts, and is not followed).
    async fn exists(&self, node: &NodeConfig, path: &Path) -> Result<bool>;

    /// Renames a file or folder on the node's host (never copies, never deletes, never replaces
    /// an existing `to`), then syncs the folders of both names.
    async fn rename(&self, node: &NodeConfig, from: &Path, to: &Path) -> Result<()>;

    /// Reads a text file on the node's host; `None` when it does not exist. A link is an error.
    async fn read_file(&self, node: &NodeConfig, path: &Path) -> Result<Option<String>>;

    /// Writes a file on the node's host atomically (a temporary file renamed over `path`),
    /// owned by the servers' user, mode 0600; `sync` says whether it is durable on return. An
    /// existing `path` that is a link is an error.
    async fn write_file(
        &self,
        node: &NodeConfig,
        path: &Path,
        contents: &[u8],
        sync: FileSync,
    ) -> Result<()>;

    /// Removes a file on the node's host (only the library's own bookkeeping files are removed).
    async fn remove_file(&self, node: &NodeConfig, path: &Path) -> Result<()>;

    /// The last `lines` lines of the node's server log, for error messages.
    async fn log_tail(&self, node: &NodeConfig, lines: usize) -> String;

    /// Whether the Citus extension's files are installed for this node's PostgreSQL.
    async fn citus_available(&self, node: &NodeConfig) -> Result<bool>;

    /// Starts the archive-get prefetch worker for the node on its host, as the servers' user,
    /// before its server asks for any WAL: the config's `binary` (the program in its
    /// `restore_command`) takes the lock of the spool `<pg_wal>/citus-recovery-spool` (made
    /// when missing), records the window (`first` and the `count - 1` segments after it) and
    /// hands the lock to a detached worker that fetches it from the repository, as the worker
    /// archive-get starts does; `segment_size` (the backup's `wal_segment_size`) names the
    /// segments after `first`. Segments of the window held for the node
    /// ([`ClusterBackend::hold_proven_wal`]) are put in the spool first, and nothing is held
    /// for it afterwards. Returns once the worker runs. The default refuses: a backend
    /// that cannot do it says so (the caller carries on without a prefetch).
    async fn start_prefetch(
        &self,
        node: &NodeConfig,
        pg_wal: &Path,
        first: &str,
        count: usize,
        segment_size: u64,
    ) -> Result<()> {
        let _ = (pg_wal, first, count, segment_size);
        Err(crate::error::Error::node(
            &node.name,
            "start the WAL prefetch",
            "this backend cannot start a prefetch worker; archive-get fetches each segment when asked",
        ))
    }

    /// Holds WAL segments restore-start's pre-flight read and checked for `node` (the first of
    /// its prefetch window), for [`ClusterBackend::start_prefetch`] to put in the node's spool
    /// instead of fetching them from the repository again; replaces what was held for the
    /// node. The default drops them (over SSH the node's worker fetches them itself).
    fn hold_proven_wal(&self, node: &str, segments: Vec<crate::wal::ProvenSegment>) {
        let _ = (node, segments);
    }

    /// Removes the prefetch spool `<pg_wal>/citus-recovery-spool` on the node's host, as the
    /// servers' user, never through a link, only its regular files with the spool's names
    /// ([`crate::archiving::remove_spool_in`]); asks a running worker to end and waits for it.
    /// The default refuses.
    async fn remove_spool(
        &self,
        node: &NodeConfig,
        pg_wal: &Path,
    ) -> Result<crate::archiving::SpoolRemoval> {
        let _ = pg_wal;
        Err(crate::error::Error::node(
            &node.name,
            "remove the WAL prefetch spool",
            "this backend cannot remove it; remove <data dir>/pg_wal/citus-recovery-spool by hand",
        ))
    }
}

/// How long removing a prefetch spool waits at most for a running worker to end. Asked to end,
/// a worker lets go within a fraction of a second; this bounds one that cannot (a stopped
/// process, a disk that hangs).
pub const SPOOL_REMOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
