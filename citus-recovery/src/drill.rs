//! `drill`: the proof that backups restore. The newest restore point is forked (see
//! [`crate::fork`], promoted) from the newest backup that reaches it onto free ports in a
//! temporary folder, the config's `drill.checks` run on the fork, the time to recover is
//! measured, and the fork is torn down (servers stopped, folder removed). The result is
//! recorded in `<backupBaseFolder>/drills/<time>.json`, where `check` finds the last one.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::check::Status;
use crate::config::ClusterConfig;
use crate::error::Result;

/// One SQL check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillCheckResult {
    /// The node it ran on.
    pub node: String,
    /// The query.
    pub sql: String,
    /// The value expected, if any.
    pub expect: Option<String>,
    /// The first column of the first row, as text.
    pub got: Option<String>,
    /// The server's error, when the query failed.
    pub error: Option<String>,
    /// Whether it ran and (with `expect`) returned the expected value.
    pub passed: bool,
}

/// What a drill found; also what is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The live cluster's name.
    pub cluster_name: String,
    /// When the drill began.
    pub time: DateTime<Utc>,
    /// The restore point restored to.
    pub restore_point: String,
    /// The backup restored, once chosen.
    pub backup: Option<String>,
    /// `ok` when every node reached the point and every check passed, else `critical`.
    pub status: Status,
    /// Whether every node of the fork reached the restore point.
    pub reached: bool,
    /// Seconds from the start of the fork until it was writable at the point.
    pub seconds_to_recover: Option<f64>,
    /// Why the fork failed, when it did.
    pub error: Option<String>,
    /// Every SQL check, in config order.
    pub checks: Vec<DrillCheckResult>,
    /// Whether the fork's servers were stopped and its folder removed.
    pub torn_down: bool,
}

impl DrillReport {
    /// The monitoring exit code: 0 the drill passed, 2 it failed (3, that it could not run, is
    /// an error instead of a report).
    pub fn exit_code(&self) -> u8 {
        self.status.exit_code()
    }

    /// Where drills are recorded: `<backupBaseFolder>/drills`.
    pub fn dir(config: &ClusterConfig) -> PathBuf {
        config.backup_base_folder.join("drills")
    }

    /// Records the report as `<backupBaseFolder>/drills/<time>.json` (a file of the invoking
    /// user's, see [`crate::trusted`]) and returns its path.
    pub fn save(&self, config: &ClusterConfig) -> Result<PathBuf> {
        let dir = Self::dir(config);
        crate::trusted::ensure_dir(&dir)?;
        let path = dir.join(format!("{}.json", crate::names::default_name(self.time)));
        crate::trusted::write_json(&path, self)?;
        Ok(path)
    }

    /// The newest recorded drill, if any.
    pub fn last(config: &ClusterConfig) -> Result<Option<DrillReport>> {
        let dir = Self::dir(config);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(None);
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        match names.last() {
            None => Ok(None),
            Some(name) => crate::trusted::read_json(&dir.join(name)),
        }
    }
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "drill {}: restore point {} from backup {}",
            self.status,
            crate::plan::recovery_conf::quote_value(&self.restore_point),
            self.backup.as_deref().unwrap_or("(none chosen)")
        )?;
        match (&self.error, self.seconds_to_recover) {
            (Some(e), _) => writeln!(f, "  the fork failed: {e}")?,
            (None, Some(s)) => writeln!(
                f,
                "  every node reached the restore point; time to recover {s:.1} s"
            )?,
            (None, None) => {}
        }
        for c in &self.checks {
            let outcome = match (&c.error, c.passed) {
                (Some(e), _) => format!("FAILED: {e}"),
                (None, true) => format!("passed ({})", c.got.as_deref().unwrap_or("")),
                (None, false) => format!(
                    "FAILED: got {:?}, expected {:?}",
                    c.got.as_deref().unwrap_or(""),
                    c.expect.as_deref().unwrap_or("")
                ),
            };
            writeln!(f, "  {}: {}: {outcome}", c.node, c.sql)?;
        }
        if !self.torn_down {
            writeln!(
                f,
                "  the fork could not be torn down completely: stop its servers and remove its folder by hand"
            )?;
        }
        Ok(())
    }
}

/// The fork config of a drill: the live config with its own name, every node on `localhost`
/// at a free port, and folders under `dir`; no repository (the live one is read through the
/// live config).
pub fn drill_config(live: &ClusterConfig, dir: &Path) -> Result<ClusterConfig> {
    let mut config = live.clone();
    config.cluster_name = format!("{}-drill", live.cluster_name);
    config.cluster_base_folder = dir.join("cluster");
    config.archive_base_folder = dir.join("archive");
    config.backup_base_folder = dir.join("backup");
    config.repository = None;
    config.ssh = None;
    config.backup_to_restore = None;
    config.restore_point = None;
    config.source = None;
    let ports = free_ports(live.nodes().count())?;
    for (node, port) in std::iter::once(&mut config.coordinator)
        .chain(config.workers.iter_mut())
        .zip(ports)
    {
        node.hostname = "localhost".into();
        node.port = port;
        node.ssh = None;
    }
    Ok(config)
}

/// `n` distinct free TCP ports on the loopback interface, as the kernel hands them out.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| crate::Error::io("find a free port on", "127.0.0.1", e))
        })
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| crate::Error::io("find a free port on", "127.0.0.1", e))
        })
        .collect()
}
