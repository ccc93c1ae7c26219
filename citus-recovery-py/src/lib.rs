//! Python bindings for citus-recovery: the native part of the `citus_recovery` package
//! (`citus_recovery._native`, re-exported by `citus_recovery/__init__.py`).
//!
//! The binding holds no behaviour of its own: every method parses its arguments, calls the core
//! crate's [`citus_recovery::Cluster`], and converts the result or the error. Long calls run on
//! one shared tokio runtime without the GIL and answer Ctrl-C (`runtime.rs`); the core's errors
//! map onto Python exception classes in one place (`errors.rs`).
#![warn(missing_docs)]

mod catalog;
mod cluster;
mod convert;
mod errors;
mod fork;
mod lifecycle;
mod plans;
mod progress;
mod reports;
mod runtime;
mod verify;

use pyo3::prelude::*;

/// The native module, imported as `citus_recovery._native`.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<cluster::PyCluster>()?;
    m.add_class::<citus_recovery::config::NodeInfo>()?;
    m.add_class::<catalog::PyBackup>()?;
    m.add_class::<catalog::PyNodeBackup>()?;
    m.add_class::<catalog::PyRestorePoint>()?;
    m.add_class::<catalog::PyNodeRestorePoint>()?;
    m.add_class::<plans::PyPlan>()?;
    m.add_class::<plans::PyPhase>()?;
    m.add_class::<plans::PyNodePlan>()?;
    m.add_class::<plans::PyArchivePlan>()?;
    m.add_class::<plans::PyBasebackupPlan>()?;
    m.add_class::<plans::PyRestorePointPlan>()?;
    m.add_class::<plans::PyRestorePlan>()?;
    m.add_class::<plans::PyFinishPlan>()?;
    m.add_class::<plans::PyAbortPlan>()?;
    m.add_class::<reports::PyArchiveReport>()?;
    m.add_class::<reports::PyRestoreReport>()?;
    m.add_class::<reports::PyNodePaused>()?;
    m.add_class::<reports::PyFinishReport>()?;
    m.add_class::<reports::PyNodeFinish>()?;
    m.add_class::<reports::PyAbortReport>()?;
    m.add_class::<verify::PyVerifyReport>()?;
    m.add_class::<verify::PyCheck>()?;
    m.add_class::<reports::PyNodeAbort>()?;
    m.add_class::<reports::PyClusterStatus>()?;
    m.add_class::<reports::PyNodeStatus>()?;
    m.add_class::<reports::PyRestoreState>()?;
    m.add_class::<reports::PyNodeRestore>()?;
    m.add_class::<citus_recovery::progress::ProgressEvent>()?;
    m.add_class::<runtime::CancelToken>()?;
    progress::forward_logging();
    m.add_class::<lifecycle::PyExpirePlan>()?;
    m.add_class::<lifecycle::PyImportPlan>()?;
    m.add_class::<citus_recovery::import::ImportReport>()?;
    m.add_class::<lifecycle::PyCheckReport>()?;
    m.add_class::<fork::PyForkPlan>()?;
    m.add_class::<fork::PyForkReport>()?;
    m.add_class::<fork::PyDrillReport>()?;
    errors::register(m)?;
    Ok(())
}
