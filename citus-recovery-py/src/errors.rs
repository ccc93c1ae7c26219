//! The exception classes and the one map from the core's [`Error`] onto them.
//!
//! | core error                              | Python exception                                 |
//! |-----------------------------------------|--------------------------------------------------|
//! | `Config`                                | `ConfigError` (`.field`, `.problem`, `.fix`, `.path`) |
//! | `InvalidArgument`                       | `InvalidArgumentError`, also a `ValueError`      |
//! | `UnknownBackup`                         | `UnknownBackupError` (`.name`, `.folder`, `.hint`) |
//! | `UnknownRestorePoint`                   | `UnknownRestorePointError` (`.name`, `.hint`)    |
//! | `Node`, `Sql`, `Connection`, `Several`  | `NodeError` (`.node`, `.nodes`, `.action`, `.detail`, `.errors`) |
//! | `PreflightFailed`                       | `VerifyError` (`.backup`, `.restore_point`, `.failures`) |
//! | `RestoreFailed`                         | the class of the failure, with `.rollback` set   |
//! | `ArchivingInUse`                        | `ArchivingInUseError` (`.node`, `.setting`, `.current`) |
//! | `UntrustedFile`                         | `UntrustedFileError` (`.path`, `.problem`, `.fix`) |
//! | `RestoreInProgress`                     | `RestoreInProgressError` (`.backup`, `.restore_point`, `.started`, `.fix`) |
//! | `Identity`                              | `IdentityError` (`.node`, `.problem`, `.fix`)    |
//! | `NotAtTarget`                           | `NotAtTargetError` (`.node`, `.restore_point`, `.replay_lsn`, `.target_lsn`, `.cause`) |
//! | `NodeNotRunning`                        | `NodeNotRunningError` (`.node`, `.state`, `.fix`) |
//! | `NodeInRecovery`                        | `NodeInRecoveryError` (`.node`, `.command`, `.fix`) |
//! | `ArchivingOff`                          | `ArchivingOffError` (`.node`, `.why`)            |
//! | `NotPaused`                             | `NotPausedError` (`.node`, `.pause_state`)       |
//! | `NoRestoreUnderWay`                     | `NoRestoreUnderWayError` (`.detail`)             |
//! | `DataDirExists`                         | `DataDirExistsError` (`.node`, `.data_dir`)      |
//! | `DataDirMissing`                        | `DataDirMissingError` (`.node`, `.data_dir`)     |
//! | `OldDataDirGone`                        | `OldDataDirGoneError` (`.node`, `.data_dir`, `.moved_aside_to`) |
//! | `BackupTooNew`                          | `BackupTooNewError` (`.backup`, `.restore_point`, `.made`, `.node`) |
//! | `UnlistedCitusNode`                     | `UnlistedCitusNodeError` (`.host`, `.port`, `.active`) |
//! | `PlanOutdated`                          | `PlanOutdatedError` (`.what`)                    |
//! | `ServersUser`                           | `ServersUserError` (`.user`, `.problem`, `.fix`) |
//! | `WalArchive`                            | `WalArchiveError` (`.node`)                      |
//! | `Locked`                                | `LockedError` (`.holder`, `.path`)               |
//! | `RestorePointLockTimeout`               | `RestorePointLockTimeoutError` (`.name`, `.node`, `.lock_timeout_ms`, `.attempts`) |
//! | `RepositoryLocked`                      | `RepositoryLockedError`, a `LockedError` (`.holder`, `.repository`, `.stale`) |
//! | `Repository`                            | `RepositoryError` (`.kind`, `.key`, `.repository`) |
//! | `Corrupt`                               | `CorruptError` (`.key`, `.problem`)              |
//! | `Io`                                    | `FileError` (`.action`, `.path`)                 |
//! | `TaskFailed`, anything else             | `CitusRecoveryError`                             |
//!
//! The refusals that depend on the cluster's state (`RestoreInProgressError`,
//! `NoRestoreUnderWayError`, `NodeNotRunningError`, `NodeInRecoveryError`, `ArchivingOffError`,
//! `NotPausedError`, `DataDirExistsError`, `DataDirMissingError`, `OldDataDirGoneError`,
//! `PlanOutdatedError`) share the base class `ClusterStateError`: nothing was changed.
//!
//! The message is always the core error's own text. Every exception has `.rollback`: `None`,
//! except when a failed restore-start rolled the nodes back (then: how that went).

use citus_recovery::repository::RepoError;
use citus_recovery::Error;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};

use crate::convert;

create_exception!(
    citus_recovery,
    CitusRecoveryError,
    PyException,
    "Base class of every error citus_recovery raises; the message is the core library's."
);
create_exception!(
    citus_recovery,
    ConfigError,
    CitusRecoveryError,
    "The cluster configuration is invalid (`.field` names the JSON field); nothing was run."
);
create_exception!(
    citus_recovery,
    UnknownBackupError,
    CitusRecoveryError,
    "No complete backup of that name exists (`.name`, `.folder`, `.hint`)."
);
create_exception!(
    citus_recovery,
    UnknownRestorePointError,
    CitusRecoveryError,
    "No restore point of that name is recorded (`.name`, `.hint`)."
);
create_exception!(
    citus_recovery,
    NodeError,
    CitusRecoveryError,
    "Work on one or more nodes failed (`.node`, `.nodes`, `.action`, `.detail`, `.errors`)."
);

create_exception!(
    citus_recovery,
    VerifyError,
    CitusRecoveryError,
    "A check before restore-start failed, so nothing was changed (`.backup`, `.restore_point`, `.failures`)."
);

create_exception!(
    citus_recovery,
    ArchivingInUseError,
    CitusRecoveryError,
    "WAL archiving on a node belongs to something else (another backup tool), so prepare_archiving changed nothing; pass replace_existing=True to take it over (`.node`, `.setting`, `.current`)."
);

create_exception!(
    citus_recovery,
    RepositoryLockedError,
    LockedError,
    "Another command holds the cluster's lock in the repository, maybe on another admin host; nothing was changed. `.stale` says why the lock looks abandoned (then break it with `citus-recovery unlock --force`), else None (`.holder`, `.repository`, `.stale`)."
);

create_exception!(
    citus_recovery,
    UntrustedFileError,
    CitusRecoveryError,
    "A file or folder of the library's own (catalog, restore state, lock) could have been changed by someone other than the user running it, so it was not trusted; nothing was changed (`.path`, `.problem`, `.fix`)."
);

create_exception!(
    citus_recovery,
    ClusterStateError,
    CitusRecoveryError,
    "The cluster is not in a state the command can work from (a restore under way or not, a node stopped or in recovery); nothing was changed."
);

create_exception!(
    citus_recovery,
    RestoreInProgressError,
    ClusterStateError,
    "A restore is under way and the command must not run now; nothing was changed (`.backup`, `.restore_point`, `.started`, `.fix`)."
);

create_exception!(
    citus_recovery,
    IdentityError,
    CitusRecoveryError,
    "A node's server is not the one its backup was taken of, or a backup does not fit the config's nodes; nothing was changed (`.node`, `.problem`, `.fix`)."
);

create_exception!(
    citus_recovery,
    NotAtTargetError,
    CitusRecoveryError,
    "Recovery paused before the restore point (for instance for a setting the WAL raised) (`.node`, `.restore_point`, `.replay_lsn`, `.target_lsn`, `.cause`)."
);

create_exception!(
    citus_recovery,
    NodeNotRunningError,
    ClusterStateError,
    "A node's server must run for the command and does not; nothing was changed (`.node`, `.state`, `.fix`)."
);
create_exception!(
    citus_recovery,
    NodeInRecoveryError,
    ClusterStateError,
    "A node is in recovery where the command needs a primary; nothing was changed (`.node`, `.command`, `.fix`)."
);
create_exception!(
    citus_recovery,
    ArchivingOffError,
    ClusterStateError,
    "WAL archiving is not on for a node; run prepare_archiving() first; nothing was changed (`.node`, `.why`)."
);
create_exception!(
    citus_recovery,
    NotPausedError,
    ClusterStateError,
    "A node is in recovery but not paused at the restore point, so recovery cannot end there; nothing was changed (`.node`, `.pause_state`)."
);
create_exception!(
    citus_recovery,
    NoRestoreUnderWayError,
    ClusterStateError,
    "restore_finish or restore_abort found no restore under way; nothing was changed (`.detail`)."
);
create_exception!(
    citus_recovery,
    DataDirExistsError,
    ClusterStateError,
    "create() found a node's data directory there already; nothing was changed (`.node`, `.data_dir`)."
);
create_exception!(
    citus_recovery,
    DataDirMissingError,
    ClusterStateError,
    "A node has no data directory where the command needs one (`.node`, `.data_dir`)."
);
create_exception!(
    citus_recovery,
    OldDataDirGoneError,
    ClusterStateError,
    "The data directory from before the restore under way is gone from both places; restore it by hand (`.node`, `.data_dir`, `.moved_aside_to`)."
);
create_exception!(
    citus_recovery,
    PlanOutdatedError,
    ClusterStateError,
    "The plan given to apply() no longer fits the cluster; build it again; nothing was changed (`.what`)."
);
create_exception!(
    citus_recovery,
    BackupTooNewError,
    CitusRecoveryError,
    "The restore point lies before the end of the backup on a node; choose an older backup; nothing was changed (`.backup`, `.restore_point`, `.made`, `.node`)."
);
create_exception!(
    citus_recovery,
    UnlistedCitusNodeError,
    CitusRecoveryError,
    "Citus' pg_dist_node lists a node the config lacks; add it to workerNodes; nothing was changed (`.host`, `.port`, `.active`)."
);
create_exception!(
    citus_recovery,
    ServersUserError,
    CitusRecoveryError,
    "File work cannot be done as the servers' OS user (`.user`, `.problem`, `.fix`)."
);
create_exception!(
    citus_recovery,
    WalArchiveError,
    CitusRecoveryError,
    "A node's WAL archive could not be read (`.node`); the message names the file."
);
create_exception!(
    citus_recovery,
    LockedError,
    CitusRecoveryError,
    "Another command that changes the cluster holds its lock; wait for it (`.holder`, `.path`)."
);
create_exception!(
    citus_recovery,
    RepositoryError,
    CitusRecoveryError,
    "The repository failed or refused a request (`.kind`: not_found, conflict or unavailable; `.key`; `.repository`); never holds a secret."
);
create_exception!(
    citus_recovery,
    CorruptError,
    CitusRecoveryError,
    "An object in the repository is damaged (`.key`, `.problem`)."
);
create_exception!(
    citus_recovery,
    RestorePointLockTimeoutError,
    CitusRecoveryError,
    "citus_create_restore_point could not take its locks within restorePointLockTimeout in any attempt; nothing was written (`.name`, `.node`, `.lock_timeout_ms`, `.attempts`)."
);
create_exception!(
    citus_recovery,
    FileError,
    CitusRecoveryError,
    "A file operation failed (`.action`, `.path`); the message has the operating system's error."
);

/// `InvalidArgumentError(CitusRecoveryError, ValueError)`: made with `type()` because
/// `create_exception!` takes a single base class.
static INVALID_ARGUMENT: GILOnceCell<Py<PyType>> = GILOnceCell::new();

/// The `InvalidArgumentError` class, created on first use.
pub fn invalid_argument_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    INVALID_ARGUMENT
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<CitusRecoveryError>(),
                    py.get_type::<PyValueError>(),
                ],
            )?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "citus_recovery")?;
            namespace.set_item(
                "__doc__",
                "An argument is invalid (a name too long, taken, or with a bad character); nothing was run (`.what`, `.value`, `.problem`).",
            )?;
            let class = py
                .get_type::<PyType>()
                .call1(("InvalidArgumentError", bases, namespace))?;
            Ok(class.downcast_into::<PyType>()?.unbind())
        })
        .map(|class| class.bind(py))
}

/// Adds every exception class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CitusRecoveryError", py.get_type::<CitusRecoveryError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("InvalidArgumentError", invalid_argument_error(py)?)?;
    m.add("UnknownBackupError", py.get_type::<UnknownBackupError>())?;
    m.add(
        "UnknownRestorePointError",
        py.get_type::<UnknownRestorePointError>(),
    )?;
    m.add("NodeError", py.get_type::<NodeError>())?;
    m.add("VerifyError", py.get_type::<VerifyError>())?;
    m.add("ArchivingInUseError", py.get_type::<ArchivingInUseError>())?;
    m.add("UntrustedFileError", py.get_type::<UntrustedFileError>())?;
    m.add(
        "RepositoryLockedError",
        py.get_type::<RepositoryLockedError>(),
    )?;
    m.add(
        "RestoreInProgressError",
        py.get_type::<RestoreInProgressError>(),
    )?;
    m.add("IdentityError", py.get_type::<IdentityError>())?;
    m.add("NotAtTargetError", py.get_type::<NotAtTargetError>())?;
    m.add("ClusterStateError", py.get_type::<ClusterStateError>())?;
    m.add("NodeNotRunningError", py.get_type::<NodeNotRunningError>())?;
    m.add("NodeInRecoveryError", py.get_type::<NodeInRecoveryError>())?;
    m.add("ArchivingOffError", py.get_type::<ArchivingOffError>())?;
    m.add("NotPausedError", py.get_type::<NotPausedError>())?;
    m.add(
        "NoRestoreUnderWayError",
        py.get_type::<NoRestoreUnderWayError>(),
    )?;
    m.add("DataDirExistsError", py.get_type::<DataDirExistsError>())?;
    m.add("DataDirMissingError", py.get_type::<DataDirMissingError>())?;
    m.add("OldDataDirGoneError", py.get_type::<OldDataDirGoneError>())?;
    m.add("PlanOutdatedError", py.get_type::<PlanOutdatedError>())?;
    m.add("BackupTooNewError", py.get_type::<BackupTooNewError>())?;
    m.add(
        "UnlistedCitusNodeError",
        py.get_type::<UnlistedCitusNodeError>(),
    )?;
    m.add("ServersUserError", py.get_type::<ServersUserError>())?;
    m.add("WalArchiveError", py.get_type::<WalArchiveError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("RepositoryError", py.get_type::<RepositoryError>())?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add(
        "RestorePointLockTimeoutError",
        py.get_type::<RestorePointLockTimeoutError>(),
    )?;
    // A class attribute, so `.rollback` is there (None) on every error.
    py.get_type::<CitusRecoveryError>()
        .setattr("rollback", py.None())?;
    Ok(())
}

/// The Python exception for a core error.
pub fn to_py(py: Python<'_>, err: Error) -> PyErr {
    exception(py, &err).unwrap_or_else(|failed| failed)
}

/// Builds the exception: class by variant, message from the core, the variant's fields as
/// attributes. An `Err` is a failure to build it (itself a Python error, raised instead).
fn exception(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let message = err.to_string();
    let value = match err {
        Error::Config {
            path,
            field,
            problem,
            fix,
        } => {
            let path = path.as_deref().map(|p| convert::path(py, p)).transpose()?;
            instance(
                &py.get_type::<ConfigError>(),
                message,
                [
                    ("field", field.into_pyobject(py)?.into_any()),
                    ("problem", problem.into_pyobject(py)?.into_any()),
                    ("fix", fix.into_pyobject(py)?.into_any()),
                    ("path", path.into_pyobject(py)?),
                ],
            )?
        }
        Error::InvalidArgument {
            what,
            value,
            problem,
        } => instance(
            invalid_argument_error(py)?,
            message,
            [
                ("what", what.into_pyobject(py)?.into_any()),
                ("value", value.into_pyobject(py)?.into_any()),
                ("problem", problem.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::UnknownBackup { name, folder, hint } => instance(
            &py.get_type::<UnknownBackupError>(),
            message,
            [
                ("name", name.into_pyobject(py)?.into_any()),
                ("folder", convert::path(py, folder)?),
                ("hint", hint.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::UnknownRestorePoint { name, hint } => instance(
            &py.get_type::<UnknownRestorePointError>(),
            message,
            [
                ("name", name.into_pyobject(py)?.into_any()),
                ("hint", hint.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::Node {
            node,
            action,
            detail,
        }
        | Error::Sql {
            node,
            action,
            detail,
            ..
        } => node_error(
            py,
            message,
            Some(node),
            vec![node.clone()],
            Some((action, detail)),
            Vec::new(),
        )?,
        Error::Connection {
            node,
            address,
            problem,
            fix,
        } => node_error(
            py,
            message,
            Some(node),
            vec![node.clone()],
            Some((
                &format!("connect to {address}"),
                &format!("{problem}; fix: {fix}"),
            )),
            Vec::new(),
        )?,
        Error::Several(errors) => {
            let mut nodes: Vec<String> = Vec::new();
            for name in errors.iter().filter_map(Error::node_name) {
                if !nodes.iter().any(|n| n == name) {
                    nodes.push(name.to_string());
                }
            }
            let node = match nodes.as_slice() {
                [only] => Some(only.as_str()),
                _ => None,
            };
            let inner = errors
                .iter()
                .map(|e| exception(py, e).map(|pe| pe.into_value(py).into_any()))
                .collect::<PyResult<Vec<_>>>()?;
            node_error(py, message, node, nodes.clone(), None, inner)?
        }
        Error::PreflightFailed {
            backup,
            restore_point,
            failures,
        } => instance(
            &py.get_type::<VerifyError>(),
            message,
            [
                ("backup", backup.into_pyobject(py)?.into_any()),
                ("restore_point", restore_point.into_pyobject(py)?.into_any()),
                ("failures", PyList::new(py, failures)?.into_any()),
            ],
        )?,
        Error::ArchivingInUse {
            node,
            setting,
            current,
        } => instance(
            &py.get_type::<ArchivingInUseError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("setting", setting.into_pyobject(py)?.into_any()),
                ("current", current.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::RepositoryLocked {
            holder,
            repository,
            stale,
        } => instance(
            &py.get_type::<RepositoryLockedError>(),
            message,
            [
                ("holder", holder.into_pyobject(py)?.into_any()),
                ("repository", repository.into_pyobject(py)?.into_any()),
                ("stale", stale.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::UntrustedFile { path, problem, fix } => instance(
            &py.get_type::<UntrustedFileError>(),
            message,
            [
                ("path", path.to_string_lossy().into_pyobject(py)?.into_any()),
                ("problem", problem.into_pyobject(py)?.into_any()),
                ("fix", fix.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::RestoreInProgress {
            backup,
            restore_point,
            started,
            fix,
        } => instance(
            &py.get_type::<RestoreInProgressError>(),
            message,
            [
                ("backup", backup.into_pyobject(py)?.into_any()),
                ("restore_point", restore_point.into_pyobject(py)?.into_any()),
                ("started", started.into_pyobject(py)?.into_any()),
                ("fix", fix.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::Identity { node, problem, fix } => instance(
            &py.get_type::<IdentityError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("problem", problem.into_pyobject(py)?.into_any()),
                ("fix", fix.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::NotAtTarget {
            node,
            restore_point,
            replay_lsn,
            target_lsn,
            cause,
        } => instance(
            &py.get_type::<NotAtTargetError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("restore_point", restore_point.into_pyobject(py)?.into_any()),
                ("replay_lsn", replay_lsn.into_pyobject(py)?.into_any()),
                ("target_lsn", target_lsn.into_pyobject(py)?.into_any()),
                ("cause", cause.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::NodeNotRunning { node, state, fix } => instance(
            &py.get_type::<NodeNotRunningError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("state", state.to_string().into_pyobject(py)?.into_any()),
                ("fix", fix.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::NodeInRecovery { node, command, fix } => instance(
            &py.get_type::<NodeInRecoveryError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("command", command.into_pyobject(py)?.into_any()),
                ("fix", fix.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::ArchivingOff { node, why } => instance(
            &py.get_type::<ArchivingOffError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("why", why.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::NotPaused { node, pause_state } => instance(
            &py.get_type::<NotPausedError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("pause_state", pause_state.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::NoRestoreUnderWay { detail } => instance(
            &py.get_type::<NoRestoreUnderWayError>(),
            message,
            [("detail", detail.into_pyobject(py)?.into_any())],
        )?,
        Error::DataDirExists { node, data_dir } => instance(
            &py.get_type::<DataDirExistsError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("data_dir", convert::path(py, data_dir)?),
            ],
        )?,
        Error::DataDirMissing { node, data_dir } => instance(
            &py.get_type::<DataDirMissingError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("data_dir", convert::path(py, data_dir)?),
            ],
        )?,
        Error::OldDataDirGone {
            node,
            data_dir,
            moved_aside_to,
        } => instance(
            &py.get_type::<OldDataDirGoneError>(),
            message,
            [
                ("node", node.into_pyobject(py)?.into_any()),
                ("data_dir", convert::path(py, data_dir)?),
                ("moved_aside_to", convert::path(py, moved_aside_to)?),
            ],
        )?,
        Error::PlanOutdated { what } => instance(
            &py.get_type::<PlanOutdatedError>(),
            message,
            [("what", what.into_pyobject(py)?.into_any())],
        )?,
        Error::BackupTooNew {
            backup,
            restore_point,
            made,
            node,
        } => instance(
            &py.get_type::<BackupTooNewError>(),
            message,
            [
                ("backup", backup.into_pyobject(py)?.into_any()),
                ("restore_point", restore_point.into_pyobject(py)?.into_any()),
                ("made", made.into_pyobject(py)?.into_any()),
                ("node", node.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::UnlistedCitusNode { host, port, active } => instance(
            &py.get_type::<UnlistedCitusNodeError>(),
            message,
            [
                ("host", host.into_pyobject(py)?.into_any()),
                ("port", port.into_pyobject(py)?.into_any()),
                ("active", active.into_pyobject(py)?.to_owned().into_any()),
            ],
        )?,
        Error::ServersUser {
            user, problem, fix, ..
        } => instance(
            &py.get_type::<ServersUserError>(),
            message,
            [
                ("user", user.into_pyobject(py)?.into_any()),
                ("problem", problem.into_pyobject(py)?.into_any()),
                ("fix", fix.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::RestorePointLockTimeout {
            name,
            node,
            lock_timeout_ms,
            attempts,
            ..
        } => instance(
            &py.get_type::<RestorePointLockTimeoutError>(),
            message,
            [
                ("name", name.into_pyobject(py)?.into_any()),
                ("node", node.into_pyobject(py)?.into_any()),
                (
                    "lock_timeout_ms",
                    lock_timeout_ms.into_pyobject(py)?.into_any(),
                ),
                ("attempts", attempts.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::WalArchive { node, .. } => instance(
            &py.get_type::<WalArchiveError>(),
            message,
            [("node", node.into_pyobject(py)?.into_any())],
        )?,
        Error::Locked { holder, path } => instance(
            &py.get_type::<LockedError>(),
            message,
            [
                ("holder", holder.into_pyobject(py)?.into_any()),
                ("path", convert::path(py, path)?),
            ],
        )?,
        Error::Repository(repo) => {
            let (kind, key, repository) = match repo {
                RepoError::NotFound { key } => ("not_found", Some(key.to_string()), None),
                RepoError::Conflict { key } => ("conflict", Some(key.to_string()), None),
                RepoError::Unavailable {
                    repository, key, ..
                } => (
                    "unavailable",
                    Some(key.to_string()),
                    Some(repository.clone()),
                ),
                _ => ("other", None, None),
            };
            instance(
                &py.get_type::<RepositoryError>(),
                message,
                [
                    ("kind", kind.into_pyobject(py)?.into_any()),
                    ("key", key.into_pyobject(py)?),
                    ("repository", repository.into_pyobject(py)?),
                ],
            )?
        }
        Error::Corrupt { key, problem } => instance(
            &py.get_type::<CorruptError>(),
            message,
            [
                ("key", key.into_pyobject(py)?.into_any()),
                ("problem", problem.into_pyobject(py)?.into_any()),
            ],
        )?,
        Error::Io { action, path, .. } => instance(
            &py.get_type::<FileError>(),
            message,
            [
                ("action", action.into_pyobject(py)?.into_any()),
                ("path", convert::path(py, path)?),
            ],
        )?,
        Error::RestoreFailed { failure, rollback } => {
            // The failure's class and attributes, the whole message, and how the rollback went.
            let cause = exception(py, failure)?.into_value(py).into_bound(py);
            let value = cause.get_type().call1((message,))?;
            if let Ok(attributes) = cause.getattr("__dict__") {
                value
                    .getattr("__dict__")?
                    .call_method1("update", (attributes,))?;
            }
            value.setattr("rollback", rollback)?;
            value
        }
        _ => instance(&py.get_type::<CitusRecoveryError>(), message, [])?,
    };
    Ok(PyErr::from_value(value))
}

/// A `NodeError` with its attributes.
fn node_error<'py>(
    py: Python<'py>,
    message: String,
    node: Option<&str>,
    nodes: Vec<String>,
    action_detail: Option<(&String, &String)>,
    errors: Vec<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (action, detail) = action_detail.unzip();
    instance(
        &py.get_type::<NodeError>(),
        message,
        [
            ("node", node.into_pyobject(py)?),
            ("nodes", PyList::new(py, nodes)?.into_any()),
            ("action", action.into_pyobject(py)?),
            ("detail", detail.into_pyobject(py)?),
            ("errors", PyList::new(py, errors)?.into_any()),
        ],
    )
}

/// `class(message)` with `attributes` set on it.
fn instance<'py, const N: usize>(
    class: &Bound<'py, PyType>,
    message: String,
    attributes: [(&str, Bound<'py, PyAny>); N],
) -> PyResult<Bound<'py, PyAny>> {
    let value = class.call1((message,))?;
    for (name, attribute) in attributes {
        value.setattr(name, attribute)?;
    }
    Ok(value)
}
