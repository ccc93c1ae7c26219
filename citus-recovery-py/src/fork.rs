//! `fork` and `drill`: `ForkPlan` (a `Plan`), `ForkReport` and `DrillReport` (with the exit
//! code monitoring wants).

use citus_recovery::drill::DrillReport;
use citus_recovery::fork::{ForkPlan, ForkReport};
use pyo3::prelude::*;

use crate::convert;
use crate::plans::PyPlan;

/// The plan of `fork`: the live cluster restored into a second cluster beside it.
#[pyclass(module = "citus_recovery", name = "ForkPlan", extends = PyPlan, frozen)]
pub struct PyForkPlan(pub ForkPlan);

#[pymethods]
impl PyForkPlan {
    /// The backup restored.
    #[getter]
    fn backup(&self) -> String {
        self.0.backup.clone()
    }

    /// The restore point.
    #[getter]
    fn restore_point(&self) -> String {
        self.0.restore_point.clone()
    }

    /// Whether the fork is promoted (writable, `pg_dist_node` rewritten) or left paused.
    #[getter]
    fn promote(&self) -> bool {
        self.0.promote
    }

    /// Every node's address, live and fork: dicts with `node`, `from_host`, `from_port`,
    /// `to_host`, `to_port`.
    #[getter]
    fn moves<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0.moves)
    }
}

/// What `fork` did.
#[pyclass(module = "citus_recovery", name = "ForkReport", frozen)]
pub struct PyForkReport(pub ForkReport);

#[pymethods]
impl PyForkReport {
    /// Whether the fork was promoted.
    #[getter]
    fn promoted(&self) -> bool {
        self.0.promoted
    }

    /// Seconds until the fork was paused at the point (promoted: writable).
    #[getter]
    fn seconds(&self) -> f64 {
        self.0.seconds
    }

    /// The whole report as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0)
    }

    /// The report as JSON, as `fork --json` prints it.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }
}

/// What `drill` found. `exit_code`: 0 passed, 2 failed.
#[pyclass(module = "citus_recovery", name = "DrillReport", frozen)]
pub struct PyDrillReport(pub DrillReport);

#[pymethods]
impl PyDrillReport {
    /// `"ok"` or `"critical"`.
    #[getter]
    fn status(&self) -> String {
        self.0.status.to_string().to_lowercase()
    }

    /// 0 passed, 2 failed.
    #[getter]
    fn exit_code(&self) -> u8 {
        self.0.exit_code()
    }

    /// Seconds until the fork was writable at the point; `None` when it failed.
    #[getter]
    fn seconds_to_recover(&self) -> Option<f64> {
        self.0.seconds_to_recover
    }

    /// Every SQL check: dicts with `node`, `sql`, `expect`, `got`, `error`, `passed`.
    #[getter]
    fn checks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0.checks)
    }

    /// The whole report as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_python(py, &self.0)
    }

    /// The report as JSON, as `drill --json` prints it.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }
}
