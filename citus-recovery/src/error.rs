//! The one error type of the library.
//!
//! Every variant says what failed and, where a node is involved, on which node; the messages are
//! meant to be read by the person running the restore, so they end with what to do about it.

use std::path::PathBuf;

/// A `Result` whose error is the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in citus-recovery.
///
/// Match on the variant to tell the cases apart (the Python module maps them onto exception
/// classes); new variants may be added, so keep a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster configuration is invalid; nothing was run.
    #[error("{}config error: {field}: {problem}; fix: {fix}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Config {
        /// The config file, when the config came from one.
        path: Option<PathBuf>,
        /// The field at fault, as written in the JSON (`workerNodes[1].port`), or `(file)`.
        field: String,
        /// What is wrong with it.
        problem: String,
        /// What to do about it.
        fix: String,
    },

    /// An argument given to a command is invalid (a name too long, a bad character); nothing was run.
    #[error("invalid {what} {value:?}: {problem}")]
    InvalidArgument {
        /// What the argument is (`restore point name`, `backup name`).
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong, and the fix.
        problem: String,
    },

    /// No complete backup of that name exists.
    #[error("unknown backup {name:?} in {folder}: {hint}")]
    UnknownBackup {
        /// The backup name asked for (empty when none was given and none could be chosen).
        name: String,
        /// The backup folder searched.
        folder: PathBuf,
        /// What exists instead, and the fix.
        hint: String,
    },

    /// No restore point of that name is known.
    #[error("unknown restore point {name:?}: {hint}")]
    UnknownRestorePoint {
        /// The restore point asked for.
        name: String,
        /// What exists instead, and the fix.
        hint: String,
    },

    /// A restore point of that name exists already.
    #[error("restore point {name:?} exists already (created {created}); choose another name")]
    RestorePointExists {
        /// The name.
        name: String,
        /// When the existing one was created.
        created: String,
    },

    /// Work on one node failed.
    #[error("node {node}: {action} failed: {detail}")]
    Node {
        /// The node's name from the config.
        node: String,
        /// What was being done (`pg_basebackup`, `start`, `wait for recovery pause`).
        action: String,
        /// Why it failed: the program's message, the server's log, the fix.
        detail: String,
    },

    /// A SQL statement on a node failed.
    #[error("node {node}: {action}: {detail}")]
    Sql {
        /// The node's name from the config.
        node: String,
        /// What the statement was for.
        action: String,
        /// The server's message (with its detail and hint), or the driver's.
        detail: String,
        /// The driver's error (it carries the server's message and SQLSTATE).
        #[source]
        source: tokio_postgres::Error,
    },

    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create folder`, `read`).
        action: String,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A check before restore-start failed; nothing was changed.
    #[error("restore of backup {backup} to restore point {restore_point:?} would fail, so nothing was changed:\n{}", join_lines_str(.failures))]
    PreflightFailed {
        /// The backup checked.
        backup: String,
        /// The restore point checked.
        restore_point: String,
        /// Each failed check, naming the node, the file or segment, and what to do.
        failures: Vec<String>,
    },

    /// restore-start failed after it had begun changing nodes, and rolled them back.
    #[error("restore-start failed: {failure}\n{rollback}")]
    RestoreFailed {
        /// What failed.
        failure: Box<Error>,
        /// How the rollback went, and where the old data directories are.
        rollback: String,
    },

    /// Another command that changes the cluster holds its lock.
    #[error("the cluster is locked by another command ({holder}); wait for it to finish. The lock is {}: if no such process runs, the lock is released already and this is a race, so try again", path.display())]
    Locked {
        /// Who holds the lock: process id, command, since when.
        holder: String,
        /// The lock file.
        path: PathBuf,
    },

    /// A file or folder of the library's own (catalog, restore state, lock) could have been
    /// changed by someone other than the user running the tool, so it is not trusted; nothing
    /// was changed.
    #[error("{} is not trusted: it {problem}; fix: {fix}", path.display())]
    UntrustedFile {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What to do about it.
        fix: String,
    },

    /// A restore is under way (restore-start began and neither restore-finish nor restore-abort
    /// ended it); the command was refused and nothing was changed.
    #[error("a restore (backup {backup}, restore point {restore_point:?}) began at {started} and is not finished: {fix}")]
    RestoreInProgress {
        /// The backup being restored.
        backup: String,
        /// The restore point it goes to.
        restore_point: String,
        /// When restore-start began (RFC 3339).
        started: String,
        /// What to do.
        fix: String,
    },

    /// A node's server is not the one the backup was taken of (its `system_identifier`
    /// differs), or a backup does not fit the config's nodes; nothing was changed.
    #[error("node {node}: {problem}; fix: {fix}")]
    Identity {
        /// The node's name from the config.
        node: String,
        /// What does not match.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// Recovery paused somewhere other than the restore point (for instance because the WAL
    /// raised a setting above the restored server's value).
    #[error("node {node}: recovery paused at {replay_lsn}, before restore point {restore_point:?} at {target_lsn}: {cause}")]
    NotAtTarget {
        /// The node's name.
        node: String,
        /// The restore point.
        restore_point: String,
        /// Where replay paused.
        replay_lsn: String,
        /// Where the restore point record is.
        target_lsn: String,
        /// The cause, from the server log.
        cause: String,
    },

    /// The repository failed or refused a request: an object not there, a copy with other
    /// content (never overwritten), the store unreachable. The message names the repository and
    /// the key, never a secret.
    #[error(transparent)]
    Repository(#[from] crate::repository::RepoError),

    /// An object in the repository is damaged (bad checksum, truncated, not a frame of ours).
    #[error("{key} in the repository is damaged: {problem}")]
    Corrupt {
        /// The object's key.
        key: String,
        /// What the check found.
        problem: String,
    },

    /// Several nodes failed; each error names its node.
    #[error("{} nodes failed:\n{}", .0.len(), join_lines(.0))]
    Several(Vec<Error>),

    /// WAL archiving on a node is set up by something else (another backup tool), and
    /// prepare-archiving was not told to replace it; nothing was changed.
    #[error("node {node}: {setting} is set to '{current}' by something other than this cluster's citus-recovery config, so nothing was changed; fix: if that setting is unused, reset it (ALTER SYSTEM RESET {setting}; SELECT pg_reload_conf()), or run prepare-archiving with --replace-existing (Python: replace_existing=True) if you really mean to take over WAL archiving from that tool, which stops its WAL stream")]
    ArchivingInUse {
        /// The node's name from the config.
        node: String,
        /// The setting found (`archive_command`, `archive_library`, `basic_archive.archive_directory`).
        setting: String,
        /// Its current value, with anything that looks like a password, key or token masked.
        current: String,
    },

    /// A node's server must run (and answer) for the command, and does not; nothing was changed.
    #[error("node {node} is not running ({state}); {fix}")]
    NodeNotRunning {
        /// The node's name from the config.
        node: String,
        /// What was found instead (stopped, no data directory).
        state: crate::backend::ServerState,
        /// What to do.
        fix: String,
    },

    /// A node is in recovery (a restore is paused or replaying) where the command needs a
    /// primary; nothing was changed.
    #[error("node {node} is in recovery, and {command} needs a primary; fix: {fix}")]
    NodeInRecovery {
        /// The node's name from the config.
        node: String,
        /// The command refused (`basebackup`, `restore-point`).
        command: &'static str,
        /// What to do.
        fix: String,
    },

    /// WAL archiving is not on for a node, and the command needs it; nothing was changed.
    #[error("WAL archiving is not on for node {node}: {why}; run `citus-recovery prepare-archiving` (Python: prepare_archiving()) first")]
    ArchivingOff {
        /// The node's name from the config.
        node: String,
        /// Why the command needs archiving.
        why: &'static str,
    },

    /// A node is still in recovery but not paused at the restore point, so recovery cannot be
    /// ended there; nothing was changed.
    #[error("node {node} is still in recovery but not paused at the restore point (replay {pause_state}); wait for restore-start to report every node paused, or run restore-abort")]
    NotPaused {
        /// The node's name from the config.
        node: String,
        /// `pg_get_wal_replay_pause_state()` as found (`not paused`, `pause requested`).
        pause_state: String,
    },

    /// restore-finish or restore-abort found no restore under way; nothing was changed.
    #[error("no restore is under way: {detail}; run `citus-recovery restore-start` first")]
    NoRestoreUnderWay {
        /// What was looked at (the state file that does not exist, no node paused).
        detail: String,
    },

    /// `cluster create` found a node's data directory there already; nothing was changed.
    #[error("node {node} has a data directory already ({}); remove it or choose another clusterBaseFolder", data_dir.display())]
    DataDirExists {
        /// The node's name from the config.
        node: String,
        /// The data directory.
        data_dir: PathBuf,
    },

    /// A node has no data directory where the command needs one.
    #[error("node {node} has no data directory ({}); run `citus-recovery cluster create`, or restore-start to restore one", data_dir.display())]
    DataDirMissing {
        /// The node's name from the config.
        node: String,
        /// Where the data directory should be.
        data_dir: PathBuf,
    },

    /// A restore under way moved a node's data directory aside, and neither it nor the moved
    /// copy exists any more; nothing was changed.
    #[error("node {node}: neither {} nor {} exists, so the data directory from before the restore is gone; restore it by hand (from a backup), then run restore-abort", data_dir.display(), moved_aside_to.display())]
    OldDataDirGone {
        /// The node's name from the config.
        node: String,
        /// The data directory.
        data_dir: PathBuf,
        /// Where restore-start had moved the old one.
        moved_aside_to: PathBuf,
    },

    /// The restore point lies before the end of the backup on a node: recovery from that backup
    /// cannot stop there; nothing was changed.
    #[error("restore point {restore_point:?} (made {made}) lies before the end of backup {backup} on node {node}: recovery cannot stop there; choose an older backup")]
    BackupTooNew {
        /// The backup.
        backup: String,
        /// The restore point.
        restore_point: String,
        /// When the restore point was made (RFC 3339).
        made: String,
        /// The first node on which it lies before the backup's end.
        node: String,
    },

    /// Citus' `pg_dist_node` lists a node the config lacks: a backup or restore point without it
    /// would lose its shards; nothing was changed.
    #[error("Citus lists {} node {host}:{port} in pg_dist_node that the config lacks: a backup or restore point without it would lose its shards; add it to workerNodes (or remove it from the cluster with citus_remove_node)", if *active { "an active" } else { "an inactive but placement-holding" })]
    UnlistedCitusNode {
        /// `pg_dist_node.nodename`.
        host: String,
        /// `pg_dist_node.nodeport`.
        port: u16,
        /// `pg_dist_node.isactive`.
        active: bool,
    },

    /// File work cannot be done as the servers' OS user (the identity switch was refused, or the
    /// user cannot reach or write a folder); nothing was changed.
    #[error("OS user {user}: {problem}; fix: {fix}")]
    ServersUser {
        /// The servers' OS user.
        user: String,
        /// What could not be done.
        problem: String,
        /// What to do.
        fix: String,
        /// The operating system's error, when there is one.
        #[source]
        source: Option<std::io::Error>,
    },

    /// A node's WAL archive could not be read while listing restore points.
    #[error("node {node}: reading its WAL archive failed: {source}; fix what the message names, or run `citus-recovery verify` for every check")]
    WalArchive {
        /// The node's name from the config.
        node: String,
        /// The WAL reader's error (it names the file).
        #[source]
        source: crate::wal::WalError,
    },

    /// A worker task of the library panicked or was cancelled; what it did is named. A bug:
    /// please report it with the message.
    #[error("{what} failed: a worker task of citus-recovery stopped ({source}); this is a bug in citus-recovery, please report it with this message")]
    TaskFailed {
        /// What the task was doing (`checking a backup`).
        what: String,
        /// The runtime's error.
        #[source]
        source: tokio::task::JoinError,
    },

    /// A plan given to [`crate::Cluster::apply`] no longer fits the cluster (a node's state
    /// changed, a restore began or ended, the chosen backup is gone); nothing was changed.
    #[error("the plan is outdated: {what}; build the plan again (run the command without the plan, or plan it again) and check it")]
    PlanOutdated {
        /// What changed since the plan was built.
        what: String,
    },

    /// Another command holds the cluster's lock in the repository (maybe on another admin
    /// host); nothing was changed. A stale lock is reported, never taken over.
    #[error("{}", repository_locked_text(holder, repository, stale.as_deref()))]
    RepositoryLocked {
        /// Who holds it: command, host, pid, since when.
        holder: String,
        /// The repository, as it describes itself (no secret).
        repository: String,
        /// Why the lock looks abandoned (its process is gone, or it is older than the lease),
        /// `None` while its holder may still run.
        stale: Option<String>,
    },

    /// A connection to a node could not be made: a password file, a certificate or key file,
    /// the TLS handshake, or the server refused the login. Never holds a password.
    #[error("node {node}: cannot connect to {address}: {problem}; fix: {fix}")]
    Connection {
        /// The node's name from the config.
        node: String,
        /// `host:port` as configured.
        address: String,
        /// What went wrong.
        problem: String,
        /// What to do about it.
        fix: String,
    },

    /// `citus_create_restore_point` could not take its locks within `restorePointLockTimeout`
    /// in any attempt: a long transaction holds a lock it needs. Nothing was written; writers
    /// queued behind each attempt for at most the timeout.
    #[error("restore point {name}: node {node}: citus_create_restore_point could not take its locks (pg_dist_node, pg_dist_partition, pg_dist_transaction) within {lock_timeout_ms} ms in {attempts} attempts ({detail}); nothing was written; fix: find the transaction holding them (`SELECT pid, mode, relation::regclass, query FROM pg_locks JOIN pg_stat_activity USING (pid) WHERE relation::regclass::text LIKE 'pg_dist%'` on the coordinator), let it end, then run restore-point again; or raise restorePointLockTimeout/restorePointRetries in the config")]
    RestorePointLockTimeout {
        /// The restore point's name.
        name: String,
        /// The node it ran on (the coordinator).
        node: String,
        /// The lock timeout of each attempt, in milliseconds.
        lock_timeout_ms: u64,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error from the server.
        detail: String,
    },
}

fn repository_locked_text(holder: &str, repository: &str, stale: Option<&str>) -> String {
    match stale {
        Some(why) => format!(
            "the cluster is locked by {holder} (the lock object in {repository}), and the lock looks stale: {why}; fix: make sure that command no longer runs, then break the lock with `citus-recovery unlock --force` and run this again"
        ),
        None => format!(
            "the cluster is locked by {holder} (the lock object in {repository}); fix: wait for that command to finish; if it died on its host, break the lock with `citus-recovery unlock --force`"
        ),
    }
}

fn join_lines_str(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn join_lines(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// Builds an [`Error::Io`] for `action` on `path`.
    pub fn io(action: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Node`].
    pub fn node(
        node: impl Into<String>,
        action: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Error::Node {
            node: node.into(),
            action: action.into(),
            detail: detail.into(),
        }
    }

    /// Builds an [`Error::Sql`].
    pub fn sql(
        node: impl Into<String>,
        action: impl Into<String>,
        source: tokio_postgres::Error,
    ) -> Self {
        let detail = match source.as_db_error() {
            Some(db) => {
                let mut text = format!("{}: {}", db.severity(), db.message());
                if let Some(d) = db.detail() {
                    text.push_str(&format!(" (detail: {d})"));
                }
                if let Some(h) = db.hint() {
                    text.push_str(&format!(" (hint: {h})"));
                }
                text
            }
            None => match std::error::Error::source(&source) {
                Some(inner) => format!("{source}: {inner}"),
                None => source.to_string(),
            },
        };
        Error::Sql {
            node: node.into(),
            action: action.into(),
            detail,
            source,
        }
    }

    /// The error for a worker task doing `what` that panicked or was cancelled, for `map_err`.
    pub fn task(what: impl Into<String>) -> impl FnOnce(tokio::task::JoinError) -> Self {
        let what = what.into();
        move |source| Error::TaskFailed { what, source }
    }

    /// One error from several: itself when there is one, [`Error::Several`] otherwise.
    pub fn from_several(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Several(errors)),
        }
    }

    /// The node this error is about, if it is about one.
    pub fn node_name(&self) -> Option<&str> {
        match self {
            Error::Node { node, .. }
            | Error::Sql { node, .. }
            | Error::Identity { node, .. }
            | Error::NotAtTarget { node, .. }
            | Error::ArchivingInUse { node, .. }
            | Error::NodeNotRunning { node, .. }
            | Error::NodeInRecovery { node, .. }
            | Error::ArchivingOff { node, .. }
            | Error::NotPaused { node, .. }
            | Error::DataDirExists { node, .. }
            | Error::DataDirMissing { node, .. }
            | Error::OldDataDirGone { node, .. }
            | Error::BackupTooNew { node, .. }
            | Error::WalArchive { node, .. }
            | Error::RestorePointLockTimeout { node, .. }
            | Error::Connection { node, .. } => Some(node),
            Error::RestoreFailed { failure, .. } => failure.node_name(),
            Error::Several(errors) => errors.iter().find_map(Error::node_name),
            _ => None,
        }
    }
}
