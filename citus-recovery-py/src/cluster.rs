//! `Cluster`: one method per command of the core's [`Cluster`] facade. Each method converts its
//! arguments, runs the core call through [`runtime::run`] and wraps the result.

use std::path::PathBuf;

use std::time::Duration;

use citus_recovery::config::NodeInfo;
use citus_recovery::{Cluster, ClusterConfig, RunOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict};

use crate::catalog::{PyBackup, PyRestorePoint};
use crate::errors;
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

/// A Citus (or plain PostgreSQL) cluster of nodes on this host.
#[pyclass(module = "citus_recovery", name = "Cluster", frozen)]
pub struct PyCluster(Cluster);

#[pymethods]
impl PyCluster {
    /// A cluster from a config given as a dict in the `cluster-config.json` format (camelCase
    /// keys); validated as the command-line tool validates a config file. The keywords set the
    /// run options (seconds for times; `concurrency` 0 means every node at once).
    #[new]
    #[pyo3(signature = (config, *, wait_timeout = None, poll_interval = None, concurrency = None))]
    fn new(
        config: &Bound<'_, PyDict>,
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
        let config = ClusterConfig::from_json_str(&text, None).map_err(|e| errors::to_py(py, e))?;
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
    #[pyo3(signature = (restart = true, replace_existing = false))]
    fn prepare_archiving(
        &self,
        py: Python<'_>,
        restart: bool,
        replace_existing: bool,
    ) -> PyResult<PyArchiveReport> {
        run(py, || self.0.prepare_archiving(restart, replace_existing)).map(PyArchiveReport)
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
    #[pyo3(signature = (name = None))]
    fn basebackup(&self, py: Python<'_>, name: Option<String>) -> PyResult<PyBackup> {
        run(py, || self.0.basebackup(name.as_deref())).map(PyBackup)
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
    #[pyo3(signature = (name = None))]
    fn create_restore_point(
        &self,
        py: Python<'_>,
        name: Option<String>,
    ) -> PyResult<PyRestorePoint> {
        run(py, || self.0.create_restore_point(name.as_deref())).map(PyRestorePoint)
    }

    /// Plans `restore_start`; changes nothing. The backup and restore point default to the
    /// config's `backupToRestore` and `restorePoint`.
    #[pyo3(signature = (backup = None, restore_point = None))]
    fn plan_restore_start(
        &self,
        py: Python<'_>,
        backup: Option<String>,
        restore_point: Option<String>,
    ) -> PyResult<Py<PyRestorePlan>> {
        let plan = run(py, || {
            self.0
                .plan_restore_start(backup.as_deref(), restore_point.as_deref())
        })?;
        plans::wrap(py, plan, PyRestorePlan)
    }

    /// Runs every pre-flight check of a restore and changes nothing; without a backup, the newest
    /// that reaches the restore point on every node is chosen.
    #[pyo3(signature = (backup = None, restore_point = None))]
    fn verify(
        &self,
        py: Python<'_>,
        backup: Option<String>,
        restore_point: Option<String>,
    ) -> PyResult<PyVerifyReport> {
        run(py, || {
            self.0.verify(backup.as_deref(), restore_point.as_deref())
        })
        .map(PyVerifyReport)
    }

    /// Restores every node from the backup and waits until all are paused at the restore point.
    #[pyo3(signature = (backup = None, restore_point = None))]
    fn restore_start(
        &self,
        py: Python<'_>,
        backup: Option<String>,
        restore_point: Option<String>,
    ) -> PyResult<PyRestoreReport> {
        run(py, || {
            self.0
                .restore_start(backup.as_deref(), restore_point.as_deref())
        })
        .map(PyRestoreReport)
    }

    /// Plans `restore_finish`; changes nothing.
    fn plan_restore_finish(&self, py: Python<'_>) -> PyResult<Py<PyFinishPlan>> {
        let plan = run(py, || self.0.plan_restore_finish())?;
        plans::wrap(py, plan, PyFinishPlan)
    }

    /// Ends recovery on every node: the restored cluster becomes writable.
    fn restore_finish(&self, py: Python<'_>) -> PyResult<PyFinishReport> {
        run(py, || self.0.restore_finish()).map(PyFinishReport)
    }

    /// Plans `restore_abort`; changes nothing.
    fn plan_restore_abort(&self, py: Python<'_>) -> PyResult<Py<PyAbortPlan>> {
        let plan = run(py, || self.0.plan_restore_abort())?;
        plans::wrap(py, plan, PyAbortPlan)
    }

    /// Undoes `restore_start`: stops the recovering nodes and puts the old data directories back.
    fn restore_abort(&self, py: Python<'_>) -> PyResult<PyAbortReport> {
        run(py, || self.0.restore_abort()).map(PyAbortReport)
    }

    /// Complete backups, oldest first.
    fn list_backups(&self, py: Python<'_>) -> PyResult<Vec<PyBackup>> {
        let backups = blocking(py, || self.0.list_backups())?;
        Ok(backups.into_iter().map(PyBackup).collect())
    }

    /// Recorded restore points, oldest first.
    fn list_restore_points(&self, py: Python<'_>) -> PyResult<Vec<PyRestorePoint>> {
        let points = blocking(py, || self.0.list_restore_points())?;
        Ok(points.into_iter().map(PyRestorePoint).collect())
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
