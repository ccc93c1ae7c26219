//! The typed plans. `Plan` is the base class: `str(plan)` is the command-line tool's `--dry-run`
//! text, `plan.to_json()` its `--dry-run --json` output, `plan.steps` one `node: step` line per
//! step. The subclasses add their command's own fields.

use citus_recovery::plan::{NodePlan, Phase};
use citus_recovery::{
    AbortPlan, ArchivePlan, BasebackupPlan, FinishPlan, Plan, RestorePlan, RestorePointPlan,
};
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::types::PyDict;
use pyo3::PyClass;

use crate::convert::repr;
use crate::reports::PyRestoreState;

/// What every plan offers. Building a plan changed nothing on any node.
#[pyclass(module = "citus_recovery", name = "Plan", subclass, frozen)]
pub struct PyPlan {
    command: &'static str,
    text: String,
    json: String,
    steps: Vec<String>,
    notes: Vec<String>,
    phases: Vec<Phase>,
}

impl PyPlan {
    /// Everything the core's [`Plan`] trait offers, read once: plans are plain data.
    fn of<P: Plan>(plan: &P) -> Self {
        PyPlan {
            command: plan.command(),
            text: plan.to_string(),
            json: plan.to_json(),
            steps: plan.step_lines(),
            notes: plan.notes().to_vec(),
            phases: plan.phases().to_vec(),
        }
    }
}

/// Wraps a core plan in its Python class (a subclass of `Plan`).
pub fn wrap<P, C>(py: Python<'_>, plan: P, class: impl FnOnce(P) -> C) -> PyResult<Py<C>>
where
    P: Plan,
    C: PyClass<BaseType = PyPlan, Frozen = True>,
{
    let base = PyPlan::of(&plan);
    Py::new(py, PyClassInitializer::from(base).add_subclass(class(plan)))
}

#[pymethods]
impl PyPlan {
    /// The command this plan belongs to (`"restore-start"`).
    #[getter]
    fn command(&self) -> &'static str {
        self.command
    }

    /// Every step as one line, `"node: step"`, in the order they are listed.
    #[getter]
    fn steps(&self) -> Vec<String> {
        self.steps.clone()
    }

    /// Remarks to read before running it (restarts needed, what is skipped).
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    /// The phases, in order; within a phase the nodes run at once.
    #[getter]
    fn phases(&self) -> Vec<PyPhase> {
        self.phases.iter().cloned().map(PyPhase).collect()
    }

    /// The plan as pretty JSON, as `--dry-run --json` prints it.
    fn to_json(&self) -> String {
        self.json.clone()
    }

    fn __str__(&self) -> String {
        self.text.clone()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let this = slf.get();
        Ok(format!(
            "<{} {}: {} phase(s), {} step(s)>",
            slf.get_type().name()?,
            this.command,
            this.phases.len(),
            this.steps.len()
        ))
    }
}

/// Steps that run on several nodes at once.
#[pyclass(module = "citus_recovery", name = "Phase", frozen)]
pub struct PyPhase(Phase);

#[pymethods]
impl PyPhase {
    /// What the phase does.
    #[getter]
    fn title(&self) -> &str {
        &self.0.title
    }

    /// Every node's steps.
    #[getter]
    fn nodes(&self) -> Vec<PyNodePlan> {
        self.0.nodes.iter().cloned().map(PyNodePlan).collect()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let nodes: Vec<&str> = self.0.nodes.iter().map(|n| n.node.as_str()).collect();
        Ok(format!(
            "Phase(title={}, nodes={})",
            repr(py, &self.0.title)?,
            nodes.into_pyobject(py)?.repr()?
        ))
    }
}

/// One node's steps within a phase.
#[pyclass(module = "citus_recovery", name = "NodePlan", frozen)]
pub struct PyNodePlan(NodePlan);

#[pymethods]
impl PyNodePlan {
    /// The node's name.
    #[getter]
    fn node(&self) -> &str {
        &self.0.node
    }

    /// Its steps, in order, as the dry-run text words them.
    #[getter]
    fn steps(&self) -> Vec<String> {
        self.0.steps.iter().map(ToString::to_string).collect()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "NodePlan(node={}, steps={})",
            repr(py, &self.0.node)?,
            self.0.steps.len()
        ))
    }
}

/// The plan of `prepare_archiving`.
#[pyclass(module = "citus_recovery", name = "ArchivePlan", extends = PyPlan, frozen)]
pub struct PyArchivePlan(pub ArchivePlan);

#[pymethods]
impl PyArchivePlan {
    /// Nodes that need a restart the plan does not do (`restart=False`), with the settings.
    #[getter]
    fn restart_pending<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let pending = PyDict::new(py);
        for (node, settings) in &self.0.restart_pending {
            pending.set_item(node, settings)?;
        }
        Ok(pending)
    }
}

/// The plan of `basebackup`.
#[pyclass(module = "citus_recovery", name = "BasebackupPlan", extends = PyPlan, frozen)]
pub struct PyBasebackupPlan(pub BasebackupPlan);

#[pymethods]
impl PyBasebackupPlan {
    /// The backup's name.
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }

    /// The Citus version on the coordinator, `None` on plain PostgreSQL.
    #[getter]
    fn citus_version(&self) -> Option<&str> {
        self.0.citus_version.as_deref()
    }
}

/// The plan of `create_restore_point`.
#[pyclass(module = "citus_recovery", name = "RestorePointPlan", extends = PyPlan, frozen)]
pub struct PyRestorePointPlan(pub RestorePointPlan);

#[pymethods]
impl PyRestorePointPlan {
    /// The restore point's name.
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether `citus_create_restore_point` will make it (else `pg_create_restore_point` on
    /// every node).
    #[getter]
    fn citus(&self) -> bool {
        self.0.citus
    }
}

/// The plan of `restore_start`.
#[pyclass(module = "citus_recovery", name = "RestorePlan", extends = PyPlan, frozen)]
pub struct PyRestorePlan(pub RestorePlan);

#[pymethods]
impl PyRestorePlan {
    /// The backup to restore.
    #[getter]
    fn backup(&self) -> &str {
        &self.0.state.backup
    }

    /// The restore point to recover to.
    #[getter]
    fn restore_point(&self) -> &str {
        &self.0.state.restore_point
    }

    /// The restore state that will be written before any node is touched.
    #[getter]
    fn state(&self) -> PyRestoreState {
        PyRestoreState(self.0.state.clone())
    }
}

/// The plan of `restore_finish`.
#[pyclass(module = "citus_recovery", name = "FinishPlan", extends = PyPlan, frozen)]
pub struct PyFinishPlan(pub FinishPlan);

/// The plan of `restore_abort`.
#[pyclass(module = "citus_recovery", name = "AbortPlan", extends = PyPlan, frozen)]
pub struct PyAbortPlan(pub AbortPlan);

#[pymethods]
impl PyAbortPlan {
    /// The backup of the restore being undone.
    #[getter]
    fn backup(&self) -> &str {
        &self.0.state.backup
    }

    /// The restore point of the restore being undone.
    #[getter]
    fn restore_point(&self) -> &str {
        &self.0.state.restore_point
    }

    /// The restore being undone.
    #[getter]
    fn state(&self) -> PyRestoreState {
        PyRestoreState(self.0.state.clone())
    }
}
