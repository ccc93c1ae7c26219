//! What the plans need of the nodes: the [`ClusterBackend`] trait and its implementations.
//!
//! A backend knows how to reach a node's server (SQL), how to run its server-side programs
//! (start, stop, `pg_basebackup`) and how to do the file work on the node's host (move a data
//! directory aside, extract a backup, write recovery settings). Plans hold no I/O of their own:
//! they are executed through a `&dyn ClusterBackend`. [`LocalBackend`] serves nodes on this host.

mod local;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{ClusterConfig, NodeConfig};
use crate::error::Result;

pub use local::LocalBackend;

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
}

/// The nodes as the plans see them.
///
/// Contract: every method works on one node (or one path on that node's host) and is safe to call
/// for several nodes at once. Paths are the ones the config gives (`data_dir`, `archive_dir`);
/// files and folders a backend creates belong to the servers' OS user. Errors name the node.
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

    /// Starts the node's server.
    async fn start(&self, node: &NodeConfig, wait: StartWait) -> Result<()>;

    /// Stops the node's server (fast shutdown), waiting until it is down.
    async fn stop(&self, node: &NodeConfig) -> Result<()>;

    /// Takes a base backup of the node into `folder` (which must not exist yet): tar format,
    /// WAL streamed, fast checkpoint, with PostgreSQL's `backup_manifest`.
    async fn base_backup(
        &self,
        node: &NodeConfig,
        folder: &Path,
        label: &str,
    ) -> Result<BackupFiles>;

    /// Extracts the base backup in `backup` into `data_dir` (which must not exist): the result is
    /// owned by the servers' user with mode 0700, `global/pg_control` written last.
    async fn extract_backup(&self, node: &NodeConfig, backup: &Path, data_dir: &Path)
        -> Result<()>;

    /// Creates a folder (and missing parents) on the node's host, owned by the servers' user.
    async fn create_dir(&self, node: &NodeConfig, path: &Path) -> Result<()>;

    /// Whether a path exists on the node's host.
    async fn exists(&self, node: &NodeConfig, path: &Path) -> Result<bool>;

    /// Renames a file or folder on the node's host (never copies, never deletes).
    async fn rename(&self, node: &NodeConfig, from: &Path, to: &Path) -> Result<()>;

    /// Reads a text file on the node's host; `None` when it does not exist.
    async fn read_file(&self, node: &NodeConfig, path: &Path) -> Result<Option<String>>;

    /// Writes a file on the node's host atomically, owned by the servers' user, mode 0600.
    async fn write_file(&self, node: &NodeConfig, path: &Path, contents: &[u8]) -> Result<()>;

    /// Removes a file on the node's host (only the library's own bookkeeping files are removed).
    async fn remove_file(&self, node: &NodeConfig, path: &Path) -> Result<()>;

    /// The last `lines` lines of the node's server log, for error messages.
    async fn log_tail(&self, node: &NodeConfig, lines: usize) -> String;

    /// Whether the Citus extension's files are installed for this node's PostgreSQL.
    async fn citus_available(&self, node: &NodeConfig) -> Result<bool>;
}
