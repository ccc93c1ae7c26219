//! `expire` and `check`: `ExpirePlan` (a `Plan`: what goes, the bytes freed) and `CheckReport`
//! (per-node health, the exit code monitoring wants, the Prometheus text).

use citus_recovery::expire::ExpirePlan;
use citus_recovery::import::ImportPlan;
use citus_recovery::CheckReport;
use pyo3::prelude::*;

use crate::convert;
use crate::plans::PyPlan;

/// The plan of `expire` (also what `expire` returns: the plan, all of it done).
#[pyclass(module = "citus_recovery", name = "ExpirePlan", extends = PyPlan, frozen)]
pub struct PyExpirePlan(pub ExpirePlan);

#[pymethods]
impl PyExpirePlan {
    /// The backups kept, oldest first.
    #[getter]
    fn kept(&self) -> Vec<String> {
        self.0.kept.clone()
    }

    /// The backups removed: dicts with `name`, `end_time`, `files`, `reason`.
    #[getter]
    fn backups<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0.backups)
    }

    /// Leftovers of interrupted backups or expires that are removed.
    #[getter]
    fn incomplete<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0.incomplete)
    }

    /// Per node: `keep_from` (segment), `remove` (files), `bytes`, `kept_files`.
    #[getter]
    fn wal<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0.wal)
    }

    /// Recorded restore points no kept backup reaches.
    #[getter]
    fn unreachable_restore_points(&self) -> Vec<String> {
        self.0.unreachable_restore_points.clone()
    }

    /// Bytes freed in all.
    #[getter]
    fn bytes_freed(&self) -> u64 {
        self.0.bytes_freed
    }
}

/// The plan of `import_folders`: what is copied, in the order it is copied.
#[pyclass(module = "citus_recovery", name = "ImportPlan", extends = PyPlan, frozen)]
pub struct PyImportPlan(pub ImportPlan);

#[pymethods]
impl PyImportPlan {
    /// The repository copied into.
    #[getter]
    fn repository(&self) -> String {
        self.0.repository.clone()
    }

    /// Per node: dicts with `node`, `folder`, `files` (the WAL files to copy), `bytes`.
    #[getter]
    fn wal<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0.wal)
    }

    /// The backups to copy, oldest first: dicts with `backup` (as `list_backups` gives it, as a
    /// dict) and `leftovers` (objects of an unfinished earlier copy, removed first).
    #[getter]
    fn backups<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0.backups)
    }

    /// The names of the restore points to record.
    #[getter]
    fn restore_points(&self) -> Vec<String> {
        self.0
            .restore_points
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    /// Whether there is nothing to copy.
    #[getter]
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What `check` reports. `exit_code` is the monitoring convention: 0 OK, 1 warning, 2
/// critical.
#[pyclass(module = "citus_recovery", name = "CheckReport", frozen)]
pub struct PyCheckReport(pub CheckReport);

#[pymethods]
impl PyCheckReport {
    /// `"ok"`, `"warning"` or `"critical"`: the worst finding.
    #[getter]
    fn status(&self) -> String {
        self.0.status.to_string().to_lowercase()
    }

    /// 0 OK, 1 warning, 2 critical.
    #[getter]
    fn exit_code(&self) -> u8 {
        self.0.exit_code()
    }

    /// Every node's health, as dicts (keys as in `to_json()`).
    #[getter]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0.nodes)
    }

    /// Everything not OK, worst first: dicts with `status`, `node`, `check`, `message`.
    #[getter]
    fn findings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0.findings)
    }

    /// The whole report as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0)
    }

    /// The report as JSON, as `check --json` prints it.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    /// The report in Prometheus' text format, as `check --prometheus` prints it.
    fn to_prometheus(&self) -> String {
        self.0.to_prometheus()
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "<CheckReport {}: {} node(s), {} finding(s)>",
            self.status(),
            self.0.nodes.len(),
            self.0.findings.len()
        )
    }
}
