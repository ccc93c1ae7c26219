//! `Cluster`: one method per command of the core's [`Cluster`] facade. Each method converts its
//! arguments, runs the core call through [`runtime::run`] and wraps the result.

use std::borrow::Cow;
use std::path::PathBuf;

use std::time::Duration;

use chrono::{DateTime, Utc};
use citus_recovery::config::NodeInfo;
use citus_recovery::{Cluster, ClusterConfig, RestoreTarget, RunOptions};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict};

use crate::catalog::{PyBackup, PyRestorePoint};
use crate::errors;
use crate::fork::{PyDrillReport, PyForkPlan, PyForkReport};
use crate::lifecycle::{PyCheckReport, PyExpirePlan, PyImportPlan};
use crate::plans::{
    self, PyAbortPlan, PyArchivePlan, PyBasebackupPlan, PyFinishPlan, PyRestorePlan,
    PyRestorePointPlan,
};
use crate::reports::{
    PyAbortReport, PyArchiveReport, PyClusterStatus, PyFinishReport, PyRestoreReport,
    PyRestoreState,
};
use crate::runtime::{blocking, run};
use crate::verify::PyVerifyReport;
use citus_recovery::import::ImportReport;

/// A Citus (or plain PostgreSQL) cluster of nodes on this host.
#[pyclass(module = "citus_recovery", name = "Cluster", frozen)]
pub struct PyCluster(Cluster);

#[pymethods]
impl PyCluster {
    /// A cluster from a config given as a dict in the `cluster-config.json` format (camelCase
    /// keys, `repository`, `compression` and `binary` included); validated as the command-line
    /// tool validates a config file. With `config_file`, the config is also written there (an
    /// absolute path, replaced whole, mode 0644, links not followed) and read back from it: a
    /// config with a `repository` needs that, since PostgreSQL's `archive_command` and
    /// `restore_command` run `binary --config <config_file>`. The other keywords set the run
    /// options (seconds for times; `concurrency` 0 means every node at once).
    #[new]
    #[pyo3(signature = (config, *, config_file = None, wait_timeout = None, poll_interval = None, concurrency = None))]
    fn new(
        config: &Bound<'_, PyDict>,
        config_file: Option<PathBuf>,
        wait_timeout: Option<f64>,
        poll_interval: Option<f64>,
        concurrency: Option<usize>,
    ) -> PyResult<Self> {
        let py = config.py();
        // Paths may be given as pathlib.Path: JSON gets their string.
        let options = [("default", py.import("os")?.getattr("fspath")?)].into_py_dict(py)?;
        let text: String = py
            .import("json")?
            .call_method("dumps", (config,), Some(&options))?
            .extract()?;
        let config = match config_file {
            None => ClusterConfig::from_json_str(&text, None).map_err(|e| errors::to_py(py, e))?,
            Some(file) => blocking(py, || {
                // Checked before anything is written.
                ClusterConfig::from_json_str(&text, Some(&file))?;
                write_config(&file, &text)
            })?,
        };
        let options = run_options(wait_timeout, poll_interval, concurrency)?;
        Cluster::new(config)
            .map(|c| PyCluster(c.with_options(options)))
            .map_err(|e| errors::to_py(py, e))
    }

    /// A cluster from a `cluster-config.json` file, validated as the command-line tool does;
    /// the keywords as for the constructor.
    #[staticmethod]
    #[pyo3(signature = (path, *, wait_timeout = None, poll_interval = None, concurrency = None))]
    fn from_config(
        py: Python<'_>,
        path: PathBuf,
        wait_timeout: Option<f64>,
        poll_interval: Option<f64>,
        concurrency: Option<usize>,
    ) -> PyResult<Self> {
        let options = run_options(wait_timeout, poll_interval, concurrency)?;
        blocking(py, || Cluster::from_config_file(path)).map(|c| PyCluster(c.with_options(options)))
    }

    /// Every node: name, role, host, port, user, dbname, data directory and a libpq connection
    /// string, the coordinator first.
    #[getter]
    fn nodes(&self) -> Vec<NodeInfo> {
        self.0.config().node_infos()
    }

    /// The libpq connection string of a node (usable with psql and psycopg); no password in it.
    fn dsn(&self, py: Python<'_>, node: &str) -> PyResult<String> {
        self.0.config().dsn(node).map_err(|e| errors::to_py(py, e))
    }

    /// The cluster's name (`clusterName`).
    #[getter]
    fn cluster_name(&self) -> &str {
        &self.0.config().cluster_name
    }

    /// The node names: the coordinator first, then the workers in config order.
    #[getter]
    fn node_names(&self) -> Vec<String> {
        self.0.config().nodes().map(|n| n.name.clone()).collect()
    }

    /// Creates and starts a local cluster (`initdb` of every node); with Citus installed and
    /// `plain` false, also the extension and the workers. With `secure`, the nodes admit only
    /// scram-sha-256 passwords over TLS (the config's `sslrootcert` and `passfile` are written;
    /// see docs/connections.md).
    #[pyo3(signature = (plain = false, secure = false))]
    fn create(&self, py: Python<'_>, plain: bool, secure: bool) -> PyResult<()> {
        if secure {
            run(py, || self.0.create_secure(plain))
        } else {
            run(py, || self.0.create(plain))
        }
    }

    /// Starts every stopped node.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        run(py, || self.0.start())
    }

    /// Stops every running node.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        run(py, || self.0.stop())
    }

    /// Every node's state.
    fn status(&self, py: Python<'_>) -> PyResult<PyClusterStatus> {
        run(py, || self.0.status()).map(PyClusterStatus)
    }

    /// Plans `prepare_archiving`; changes nothing. Archiving another tool set up is refused
    /// (`ArchivingInUseError`) unless `replace_existing`.
    #[pyo3(signature = (restart = true, replace_existing = false))]
    fn plan_prepare_archiving(
        &self,
        py: Python<'_>,
        restart: bool,
        replace_existing: bool,
    ) -> PyResult<Py<PyArchivePlan>> {
        let plan = run(py, || {
            self.0.plan_prepare_archiving(restart, replace_existing)
        })?;
        plans::wrap(py, plan, PyArchivePlan)
    }

    /// Turns on WAL archiving on every node; with `restart`, restarts the nodes whose
    /// `wal_level` or `archive_mode` changed. Archiving another tool set up (`archive_command`,
    /// another `archive_library` or archive folder) raises `ArchivingInUseError` and changes
    /// nothing, unless `replace_existing`: then it is taken over and that tool's WAL stream stops.
    /// `progress` is called with every `ProgressEvent`.
    #[pyo3(signature = (restart = true, replace_existing = false, *, progress = None))]
    fn prepare_archiving(
        &self,
        py: Python<'_>,
        restart: bool,
        replace_existing: bool,
        progress: Option<PyObject>,
    ) -> PyResult<PyArchiveReport> {
        let c = self.with_progress(progress);
        run(py, || c.prepare_archiving(restart, replace_existing)).map(PyArchiveReport)
    }

    /// Plans `basebackup`; changes nothing.
    #[pyo3(signature = (name = None))]
    fn plan_basebackup(
        &self,
        py: Python<'_>,
        name: Option<String>,
    ) -> PyResult<Py<PyBasebackupPlan>> {
        let plan = run(py, || self.0.plan_basebackup(name.as_deref()))?;
        plans::wrap(py, plan, PyBasebackupPlan)
    }

    /// Takes a base backup of every node at once; the name defaults to the UTC date and time.
    /// `progress` is called with every `ProgressEvent` (bytes sent of each node's size).
    #[pyo3(signature = (name = None, *, progress = None))]
    fn basebackup(
        &self,
        py: Python<'_>,
        name: Option<String>,
        progress: Option<PyObject>,
    ) -> PyResult<PyBackup> {
        let c = self.with_progress(progress);
        run(py, || c.basebackup(name.as_deref())).map(PyBackup)
    }

    /// Plans `create_restore_point`; changes nothing.
    #[pyo3(signature = (name = None))]
    fn plan_restore_point(
        &self,
        py: Python<'_>,
        name: Option<String>,
    ) -> PyResult<Py<PyRestorePointPlan>> {
        let plan = run(py, || self.0.plan_restore_point(name.as_deref()))?;
        plans::wrap(py, plan, PyRestorePointPlan)
    }

    /// Creates a named restore point on every node and waits until it is archived everywhere;
    /// the name defaults to the UTC date and time.
    /// `progress` is called with every `ProgressEvent`.
    #[pyo3(signature = (name = None, *, progress = None))]
    fn create_restore_point(
        &self,
        py: Python<'_>,
        name: Option<String>,
        progress: Option<PyObject>,
    ) -> PyResult<PyRestorePoint> {
        let c = self.with_progress(progress);
        run(py, || c.create_restore_point(name.as_deref())).map(PyRestorePoint)
    }

    /// Plans `restore_start`; changes nothing. The backup and restore point default to the
    /// config's `backupToRestore` and `restorePoint`; `before` (an aware `datetime`) instead
    /// picks the newest restore point on every node created before it, and a note of the plan
    /// says which and how far before.
    #[pyo3(signature = (backup = None, restore_point = None, *, before = None))]
    fn plan_restore_start(
        &self,
        py: Python<'_>,
        backup: Option<String>,
        restore_point: Option<String>,
        before: Option<DateTime<Utc>>,
    ) -> PyResult<Py<PyRestorePlan>> {
        let target = RestoreTarget::new(restore_point, before).map_err(|e| errors::to_py(py, e))?;
        let plan = run(py, || {
            self.0.plan_restore_start_to(backup.as_deref(), &target)
        })?;
        plans::wrap(py, plan, PyRestorePlan)
    }

    /// Runs every pre-flight check of a restore and changes nothing; without a backup, the newest
    /// that reaches the restore point on every node is chosen. `before`: as for
    /// `plan_restore_start` (the choice is logged and in the report's `before_note`).
    #[pyo3(signature = (backup = None, restore_point = None, *, before = None))]
    fn verify(
        &self,
        py: Python<'_>,
        backup: Option<String>,
        restore_point: Option<String>,
        before: Option<DateTime<Utc>>,
    ) -> PyResult<PyVerifyReport> {
        let target = RestoreTarget::new(restore_point, before).map_err(|e| errors::to_py(py, e))?;
        run(py, || self.0.verify_to(backup.as_deref(), &target)).map(PyVerifyReport)
    }

    /// Restores every node from the backup and waits until all are paused at the restore point.
    /// `before`: as for `plan_restore_start` (the choice is logged and in the report's
    /// `before_note`). `progress` is called with
    /// every `ProgressEvent` (extraction bytes, WAL replayed towards the point).
    #[pyo3(signature = (backup = None, restore_point = None, *, before = None, progress = None))]
    fn restore_start(
        &self,
        py: Python<'_>,
        backup: Option<String>,
        restore_point: Option<String>,
        before: Option<DateTime<Utc>>,
        progress: Option<PyObject>,
    ) -> PyResult<PyRestoreReport> {
        let target = RestoreTarget::new(restore_point, before).map_err(|e| errors::to_py(py, e))?;
        let c = self.with_progress(progress);
        run(py, || c.restore_start_to(backup.as_deref(), &target)).map(PyRestoreReport)
    }

    /// Plans `restore_finish`; changes nothing.
    fn plan_restore_finish(&self, py: Python<'_>) -> PyResult<Py<PyFinishPlan>> {
        let plan = run(py, || self.0.plan_restore_finish())?;
        plans::wrap(py, plan, PyFinishPlan)
    }

    /// Ends recovery on every node: the restored cluster becomes writable. `progress` is called
    /// with every `ProgressEvent`.
    #[pyo3(signature = (*, progress = None))]
    fn restore_finish(
        &self,
        py: Python<'_>,
        progress: Option<PyObject>,
    ) -> PyResult<PyFinishReport> {
        let c = self.with_progress(progress);
        run(py, || c.restore_finish()).map(PyFinishReport)
    }

    /// Plans `restore_abort`; changes nothing.
    fn plan_restore_abort(&self, py: Python<'_>) -> PyResult<Py<PyAbortPlan>> {
        let plan = run(py, || self.0.plan_restore_abort())?;
        plans::wrap(py, plan, PyAbortPlan)
    }

    /// Undoes `restore_start`: stops the recovering nodes and puts the old data directories back.
    /// `progress` is called with every `ProgressEvent`.
    #[pyo3(signature = (*, progress = None))]
    fn restore_abort(&self, py: Python<'_>, progress: Option<PyObject>) -> PyResult<PyAbortReport> {
        let c = self.with_progress(progress);
        run(py, || c.restore_abort()).map(PyAbortReport)
    }

    /// Runs a plan from one of the `plan_*` methods exactly as it was built and printed, after
    /// checking under the cluster's lock that the cluster has not changed since (a node started,
    /// stopped or promoted, a restore begun or ended, a moved path or the backup gone): then
    /// `PlanOutdatedError` is raised and nothing is changed. Returns what the plain command
    /// returns (`ArchiveReport`, `Backup`, `RestorePoint`, `RestoreReport`, `FinishReport`,
    /// `AbortReport`).
    fn apply(&self, plan: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.apply_as(plan, |p: &PyArchivePlan| &p.0, PyArchiveReport)
            .or_else(|| self.apply_as(plan, |p: &PyBasebackupPlan| &p.0, PyBackup))
            .or_else(|| self.apply_as(plan, |p: &PyRestorePointPlan| &p.0, PyRestorePoint))
            .or_else(|| self.apply_as(plan, |p: &PyRestorePlan| &p.0, PyRestoreReport))
            .or_else(|| self.apply_as(plan, |p: &PyFinishPlan| &p.0, PyFinishReport))
            .or_else(|| self.apply_as(plan, |p: &PyAbortPlan| &p.0, PyAbortReport))
            .unwrap_or_else(|| {
                Err(PyTypeError::new_err(format!(
                    "apply() takes a plan from one of the Cluster's plan_* methods, not {}",
                    plan.get_type().name()?
                )))
            })
    }

    /// Complete backups, oldest first.
    fn list_backups(&self, py: Python<'_>) -> PyResult<Vec<PyBackup>> {
        let backups = run(py, || self.0.list_backups())?;
        Ok(backups.into_iter().map(PyBackup).collect())
    }

    /// Recorded restore points, oldest first.
    fn list_restore_points(&self, py: Python<'_>) -> PyResult<Vec<PyRestorePoint>> {
        let points = run(py, || self.0.list_restore_points())?;
        Ok(points.into_iter().map(PyRestorePoint).collect())
    }

    /// Removes the restore point `name` from the catalog, under the cluster lock, and returns
    /// it. The WAL record itself stays in every node's WAL: recovery can still stop at it by
    /// name. An unknown name raises `UnknownRestorePointError` naming those that exist.
    fn delete_restore_point(&self, py: Python<'_>, name: String) -> PyResult<PyRestorePoint> {
        run(py, || self.0.delete_restore_point(&name)).map(PyRestorePoint)
    }

    /// Plans `import_folders`: the WAL files, backups and restore points of `backupBaseFolder`
    /// and `archiveBaseFolder` that the repository lacks. Changes nothing.
    fn plan_import_folders(&self, py: Python<'_>) -> PyResult<Py<PyImportPlan>> {
        let plan = run(py, || self.0.plan_import_folders())?;
        plans::wrap(py, plan, PyImportPlan)
    }

    /// Copies what `backupBaseFolder` and `archiveBaseFolder` hold and the repository lacks into
    /// the repository, under the cluster lock: every backup file checked against its manifest,
    /// a backup offered only once complete. The folders are unchanged; run again after a
    /// failure, it carries on.
    fn import_folders(&self, py: Python<'_>) -> PyResult<ImportReport> {
        run(py, || self.0.import_folders())
    }

    /// Plans `expire`: the backups, WAL files and (with `restore_points`) restore points that
    /// would go, and the bytes freed. `retain_full`/`retain_days` override the config's
    /// `retention`. Changes nothing.
    #[pyo3(signature = (retain_full = None, retain_days = None, restore_points = false))]
    fn plan_expire(
        &self,
        py: Python<'_>,
        retain_full: Option<u32>,
        retain_days: Option<u32>,
        restore_points: bool,
    ) -> PyResult<Py<PyExpirePlan>> {
        let plan = run(py, || {
            self.0.plan_expire(retain_full, retain_days, restore_points)
        })?;
        plans::wrap(py, plan, PyExpirePlan)
    }

    /// Removes backups the retention does not keep and the WAL no kept backup needs, under the
    /// cluster lock; safe to interrupt (run it again to finish). Returns the plan it carried out.
    #[pyo3(signature = (retain_full = None, retain_days = None, restore_points = false))]
    fn expire(
        &self,
        py: Python<'_>,
        retain_full: Option<u32>,
        retain_days: Option<u32>,
        restore_points: bool,
    ) -> PyResult<Py<PyExpirePlan>> {
        let done = run(py, || {
            self.0.expire(retain_full, retain_days, restore_points)
        })?;
        plans::wrap(py, done, PyExpirePlan)
    }

    /// Archiving, backup and restore point health with the config's thresholds; `round_trip`
    /// switches WAL on every node and waits until the segment is archived.
    #[pyo3(signature = (round_trip = false))]
    fn check(&self, py: Python<'_>, round_trip: bool) -> PyResult<PyCheckReport> {
        run(py, || self.0.check(round_trip)).map(PyCheckReport)
    }

    /// Plans `fork`: this (live) cluster restored to `restore_point` into `target` (a second
    /// `Cluster`: its own folders and ports, the same node names), paused there or, with
    /// `promote`, writable with `pg_dist_node` pointing at the fork's nodes. Reads this
    /// cluster's catalog and archive only; `archive`: the fork archives its WAL into its own
    /// `archiveBaseFolder` (default: `archive_mode` off). Changes nothing.
    #[pyo3(signature = (target, *, restore_point = None, backup = None, promote = false, archive = false))]
    fn plan_fork(
        &self,
        py: Python<'_>,
        target: PyRef<'_, PyCluster>,
        restore_point: Option<String>,
        backup: Option<String>,
        promote: bool,
        archive: bool,
    ) -> PyResult<Py<PyForkPlan>> {
        let t = target.0.clone();
        let plan = run(py, || {
            self.0.plan_fork(
                &t,
                backup.as_deref(),
                restore_point.as_deref(),
                promote,
                archive,
            )
        })?;
        plans::wrap(py, plan, PyForkPlan)
    }

    /// `fork` (see `plan_fork`): takes the fork's lock, none of this cluster's.
    #[pyo3(signature = (target, *, restore_point = None, backup = None, promote = false, archive = false))]
    fn fork(
        &self,
        py: Python<'_>,
        target: PyRef<'_, PyCluster>,
        restore_point: Option<String>,
        backup: Option<String>,
        promote: bool,
        archive: bool,
    ) -> PyResult<PyForkReport> {
        let t = target.0.clone();
        run(py, || {
            self.0.fork(
                &t,
                backup.as_deref(),
                restore_point.as_deref(),
                promote,
                archive,
            )
        })
        .map(PyForkReport)
    }

    /// `drill`: the newest restore point forked onto free ports in a temporary folder, the
    /// config's `drill.checks` run there, the fork torn down, the result recorded (where
    /// `check` reports it). A failed drill is a report with `exit_code` 2; an exception means
    /// it could not run.
    fn drill(&self, py: Python<'_>) -> PyResult<PyDrillReport> {
        run(py, || self.0.drill()).map(PyDrillReport)
    }

    /// The restore under way, if `restore_start` has begun one that `restore_finish` has not
    /// ended.
    fn restore_state(&self, py: Python<'_>) -> PyResult<Option<PyRestoreState>> {
        Ok(blocking(py, || self.0.restore_state())?.map(PyRestoreState))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Cluster(cluster_name={}, nodes={})",
            crate::convert::repr(py, self.cluster_name())?,
            self.node_names().into_pyobject(py)?.repr()?
        ))
    }
}

/// Writes the config text to `file` (absolute) whole: a new file beside it (created new, so a
/// planted link is never followed), readable by the servers' user, then renamed over it; returns the config
/// read back from `file`, so PostgreSQL's commands name exactly what was checked.
fn write_config(file: &std::path::Path, text: &str) -> citus_recovery::Result<ClusterConfig> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if !file.is_absolute() {
        return Err(citus_recovery::Error::InvalidArgument {
            what: "config_file",
            value: file.display().to_string(),
            problem: "is relative; give an absolute path (PostgreSQL's commands name it)".into(),
        });
    }
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = file.with_file_name(format!(
        ".{}.{}.tmp",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        // rename replaces a link at `file` itself, never what it points to.
        std::fs::rename(&tmp, file)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        citus_recovery::Error::io("write the config file", file, e)
    })?;
    ClusterConfig::from_file(file)
}

impl PyCluster {
    /// The cluster, reporting progress to `callback` when one is given.
    fn with_progress(&self, callback: Option<PyObject>) -> Cow<'_, Cluster> {
        match callback {
            None => Cow::Borrowed(&self.0),
            Some(callback) => {
                let options = RunOptions {
                    progress: Some(crate::progress::sink(callback)),
                    ..self.0.options().clone()
                };
                Cow::Owned(self.0.clone().with_options(options))
            }
        }
    }
}

impl PyCluster {
    /// [`Cluster::apply`] of `plan` when it is a `W` (the class of one kind of plan, holding the
    /// core plan `inner` returns), its report as `wrap` makes it; `None` for another class.
    fn apply_as<W, P, O>(
        &self,
        plan: &Bound<'_, PyAny>,
        inner: impl Fn(&W) -> &P,
        wrap: impl FnOnce(P::Report) -> O,
    ) -> Option<PyResult<Py<PyAny>>>
    where
        W: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync,
        P: citus_recovery::Apply,
        O: pyo3::PyClass + Into<pyo3::PyClassInitializer<O>>,
    {
        let py = plan.py();
        let p = inner(plan.downcast::<W>().ok()?.get());
        Some(
            run(py, || self.0.apply(p))
                .and_then(|report| Ok(Py::new(py, wrap(report))?.into_any())),
        )
    }
}

/// The run options from the keywords; the core's defaults where none is given.
fn run_options(
    wait_timeout: Option<f64>,
    poll_interval: Option<f64>,
    concurrency: Option<usize>,
) -> PyResult<RunOptions> {
    let seconds = |name: &str, v: f64| {
        Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "{name} must be a positive number of seconds, not {v}"
                ))
            })
    };
    let mut options = RunOptions::default();
    if let Some(v) = wait_timeout {
        options.wait_timeout = seconds("wait_timeout", v)?;
    }
    if let Some(v) = poll_interval {
        options.poll_interval = seconds("poll_interval", v)?;
    }
    if let Some(v) = concurrency {
        options.concurrency = v;
    }
    Ok(options)
}
