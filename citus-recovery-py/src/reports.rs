//! What the commands report: `ArchiveReport`, `RestoreReport`, `FinishReport`, `ClusterStatus`,
//! and their per-node parts. `str()` of a report is the command-line tool's text, `to_json()` its
//! `--json` output.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use citus_recovery::backend::ServerState;
use citus_recovery::observe::NodeObservation;
use citus_recovery::plan::{NodeAbort, NodeFinish, NodePaused, NodeRestore, RestoreState};
use citus_recovery::{AbortReport, ArchiveReport, ClusterStatus, FinishReport, RestoreReport};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{self, opt_repr, repr};

/// What `prepare_archiving` did.
#[pyclass(module = "citus_recovery", name = "ArchiveReport", frozen)]
pub struct PyArchiveReport(pub ArchiveReport);

#[pymethods]
impl PyArchiveReport {
    /// Nodes restarted because `wal_level` or `archive_mode` changed.
    #[getter]
    fn restarted(&self) -> Vec<String> {
        self.0.restarted.clone()
    }

    /// Nodes that still need a restart before archiving works, with the settings that need it.
    #[getter]
    fn restart_pending<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let pending = PyDict::new(py);
        for (node, settings) in &self.0.restart_pending {
            pending.set_item(node, settings)?;
        }
        Ok(pending)
    }

    /// The report as JSON.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ArchiveReport(restarted={}, restart_pending={})",
            self.restarted().into_pyobject(py)?.repr()?,
            self.restart_pending(py)?.repr()?
        ))
    }
}

/// What `restore_start` did: every node paused at the restore point.
#[pyclass(module = "citus_recovery", name = "RestoreReport", frozen)]
pub struct PyRestoreReport(pub RestoreReport);

#[pymethods]
impl PyRestoreReport {
    /// The backup restored.
    #[getter]
    fn backup(&self) -> &str {
        &self.0.backup
    }

    /// The restore point every node is paused at.
    #[getter]
    fn restore_point(&self) -> &str {
        &self.0.restore_point
    }

    /// Every node, paused.
    #[getter]
    fn nodes(&self) -> Vec<PyNodePaused> {
        self.0.nodes.iter().cloned().map(PyNodePaused).collect()
    }

    /// When the restore point was chosen by `before`: which, and how far before that time it
    /// was created, in words; `None` when it was named.
    #[getter]
    fn before_note(&self) -> Option<&str> {
        self.0.before.as_ref().map(|c| c.note.as_str())
    }

    /// The report as JSON.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let nodes: Vec<&str> = self.0.nodes.iter().map(|n| n.node.as_str()).collect();
        Ok(format!(
            "RestoreReport(backup={}, restore_point={}, nodes={})",
            repr(py, &self.0.backup)?,
            repr(py, &self.0.restore_point)?,
            nodes.into_pyobject(py)?.repr()?
        ))
    }
}

/// One node after `restore_start`.
#[pyclass(module = "citus_recovery", name = "NodePaused", frozen)]
pub struct PyNodePaused(pub NodePaused);

#[pymethods]
impl PyNodePaused {
    /// The node's name.
    #[getter]
    fn node(&self) -> &str {
        &self.0.node
    }

    /// Where replay paused (an LSN such as `0/3000028`).
    #[getter]
    fn replay_lsn(&self) -> String {
        self.0.replay_lsn.to_string()
    }

    /// Where the old data directory was kept, if there was one.
    #[getter]
    fn moved_aside_to<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        convert::opt_path(py, self.0.moved_aside_to.as_deref())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "NodePaused(node={}, replay_lsn='{}', moved_aside_to={})",
            repr(py, &self.0.node)?,
            self.0.replay_lsn,
            opt_repr(
                py,
                self.0
                    .moved_aside_to
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .as_deref()
            )?
        ))
    }
}

/// What `restore_finish` did: every node out of recovery.
#[pyclass(module = "citus_recovery", name = "FinishReport", frozen)]
pub struct PyFinishReport(pub FinishReport);

#[pymethods]
impl PyFinishReport {
    /// Every node.
    #[getter]
    fn nodes(&self) -> Vec<PyNodeFinish> {
        self.0.nodes.iter().cloned().map(PyNodeFinish).collect()
    }

    /// The report as JSON.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let nodes: Vec<&str> = self.0.nodes.iter().map(|n| n.node.as_str()).collect();
        Ok(format!(
            "FinishReport(nodes={})",
            nodes.into_pyobject(py)?.repr()?
        ))
    }
}

/// One node after `restore_finish`.
#[pyclass(module = "citus_recovery", name = "NodeFinish", frozen)]
pub struct PyNodeFinish(pub NodeFinish);

#[pymethods]
impl PyNodeFinish {
    /// The node's name.
    #[getter]
    fn node(&self) -> &str {
        &self.0.node
    }

    /// Its new timeline when this call promoted it; `None` when it was already out of recovery.
    #[getter]
    fn timeline(&self) -> Option<u32> {
        self.0.timeline
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "NodeFinish(node={}, timeline={})",
            repr(py, &self.0.node)?,
            self.0
                .timeline
                .map_or_else(|| "None".to_string(), |t| t.to_string())
        ))
    }
}

/// What `restore_abort` did: the data directories from before `restore_start` are back.
#[pyclass(module = "citus_recovery", name = "AbortReport", frozen)]
pub struct PyAbortReport(pub AbortReport);

#[pymethods]
impl PyAbortReport {
    /// Every node.
    #[getter]
    fn nodes(&self) -> Vec<PyNodeAbort> {
        self.0.nodes.iter().cloned().map(PyNodeAbort).collect()
    }

    /// The report as JSON.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let nodes: Vec<&str> = self.0.nodes.iter().map(|n| n.node.as_str()).collect();
        Ok(format!(
            "AbortReport(nodes={})",
            nodes.into_pyobject(py)?.repr()?
        ))
    }
}

/// One node after `restore_abort`.
#[pyclass(module = "citus_recovery", name = "NodeAbort", frozen)]
pub struct PyNodeAbort(pub NodeAbort);

#[pymethods]
impl PyNodeAbort {
    /// The node's name.
    #[getter]
    fn node(&self) -> &str {
        &self.0.node
    }

    /// Whether its old data directory was put back.
    #[getter]
    fn restored_old_data_dir(&self) -> bool {
        self.0.restored_old_data_dir
    }

    /// Where the data directory `restore_start` had made was moved (kept for inspection).
    #[getter]
    fn failed_restore_kept_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        convert::opt_path(py, self.0.failed_restore_kept_at.as_deref())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "NodeAbort(node={}, restored_old_data_dir={})",
            repr(py, &self.0.node)?,
            if self.0.restored_old_data_dir {
                "True"
            } else {
                "False"
            }
        ))
    }
}

/// Every node's state, as `status()` observed it.
#[pyclass(module = "citus_recovery", name = "ClusterStatus", frozen)]
pub struct PyClusterStatus(pub ClusterStatus);

#[pymethods]
impl PyClusterStatus {
    /// The cluster's name.
    #[getter]
    fn cluster_name(&self) -> &str {
        &self.0.cluster_name
    }

    /// Every node, in config order.
    #[getter]
    fn nodes(&self) -> Vec<PyNodeStatus> {
        self.0.nodes.iter().cloned().map(PyNodeStatus).collect()
    }

    /// The restore under way, if any.
    #[getter]
    fn restore(&self) -> Option<PyRestoreState> {
        self.0.restore.clone().map(PyRestoreState)
    }

    /// The status as JSON.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let nodes: Vec<String> = self
            .0
            .nodes
            .iter()
            .map(|n| format!("{}: {}", n.node, server_state(n.server)))
            .collect();
        Ok(format!(
            "ClusterStatus(cluster_name={}, nodes={}, restore={})",
            repr(py, &self.0.cluster_name)?,
            nodes.into_pyobject(py)?.repr()?,
            if self.0.restore.is_some() {
                "<under way>"
            } else {
                "None"
            }
        ))
    }
}

/// The name of a server state, as in the JSON output.
fn server_state(state: ServerState) -> &'static str {
    match state {
        ServerState::Running => "running",
        ServerState::Stopped => "stopped",
        ServerState::Missing => "missing",
    }
}

/// One node, as observed: nothing was changed to find this out.
#[pyclass(module = "citus_recovery", name = "NodeStatus", frozen)]
pub struct PyNodeStatus(pub NodeObservation);

#[pymethods]
impl PyNodeStatus {
    /// The node's name.
    #[getter]
    fn node(&self) -> &str {
        &self.0.node
    }

    /// `"running"`, `"stopped"` or `"missing"` (no data directory).
    #[getter]
    fn server(&self) -> &'static str {
        server_state(self.0.server)
    }

    /// `pg_is_in_recovery()`, when the server runs and answers.
    #[getter]
    fn in_recovery(&self) -> Option<bool> {
        self.0.in_recovery
    }

    /// `pg_get_wal_replay_pause_state()` while in recovery.
    #[getter]
    fn pause_state(&self) -> Option<&str> {
        self.0.pause_state.as_deref()
    }

    /// The replay LSN while in recovery, else the current WAL LSN.
    #[getter]
    fn lsn(&self) -> Option<&str> {
        self.0.lsn.as_deref()
    }

    /// The current timeline, when it answers and is not in recovery.
    #[getter]
    fn timeline(&self) -> Option<u32> {
        self.0.timeline
    }

    /// The archiving settings that are set (`wal_level`, `archive_mode`, ...).
    #[getter]
    fn settings(&self) -> BTreeMap<String, String> {
        self.0.settings.clone()
    }

    /// The created Citus extension's version, `None` where it is not created.
    #[getter]
    fn citus_version(&self) -> Option<&str> {
        self.0.citus_version.as_deref()
    }

    /// `server_version`.
    #[getter]
    fn server_version(&self) -> Option<&str> {
        self.0.server_version.as_deref()
    }

    /// Whether the server was built with zstd (it then compresses repository backups itself).
    #[getter]
    fn server_zstd(&self) -> Option<bool> {
        self.0.server_zstd
    }

    /// Why the node could not be asked, when it runs but did not answer.
    #[getter]
    fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }

    /// Whether WAL archiving is on (a restart may still be pending).
    #[getter]
    fn archiving(&self) -> bool {
        self.0.archiving()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let flag = |b: Option<bool>| match b {
            Some(true) => "True",
            Some(false) => "False",
            None => "None",
        };
        Ok(format!(
            "NodeStatus(node={}, server='{}', in_recovery={}, timeline={}, lsn={}, citus_version={}, archiving={})",
            repr(py, &self.0.node)?,
            server_state(self.0.server),
            flag(self.0.in_recovery),
            self.0.timeline.map_or_else(|| "None".to_string(), |t| t.to_string()),
            opt_repr(py, self.0.lsn.as_deref())?,
            opt_repr(py, self.0.citus_version.as_deref())?,
            flag(Some(self.0.archiving()))
        ))
    }
}

/// A restore under way: `restore_start` began it and `restore_finish` has not ended it.
#[pyclass(module = "citus_recovery", name = "RestoreState", frozen)]
pub struct PyRestoreState(pub RestoreState);

#[pymethods]
impl PyRestoreState {
    /// The backup restored.
    #[getter]
    fn backup(&self) -> &str {
        &self.0.backup
    }

    /// The restore point recovered to.
    #[getter]
    fn restore_point(&self) -> &str {
        &self.0.restore_point
    }

    /// When `restore_start` began (UTC).
    #[getter]
    fn started(&self) -> DateTime<Utc> {
        self.0.started
    }

    /// Every node.
    #[getter]
    fn nodes(&self) -> Vec<PyNodeRestore> {
        self.0.nodes.iter().cloned().map(PyNodeRestore).collect()
    }

    /// The state as JSON (as in its state file).
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "RestoreState(backup={}, restore_point={}, started='{}')",
            repr(py, &self.0.backup)?,
            repr(py, &self.0.restore_point)?,
            self.0.started.to_rfc3339()
        ))
    }
}

/// What `restore_start` changes on one node.
#[pyclass(module = "citus_recovery", name = "NodeRestore", frozen)]
pub struct PyNodeRestore(pub NodeRestore);

#[pymethods]
impl PyNodeRestore {
    /// The node's name.
    #[getter]
    fn node(&self) -> &str {
        &self.0.node
    }

    /// Its data directory.
    #[getter]
    fn data_dir<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::path(py, &self.0.data_dir)
    }

    /// Where the old data directory is moved, if there is one.
    #[getter]
    fn moved_aside_to<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        convert::opt_path(py, self.0.moved_aside_to.as_deref())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "NodeRestore(node={}, data_dir={})",
            repr(py, &self.0.node)?,
            repr(py, &self.0.data_dir.display().to_string())?
        ))
    }
}
