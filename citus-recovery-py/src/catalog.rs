//! `Backup`, `NodeBackup`, `RestorePoint` and `NodeRestorePoint`: the core's catalog records,
//! read-only.

use chrono::{DateTime, Utc};
use citus_recovery::{Backup, NodeBackup, NodeRestorePoint, RestorePoint};
use pyo3::prelude::*;

use crate::convert::{self, repr};

/// A complete base backup of the whole cluster.
#[pyclass(module = "citus_recovery", name = "Backup", frozen, eq)]
#[derive(PartialEq)]
pub struct PyBackup(pub Backup);

#[pymethods]
impl PyBackup {
    /// The backup's name (also its folder name).
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }

    /// The cluster's name from the config.
    #[getter]
    fn cluster_name(&self) -> &str {
        &self.0.cluster_name
    }

    /// When the backup started (UTC).
    #[getter]
    fn start_time(&self) -> DateTime<Utc> {
        self.0.start_time
    }

    /// When every node's backup was complete (UTC).
    #[getter]
    fn end_time(&self) -> DateTime<Utc> {
        self.0.end_time
    }

    /// The Citus version on the coordinator, `None` on plain PostgreSQL.
    #[getter]
    fn citus_version(&self) -> Option<&str> {
        self.0.citus_version.as_deref()
    }

    /// Every node's part, in config order.
    #[getter]
    fn nodes(&self) -> Vec<PyNodeBackup> {
        self.0.nodes.iter().cloned().map(PyNodeBackup).collect()
    }

    /// Total bytes over all nodes.
    #[getter]
    fn bytes(&self) -> u64 {
        self.0.bytes()
    }

    /// The part of the backup for `node`, or `None`.
    fn node(&self, node: &str) -> Option<PyNodeBackup> {
        self.0.node(node).cloned().map(PyNodeBackup)
    }

    /// The backup's manifest as JSON.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let nodes: Vec<&str> = self.0.nodes.iter().map(|n| n.node.as_str()).collect();
        Ok(format!(
            "Backup(name={}, cluster_name={}, start_time='{}', nodes={}, bytes={})",
            repr(py, &self.0.name)?,
            repr(py, &self.0.cluster_name)?,
            self.0.start_time.to_rfc3339(),
            nodes.into_pyobject(py)?.repr()?,
            self.0.bytes()
        ))
    }
}

/// One node's part of a base backup.
#[pyclass(module = "citus_recovery", name = "NodeBackup", frozen, eq)]
#[derive(PartialEq)]
pub struct PyNodeBackup(pub NodeBackup);

#[pymethods]
impl PyNodeBackup {
    /// The backup's name.
    #[getter]
    fn backup(&self) -> &str {
        &self.0.backup
    }

    /// The node's name.
    #[getter]
    fn node(&self) -> &str {
        &self.0.node
    }

    /// Where the backup's WAL starts, as PostgreSQL writes an LSN (`0/2000028`).
    #[getter]
    fn start_lsn(&self) -> String {
        self.0.start_lsn.to_string()
    }

    /// Where it ends: recovery must replay at least this far.
    #[getter]
    fn end_lsn(&self) -> String {
        self.0.end_lsn.to_string()
    }

    /// The timeline the backup was taken on.
    #[getter]
    fn timeline(&self) -> u32 {
        self.0.timeline
    }

    /// When pg_basebackup started (UTC).
    #[getter]
    fn start_time(&self) -> DateTime<Utc> {
        self.0.start_time
    }

    /// When the node's backup was complete (UTC).
    #[getter]
    fn end_time(&self) -> DateTime<Utc> {
        self.0.end_time
    }

    /// The server's version (`server_version`).
    #[getter]
    fn pg_version(&self) -> &str {
        &self.0.pg_version
    }

    /// Bytes written.
    #[getter]
    fn bytes(&self) -> u64 {
        self.0.bytes
    }

    /// The server's `wal_segment_size` in bytes, or `None` for backups made before it was
    /// recorded.
    #[getter]
    fn wal_segment_size(&self) -> Option<u64> {
        self.0.wal_segment_size
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "NodeBackup(node={}, backup={}, timeline={}, start_lsn='{}', end_lsn='{}', bytes={})",
            repr(py, &self.0.node)?,
            repr(py, &self.0.backup)?,
            self.0.timeline,
            self.0.start_lsn,
            self.0.end_lsn,
            self.0.bytes
        ))
    }
}

/// A named restore point, written on every node.
#[pyclass(module = "citus_recovery", name = "RestorePoint", frozen, eq)]
#[derive(PartialEq)]
pub struct PyRestorePoint(pub RestorePoint);

#[pymethods]
impl PyRestorePoint {
    /// The name recovery stops at.
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }

    /// When it was created (UTC).
    #[getter]
    fn time(&self) -> DateTime<Utc> {
        self.0.time
    }

    /// Whether `citus_create_restore_point` made it (consistent across nodes) rather than
    /// `pg_create_restore_point` on each plain node.
    #[getter]
    fn citus(&self) -> bool {
        self.0.citus
    }

    /// Every node's copy, in config order.
    #[getter]
    fn nodes(&self) -> Vec<PyNodeRestorePoint> {
        self.0
            .nodes
            .iter()
            .cloned()
            .map(PyNodeRestorePoint)
            .collect()
    }

    /// The copy on `node`, or `None`.
    fn node(&self, node: &str) -> Option<PyNodeRestorePoint> {
        self.0.node(node).cloned().map(PyNodeRestorePoint)
    }

    /// The restore point's record as JSON.
    fn to_json(&self) -> String {
        convert::json(&self.0)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let nodes: Vec<&str> = self.0.nodes.iter().map(|n| n.node.as_str()).collect();
        Ok(format!(
            "RestorePoint(name={}, time='{}', citus={}, nodes={})",
            repr(py, &self.0.name)?,
            self.0.time.to_rfc3339(),
            if self.0.citus { "True" } else { "False" },
            nodes.into_pyobject(py)?.repr()?
        ))
    }
}

/// Where one node's copy of a restore point lies.
#[pyclass(module = "citus_recovery", name = "NodeRestorePoint", frozen, eq)]
#[derive(PartialEq)]
pub struct PyNodeRestorePoint(pub NodeRestorePoint);

#[pymethods]
impl PyNodeRestorePoint {
    /// The node's name.
    #[getter]
    fn node(&self) -> &str {
        &self.0.node
    }

    /// The record's LSN where known (Citus reports only the coordinator's).
    #[getter]
    fn lsn(&self) -> Option<String> {
        self.0.lsn.map(|l| l.to_string())
    }

    /// The node's timeline when the point was made.
    #[getter]
    fn timeline(&self) -> u32 {
        self.0.timeline
    }

    /// The last WAL segment that had to be archived for the point to be usable.
    #[getter]
    fn segment(&self) -> &str {
        &self.0.segment
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "NodeRestorePoint(node={}, lsn={}, timeline={}, segment={})",
            repr(py, &self.0.node)?,
            convert::opt_repr(py, self.0.lsn.map(|l| l.to_string()).as_deref())?,
            self.0.timeline,
            repr(py, &self.0.segment)?
        ))
    }
}
