//! `VerifyReport` and `Check`: what `Cluster.verify` found.

use citus_recovery::verify::Check;
use citus_recovery::VerifyReport;
use pyo3::prelude::*;

use crate::convert;

/// Every pre-flight check for one backup and restore point; nothing was changed.
#[pyclass(module = "citus_recovery", name = "VerifyReport", frozen)]
pub struct PyVerifyReport(pub VerifyReport);

#[pymethods]
impl PyVerifyReport {
    /// The backup checked.
    #[getter]
    fn backup(&self) -> &str {
        &self.0.backup
    }

    /// Why that backup, when it was chosen rather than given.
    #[getter]
    fn chosen_because(&self) -> Option<&str> {
        self.0.chosen_because.as_deref()
    }

    /// The restore point checked.
    #[getter]
    fn restore_point(&self) -> &str {
        &self.0.restore_point
    }

    /// When the restore point was chosen by `before`: which, and how far before that time it
    /// was created, in words; `None` when it was named.
    #[getter]
    fn before_note(&self) -> Option<&str> {
        self.0.before.as_ref().map(|c| c.note.as_str())
    }

    /// Whether every check passed.
    #[getter]
    fn ok(&self) -> bool {
        self.0.ok()
    }

    /// Every check, in order.
    #[getter]
    fn checks(&self) -> Vec<PyCheck> {
        self.0.checks.iter().cloned().map(PyCheck).collect()
    }

    /// The failed checks, one line each, naming the node.
    fn failures(&self) -> Vec<String> {
        self.0.failures()
    }

    /// The report as JSON.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __str__(&self) -> String {
        self.0.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "VerifyReport(backup={:?}, restore_point={:?}, ok={})",
            self.0.backup,
            self.0.restore_point,
            if self.0.ok() { "True" } else { "False" }
        )
    }
}

/// The outcome of one check.
#[pyclass(module = "citus_recovery", name = "Check", frozen)]
pub struct PyCheck(pub Check);

#[pymethods]
impl PyCheck {
    /// The node checked, `None` for a cluster-wide check.
    #[getter]
    fn node(&self) -> Option<&str> {
        self.0.node.as_deref()
    }

    /// What was checked.
    #[getter]
    fn check(&self) -> &str {
        &self.0.check
    }

    /// Whether it passed.
    #[getter]
    fn ok(&self) -> bool {
        self.0.ok
    }

    /// What was found; for a failure, also what to do.
    #[getter]
    fn detail(&self) -> &str {
        &self.0.detail
    }

    fn __repr__(&self) -> String {
        format!(
            "Check(node={:?}, check={:?}, ok={})",
            self.0.node,
            self.0.check,
            if self.0.ok { "True" } else { "False" }
        )
    }
}
