//! `check`: is this cluster recoverable right now? Per node: archiving on and pointing at this
//! config's archive, the archiver's progress and failures (`pg_stat_archiver`), the WAL waiting
//! to be archived, free space; for the cluster: the newest backup and restore point and their
//! ages, the repository's free space. Optionally a real round trip: `pg_switch_wal()` on every
//! node and a bounded wait until that segment is archived.
//!
//! Every finding has a [`Status`]; the report's is the worst, and its [`Status::exit_code`]
//! follows the Nagios convention (0 OK, 1 warning, 2 critical). Thresholds come from the
//! config's `check` object ([`crate::config::CheckThresholds`]).

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backend::ServerState;
use crate::config::{CheckThresholds, ClusterConfig, NodeConfig, RepositoryConfig};
use crate::error::{Error, Result};
use crate::wal::{parse_segment_file_name, Lsn};
use crate::Cluster;

/// How healthy something is. Ordered: the worst wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Look at it soon.
    Warning,
    /// Recovery is at risk now.
    Critical,
}

impl Status {
    /// The monitoring exit code: 0 OK, 1 warning, 2 critical.
    pub fn exit_code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
        })
    }
}

/// One thing found wrong (or noted), with what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// How bad.
    pub status: Status,
    /// The node, when it is about one.
    pub node: Option<String>,
    /// Which test (`archiving`, `archiver`, `archive_lag`, `backup_age`, ...).
    pub check: String,
    /// What was found and the fix.
    pub message: String,
}

/// One node's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeHealth {
    /// The node.
    pub node: String,
    /// The worst of its findings.
    pub status: Status,
    /// Whether its server runs and answers.
    pub up: bool,
    /// `pg_is_in_recovery()`.
    pub in_recovery: Option<bool>,
    /// `server_version`: the PostgreSQL binary that runs it.
    pub server_version: Option<String>,
    /// Whether `archive_mode` is on with a library or command.
    pub archiving: bool,
    /// Whether archiving goes into this config's archive (our `archive-push` for a repository,
    /// `basic_archive` into `archiveBaseFolder/<node>` without).
    pub archive_target_ok: bool,
    /// `pg_stat_archiver.last_archived_wal`.
    pub last_archived_wal: Option<String>,
    /// Seconds since `last_archived_time`.
    pub last_archived_age_seconds: Option<f64>,
    /// `pg_stat_archiver.archived_count`.
    pub archived_count: Option<i64>,
    /// `pg_stat_archiver.failed_count`.
    pub failed_count: Option<i64>,
    /// `pg_stat_archiver.last_failed_wal`.
    pub last_failed_wal: Option<String>,
    /// Seconds since `last_failed_time`.
    pub last_failed_age_seconds: Option<f64>,
    /// Whether the last attempt failed (failed after the last success): archiving is stuck.
    pub archiver_failing: bool,
    /// `pg_current_wal_lsn()`.
    pub current_lsn: Option<Lsn>,
    /// Closed segments not archived yet.
    pub lag_segments: Option<u64>,
    /// Bytes of WAL written since the end of the last archived segment.
    pub lag_bytes: Option<u64>,
    /// Free bytes on the data directory's file system.
    pub free_bytes: Option<u64>,
    /// Size of that file system.
    pub total_bytes: Option<u64>,
    /// Seconds the round trip took (`--round-trip`); `None` when not run or it failed.
    pub round_trip_seconds: Option<f64>,
}

/// A backup's or restore point's name and age.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aged {
    /// Its name.
    pub name: String,
    /// When it was made (a backup's end).
    pub time: DateTime<Utc>,
    /// Hours since.
    pub age_hours: f64,
}

/// What `check` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The cluster's name.
    pub cluster_name: String,
    /// When the check ran.
    pub time: DateTime<Utc>,
    /// The worst finding.
    pub status: Status,
    /// The citus-recovery version that checked.
    pub tool_version: String,
    /// The version of the config's `binary` (what the servers run as `archive_command` with a
    /// repository), when it is set.
    pub binary_version: Option<String>,
    /// Every node, in config order.
    pub nodes: Vec<NodeHealth>,
    /// Complete backups.
    pub backups: usize,
    /// The newest complete backup.
    pub newest_backup: Option<Aged>,
    /// Recorded restore points.
    pub restore_points: usize,
    /// The newest recorded restore point.
    pub newest_restore_point: Option<Aged>,
    /// Where the archive is (the repository, or archiveBaseFolder).
    pub archive: String,
    /// Free bytes where the archive is (posix and folders; `None` for S3).
    pub archive_free_bytes: Option<u64>,
    /// Size of that file system.
    pub archive_total_bytes: Option<u64>,
    /// Whether the round trip ran.
    pub round_trip: bool,
    /// Everything not OK (and notes), worst first.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// The monitoring exit code of the report: 0 OK, 1 warning, 2 critical.
    pub fn exit_code(&self) -> u8 {
        self.status.exit_code()
    }

    /// The report in Prometheus' text format, for node_exporter's textfile collector (metric
    /// names in docs/lifecycle.md).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let cluster = escape(&self.cluster_name);
        let mut metric = |name: &str, help: &str, rows: Vec<(String, Option<f64>)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
            for (labels, value) in rows {
                if let Some(v) = value {
                    out.push_str(&format!("{name}{{cluster=\"{cluster}\"{labels}}} {v}\n"));
                }
            }
        };
        let one = |v: Option<f64>| vec![(String::new(), v)];
        let per_node = |f: &dyn Fn(&NodeHealth) -> Option<f64>| -> Vec<(String, Option<f64>)> {
            self.nodes
                .iter()
                .map(|n| (format!(",node=\"{}\"", escape(&n.node)), f(n)))
                .collect()
        };
        let flag = |b: bool| Some(if b { 1.0 } else { 0.0 });
        metric(
            "citus_recovery_check_status",
            "Overall check status: 0 OK, 1 warning, 2 critical.",
            one(Some(f64::from(self.status.exit_code()))),
        );
        metric(
            "citus_recovery_node_status",
            "Node check status: 0 OK, 1 warning, 2 critical.",
            per_node(&|n| Some(f64::from(n.status.exit_code()))),
        );
        metric(
            "citus_recovery_node_up",
            "1 when the node's server runs and answers.",
            per_node(&|n| flag(n.up)),
        );
        metric(
            "citus_recovery_archiving_ok",
            "1 when archiving is on and goes into this config's archive.",
            per_node(&|n| flag(n.archiving && n.archive_target_ok)),
        );
        metric(
            "citus_recovery_archive_last_success_age_seconds",
            "Seconds since the last segment was archived.",
            per_node(&|n| n.last_archived_age_seconds),
        );
        metric(
            "citus_recovery_archive_failed_count",
            "pg_stat_archiver.failed_count.",
            per_node(&|n| n.failed_count.map(|v| v as f64)),
        );
        metric(
            "citus_recovery_archive_failing",
            "1 when the archiver's last attempt failed.",
            per_node(&|n| flag(n.archiver_failing)),
        );
        metric(
            "citus_recovery_archive_lag_segments",
            "Closed WAL segments not archived yet.",
            per_node(&|n| n.lag_segments.map(|v| v as f64)),
        );
        metric(
            "citus_recovery_archive_lag_bytes",
            "WAL bytes written since the end of the last archived segment.",
            per_node(&|n| n.lag_bytes.map(|v| v as f64)),
        );
        metric(
            "citus_recovery_node_free_bytes",
            "Free bytes on the file system of the node's data directory.",
            per_node(&|n| n.free_bytes.map(|v| v as f64)),
        );
        metric(
            "citus_recovery_round_trip_seconds",
            "Seconds from pg_switch_wal() until the segment was archived.",
            per_node(&|n| n.round_trip_seconds),
        );
        metric(
            "citus_recovery_backups",
            "Complete backups in the catalog.",
            one(Some(self.backups as f64)),
        );
        metric(
            "citus_recovery_newest_backup_age_seconds",
            "Seconds since the newest complete backup ended.",
            one(self.newest_backup.as_ref().map(|a| a.age_hours * 3600.0)),
        );
        metric(
            "citus_recovery_newest_restore_point_age_seconds",
            "Seconds since the newest recorded restore point.",
            one(self
                .newest_restore_point
                .as_ref()
                .map(|a| a.age_hours * 3600.0)),
        );
        metric(
            "citus_recovery_archive_free_bytes",
            "Free bytes where the archive is (absent for S3).",
            one(self.archive_free_bytes.map(|v| v as f64)),
        );
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} - cluster {}", self.status, self.cluster_name)?;
        for n in &self.nodes {
            write!(f, "  {:<16} {:<8}", n.node, n.status.to_string())?;
            if !n.up {
                writeln!(f, " not reachable")?;
                continue;
            }
            write!(
                f,
                " PostgreSQL {}, archiving {}",
                n.server_version.as_deref().unwrap_or("?"),
                match (n.archiving, n.archive_target_ok) {
                    (false, _) => "off",
                    (true, false) => "ELSEWHERE",
                    (true, true) => "on",
                }
            )?;
            if let Some(w) = &n.last_archived_wal {
                write!(
                    f,
                    ", last archived {w} ({:.0} s ago)",
                    n.last_archived_age_seconds.unwrap_or(0.0)
                )?;
            }
            if let Some(l) = n.lag_segments {
                write!(f, ", lag {l} segment(s)")?;
            }
            if let Some(free) = n.free_bytes {
                write!(f, ", {:.1} GiB free", free as f64 / (1u64 << 30) as f64)?;
            }
            if let Some(s) = n.round_trip_seconds {
                write!(f, ", round trip {s:.1} s")?;
            }
            writeln!(f)?;
        }
        match &self.newest_backup {
            Some(b) => writeln!(
                f,
                "  newest backup {} ({:.1} h ago, {} in all)",
                b.name, b.age_hours, self.backups
            )?,
            None => writeln!(f, "  no complete backup")?,
        }
        match &self.newest_restore_point {
            Some(r) => writeln!(
                f,
                "  newest restore point {:?} ({:.1} h ago)",
                r.name, r.age_hours
            )?,
            None => writeln!(f, "  no restore point")?,
        }
        write!(f, "  archive {}", self.archive)?;
        if let Some(free) = self.archive_free_bytes {
            write!(f, ", {:.1} GiB free", free as f64 / (1u64 << 30) as f64)?;
        }
        writeln!(f)?;
        for x in &self.findings {
            writeln!(
                f,
                "{}: {}{}",
                x.status,
                x.node
                    .as_ref()
                    .map(|n| format!("node {n}: "))
                    .unwrap_or_default(),
                x.message
            )?;
        }
        Ok(())
    }
}

/// Free and total bytes of the file system holding `path`.
fn space(path: &std::path::Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size() as u64;
    Some((s.blocks_available() as u64 * frag, s.blocks() as u64 * frag))
}

/// A finding when `value` reaches a threshold.
fn threshold(value: f64, warning: Option<f64>, critical: Option<f64>) -> Option<(Status, f64)> {
    if let Some(c) = critical.filter(|c| value >= *c) {
        return Some((Status::Critical, c));
    }
    warning
        .filter(|w| value >= *w)
        .map(|w| (Status::Warning, w))
}

/// `value` in single quotes for `sh`, `'` as `'\''`, `%` doubled: how prepare-archiving writes
/// names into `archive_command`.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''")).replace('%', "%%")
}

/// Whether the node's archiving goes where this config says.
fn target_ok(
    config: &ClusterConfig,
    node: &NodeConfig,
    settings: &std::collections::BTreeMap<String, String>,
) -> bool {
    let get = |k: &str| settings.get(k).cloned().unwrap_or_default();
    match &config.repository {
        Some(_) => {
            let Some(source) = &config.source else {
                return false;
            };
            get("archive_library").is_empty()
                && get("archive_command").ends_with(&format!(
                    " --config {} archive-push --node {} %p",
                    quoted(&source.to_string_lossy()),
                    quoted(&node.name)
                ))
        }
        None => {
            get("archive_library") == "basic_archive"
                && std::path::Path::new(&get("basic_archive.archive_directory"))
                    == config.archive_dir(node)
        }
    }
}

/// Runs the check (see [`Cluster::check`]).
pub async fn check(cluster: &Cluster, round_trip: bool) -> Result<CheckReport> {
    let config = cluster.config();
    let t = config.check;
    let now = Utc::now();
    let observed = crate::observe::cluster(cluster.backend()).await?;
    let mut findings: Vec<Finding> = Vec::new();
    let mut nodes = Vec::new();
    // Every node at once: the round trips wait in parallel.
    let per_node = futures::future::join_all(config.nodes().map(|node| {
        let obs = observed
            .iter()
            .find(|o| o.node == node.name)
            .expect("observe::cluster observes every node");
        async move {
            let mut found = Vec::new();
            let health = node_health(cluster, node, obs, round_trip, &mut found).await;
            (health, found)
        }
    }))
    .await;
    for (health, found) in per_node {
        nodes.push(health);
        findings.extend(found);
    }

    let catalog = cluster.catalog();
    let backups = catalog.backups().await?;
    let points = catalog.restore_points().await?;
    let age = |time: DateTime<Utc>| (now - time).num_seconds() as f64 / 3600.0;
    let newest_backup = backups.last().map(|b| Aged {
        name: b.name.clone(),
        time: b.end_time,
        age_hours: age(b.end_time),
    });
    let newest_restore_point = points.last().map(|p| Aged {
        name: p.name.clone(),
        time: p.time,
        age_hours: age(p.time),
    });
    let mut cluster_finding = |status, check: &str, message: String| {
        findings.push(Finding {
            status,
            node: None,
            check: check.into(),
            message,
        })
    };
    match &newest_backup {
        None => cluster_finding(
            if t.backup_age_critical_hours.is_some() {
                Status::Critical
            } else {
                Status::Warning
            },
            "backup_age",
            "there is no complete backup: nothing can be restored; take one with `citus-recovery basebackup`".into(),
        ),
        Some(b) => {
            if let Some((s, limit)) = threshold(
                b.age_hours,
                t.backup_age_warning_hours,
                t.backup_age_critical_hours,
            ) {
                cluster_finding(
                    s,
                    "backup_age",
                    format!(
                        "the newest backup {} is {:.1} h old (threshold {limit} h): take one with `citus-recovery basebackup`",
                        b.name, b.age_hours
                    ),
                );
            }
        }
    }
    match &newest_restore_point {
        None => {
            if t.restore_point_age_warning_hours.is_some()
                || t.restore_point_age_critical_hours.is_some()
            {
                cluster_finding(
                    if t.restore_point_age_critical_hours.is_some() {
                        Status::Critical
                    } else {
                        Status::Warning
                    },
                    "restore_point_age",
                    "there is no restore point: a restore has nowhere consistent to stop; create one with `citus-recovery restore-point`".into(),
                )
            }
        }
        Some(r) => {
            if let Some((s, limit)) = threshold(
                r.age_hours,
                t.restore_point_age_warning_hours,
                t.restore_point_age_critical_hours,
            ) {
                cluster_finding(
                    s,
                    "restore_point_age",
                    format!(
                        "the newest restore point {:?} is {:.1} h old (threshold {limit} h): create one with `citus-recovery restore-point`",
                        r.name, r.age_hours
                    ),
                );
            }
        }
    }
    let (archive, archive_space) = match &config.repository {
        Some(RepositoryConfig::Posix { path }) => (
            cluster
                .repository()
                .map(|r| r.describe())
                .unwrap_or_default(),
            space(path),
        ),
        Some(RepositoryConfig::S3(_)) => (
            cluster
                .repository()
                .map(|r| r.describe())
                .unwrap_or_default(),
            None,
        ),
        None => (
            config.archive_base_folder.display().to_string(),
            space(&config.archive_base_folder),
        ),
    };
    if let Some((free, total)) = archive_space {
        free_space(
            &t,
            free,
            total,
            "the archive's file system",
            &mut |s, c, m| cluster_finding(s, c, m),
        );
    }
    let binary_version = match config.binary.clone() {
        Some(b) => Some(
            tokio::task::spawn_blocking(move || binary_version(&b))
                .await
                .unwrap_or_else(|e| format!("cannot run it: {e}")),
        ),
        None => None,
    };
    if let (Some(v), Some(_)) = (&binary_version, &config.repository) {
        let ours = format!("citus-recovery {}", env!("CARGO_PKG_VERSION"));
        if *v != ours {
            findings.push(Finding {
                status: Status::Warning,
                node: None,
                check: "binary".into(),
                message: format!(
                    "the servers' archive_command runs {} which says {v:?}, not {ours:?}: install the same version on every host",
                    config.binary.as_ref().map(|b| b.display().to_string()).unwrap_or_default()
                ),
            });
        }
    }
    findings.extend(drill_finding(config, now));
    findings.sort_by_key(|f| std::cmp::Reverse(f.status));
    for h in &mut nodes {
        h.status = findings
            .iter()
            .filter(|f| f.node.as_deref() == Some(&h.node))
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Ok);
    }
    Ok(CheckReport {
        cluster_name: config.cluster_name.clone(),
        time: now,
        status: findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Ok),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        binary_version,
        nodes,
        backups: backups.len(),
        newest_backup,
        restore_points: points.len(),
        newest_restore_point,
        archive,
        archive_free_bytes: archive_space.map(|s| s.0),
        archive_total_bytes: archive_space.map(|s| s.1),
        round_trip,
        findings,
    })
}

/// The last drill's result and age (`drill`): a failed one is a warning, a passed one a note;
/// none, nothing.
fn drill_finding(config: &ClusterConfig, now: DateTime<Utc>) -> Option<Finding> {
    let (status, message) = match crate::drill::DrillReport::last(config) {
        Err(e) => (
            Status::Warning,
            format!("the last drill's record cannot be read: {e}"),
        ),
        Ok(None) => return None,
        Ok(Some(d)) => {
            let age = (now - d.time).num_seconds() as f64 / 3600.0;
            match d.status {
                Status::Ok => (
                    Status::Ok,
                    format!(
                        "the last drill passed {age:.1} h ago (restore point {}, {:.1} s to recover)",
                        crate::plan::recovery_conf::quote_value(&d.restore_point),
                        d.seconds_to_recover.unwrap_or_default()
                    ),
                ),
                _ => (
                    Status::Warning,
                    format!(
                        "the last drill, {age:.1} h ago, failed (restore point {}): {}; fix what it names and run `citus-recovery drill` again",
                        crate::plan::recovery_conf::quote_value(&d.restore_point),
                        d.error.clone().unwrap_or_else(|| "a SQL check failed".into())
                    ),
                ),
            }
        }
    };
    Some(Finding {
        status,
        node: None,
        check: "drill".into(),
        message,
    })
}

/// One node's health; its findings go to `findings`.
async fn node_health(
    cluster: &Cluster,
    node: &NodeConfig,
    obs: &crate::observe::NodeObservation,
    round_trip: bool,
    findings: &mut Vec<Finding>,
) -> NodeHealth {
    let config = cluster.config();
    let t = config.check;
    let mut h = NodeHealth {
        node: node.name.clone(),
        status: Status::Ok,
        up: obs.server == ServerState::Running && obs.error.is_none(),
        in_recovery: obs.in_recovery,
        server_version: obs.server_version.clone(),
        archiving: obs.archiving(),
        archive_target_ok: target_ok(config, node, &obs.settings),
        last_archived_wal: None,
        last_archived_age_seconds: None,
        archived_count: None,
        failed_count: None,
        last_failed_wal: None,
        last_failed_age_seconds: None,
        archiver_failing: false,
        current_lsn: None,
        lag_segments: None,
        lag_bytes: None,
        free_bytes: None,
        total_bytes: None,
        round_trip_seconds: None,
    };
    if let Some((free, total)) = space(&config.data_dir(node)) {
        (h.free_bytes, h.total_bytes) = (Some(free), Some(total));
    }
    let mut found = |status, check: &str, message: String| {
        findings.push(Finding {
            status,
            node: Some(node.name.clone()),
            check: check.into(),
            message,
        })
    };
    if !h.up {
        found(
            Status::Critical,
            "up",
            match &obs.error {
                Some(e) => format!("does not answer: {e}"),
                None => format!(
                    "is not running ({}): nothing is archived; start it with `citus-recovery cluster start`",
                    obs.server
                ),
            },
        );
        return h;
    }
    if obs.in_recovery == Some(true) {
        found(
            Status::Warning,
            "recovery",
            "is in recovery (a restore under way?): it archives nothing until restore-finish"
                .into(),
        );
    }
    if !h.archiving {
        found(
            Status::Critical,
            "archiving",
            "WAL archiving is off: no restore can reach anything after its last archived segment; run `citus-recovery prepare-archiving`".into(),
        );
    } else if !h.archive_target_ok {
        found(
            Status::Critical,
            "archiving",
            format!(
                "archiving does not go into this config's archive ({}): run `citus-recovery prepare-archiving` (with --replace-existing if another tool set it up)",
                match &config.repository {
                    Some(_) => "archive_command must be citus-recovery archive-push with this config",
                    None => "archive_library must be basic_archive into archiveBaseFolder/<node>",
                }
            ),
        );
    }
    match archiver(cluster, node).await {
        Ok(a) => {
            h.last_archived_wal = a.last_archived_wal;
            h.last_archived_age_seconds = a.last_archived_age;
            h.archived_count = Some(a.archived_count);
            h.failed_count = Some(a.failed_count);
            h.last_failed_wal = a.last_failed_wal;
            h.last_failed_age_seconds = a.last_failed_age;
            h.archiver_failing = a.failing;
            h.current_lsn = a.current_lsn;
            if let (Some(lsn), Some(last)) = (a.current_lsn, h.last_archived_wal.as_deref()) {
                let seg_size = a.seg_size;
                if let Some((_, segno)) =
                    parse_segment_file_name(last.get(..24).unwrap_or(last), seg_size)
                {
                    let next = segno + 1;
                    h.lag_segments = Some(lsn.segment(seg_size).saturating_sub(next));
                    h.lag_bytes = Some(lsn.0.saturating_sub(next * seg_size));
                }
            }
            if h.archiver_failing {
                found(
                    Status::Critical,
                    "archiver",
                    format!(
                        "the archiver is failing: {} failure(s), the last on {} {:.0} s ago; the reason is in the server log ({})",
                        a.failed_count,
                        h.last_failed_wal.as_deref().unwrap_or("?"),
                        h.last_failed_age_seconds.unwrap_or(0.0),
                        config.log_file(node).display()
                    ),
                );
            }
            if h.archiving && h.last_archived_wal.is_none() && obs.in_recovery != Some(true) {
                found(
                    Status::Warning,
                    "archiver",
                    "nothing was archived since the statistics were reset or the server started"
                        .into(),
                );
            }
            if let Some(lag) = h.lag_segments {
                let (w, c) = (
                    t.archive_lag_warning.map(|v| v as f64),
                    t.archive_lag_critical.map(|v| v as f64),
                );
                if let Some((s, limit)) = threshold(lag as f64, w, c) {
                    found(
                        s,
                        "archive_lag",
                        format!(
                            "{lag} closed WAL segment(s) ({} bytes) wait to be archived (threshold {limit})",
                            h.lag_bytes.unwrap_or(0)
                        ),
                    );
                }
            }
        }
        Err(e) => found(Status::Critical, "archiver", e.to_string()),
    }
    if let (Some(free), Some(total)) = (h.free_bytes, h.total_bytes) {
        free_space(
            &t,
            free,
            total,
            "the data directory's file system",
            &mut found,
        );
    }
    if round_trip && obs.in_recovery == Some(false) && h.archiving {
        match round_trip_node(cluster, node, &t).await {
            Ok(s) => h.round_trip_seconds = Some(s),
            Err(e) => found(Status::Critical, "round_trip", e.to_string()),
        }
    }
    h
}

fn free_space(
    t: &CheckThresholds,
    free: u64,
    total: u64,
    what: &str,
    found: &mut dyn FnMut(Status, &str, String),
) {
    if total == 0 {
        return;
    }
    let percent = free as f64 * 100.0 / total as f64;
    // Lower is worse: compare the used share against the inverted thresholds.
    let crit = t.free_space_critical_percent.filter(|c| percent <= *c);
    let warn = t.free_space_warning_percent.filter(|w| percent <= *w);
    let (status, limit) = match (crit, warn) {
        (Some(c), _) => (Status::Critical, c),
        (None, Some(w)) => (Status::Warning, w),
        _ => return,
    };
    found(
        status,
        "free_space",
        format!(
            "{what} has {percent:.1}% free ({free} bytes; threshold {limit}%): free space or expire old backups (`citus-recovery expire`)"
        ),
    );
}

/// What `<binary> --version` prints (its first line), or why it could not run.
fn binary_version(binary: &std::path::Path) -> String {
    match std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        Ok(out) => format!("exited with {}", out.status),
        Err(e) => format!("cannot run it: {e}"),
    }
}

/// What `pg_stat_archiver` and the WAL position say.
struct Archiver {
    last_archived_wal: Option<String>,
    last_archived_age: Option<f64>,
    archived_count: i64,
    failed_count: i64,
    last_failed_wal: Option<String>,
    last_failed_age: Option<f64>,
    failing: bool,
    current_lsn: Option<Lsn>,
    seg_size: u64,
}

async fn archiver(cluster: &Cluster, node: &NodeConfig) -> Result<Archiver> {
    let client = cluster.backend().connect(node).await?;
    let row = client
        .query_one(
            "SELECT a.last_archived_wal, extract(epoch FROM now() - a.last_archived_time)::float8, \
             a.archived_count, a.failed_count, a.last_failed_wal, \
             extract(epoch FROM now() - a.last_failed_time)::float8, \
             coalesce(a.last_failed_time > coalesce(a.last_archived_time, '-infinity'), false), \
             CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, \
             (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') \
             FROM pg_stat_archiver a",
            &[],
        )
        .await
        .map_err(|e| Error::sql(&node.name, "read pg_stat_archiver", e))?;
    let lsn: Option<String> = row.get(7);
    Ok(Archiver {
        last_archived_wal: row.get(0),
        last_archived_age: row.get(1),
        archived_count: row.get(2),
        failed_count: row.get(3),
        last_failed_wal: row.get(4),
        last_failed_age: row.get(5),
        failing: row.get(6),
        current_lsn: lsn.and_then(|l| l.parse().ok()),
        seg_size: row.get::<_, i64>(8) as u64,
    })
}

/// `pg_switch_wal()`, then waits (bounded) until the closed segment is archived; the seconds.
async fn round_trip_node(cluster: &Cluster, node: &NodeConfig, t: &CheckThresholds) -> Result<f64> {
    let client = cluster.backend().connect(node).await?;
    let row = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .map_err(|e| Error::sql(&node.name, "pg_switch_wal", e))?;
    let segment: String = row.get(0);
    let started = Instant::now();
    let limit = Duration::from_secs_f64(t.round_trip_timeout_seconds);
    let archive = cluster.config().archive_dir(node);
    loop {
        let there = match cluster.repository() {
            Some(repo) => {
                crate::archiving::is_archived(repo.as_ref(), &node.name, &segment).await?
            }
            None => {
                cluster
                    .backend()
                    .exists(node, &archive.join(&segment))
                    .await?
            }
        };
        if there {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > limit {
            return Err(Error::node(
                &node.name,
                "round trip",
                format!(
                    "segment {segment} was not archived within {} s of pg_switch_wal(); look at pg_stat_archiver and the server log ({})",
                    t.round_trip_timeout_seconds,
                    cluster.config().log_file(node).display()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, status: Status) -> NodeHealth {
        NodeHealth {
            node: name.into(),
            status,
            up: true,
            in_recovery: Some(false),
            server_version: Some("15.8".into()),
            archiving: true,
            archive_target_ok: true,
            last_archived_wal: Some("000000010000000000000003".into()),
            last_archived_age_seconds: Some(12.0),
            archived_count: Some(3),
            failed_count: Some(0),
            last_failed_wal: None,
            last_failed_age_seconds: None,
            archiver_failing: false,
            current_lsn: Some(Lsn(0x4000100)),
            lag_segments: Some(0),
            lag_bytes: Some(0x100),
            free_bytes: Some(1 << 30),
            total_bytes: Some(4 << 30),
            round_trip_seconds: None,
        }
    }

    #[test]
    fn thresholds_and_free_space() {
        assert_eq!(threshold(5.0, Some(8.0), Some(64.0)), None);
        assert_eq!(
            threshold(8.0, Some(8.0), Some(64.0)),
            Some((Status::Warning, 8.0))
        );
        assert_eq!(
            threshold(70.0, Some(8.0), Some(64.0)),
            Some((Status::Critical, 64.0))
        );
        assert_eq!(threshold(70.0, None, None), None);
        let t = CheckThresholds::default();
        let mut seen = Vec::new();
        free_space(&t, 10, 100, "disk", &mut |s, c, m| {
            seen.push((s, c.to_string(), m))
        });
        free_space(&t, 4, 100, "disk", &mut |s, c, m| {
            seen.push((s, c.to_string(), m))
        });
        free_space(&t, 50, 100, "disk", &mut |s, c, m| {
            seen.push((s, c.to_string(), m))
        });
        let statuses: Vec<Status> = seen.iter().map(|x| x.0).collect();
        assert_eq!(statuses, [Status::Warning, Status::Critical]);
        assert!(seen[1].2.contains("4.0% free"), "{}", seen[1].2);
    }

    #[test]
    fn prometheus_text_and_exit_codes() {
        let report = CheckReport {
            cluster_name: "prod \"a\"".into(),
            time: Utc::now(),
            status: Status::Warning,
            tool_version: "0.1.0".into(),
            binary_version: None,
            nodes: vec![
                node("coordinator", Status::Ok),
                node("worker1", Status::Warning),
            ],
            backups: 2,
            newest_backup: Some(Aged {
                name: "b2".into(),
                time: Utc::now(),
                age_hours: 1.5,
            }),
            restore_points: 0,
            newest_restore_point: None,
            archive: "posix /srv/repo".into(),
            archive_free_bytes: None,
            archive_total_bytes: None,
            round_trip: false,
            findings: vec![Finding {
                status: Status::Warning,
                node: Some("worker1".into()),
                check: "archive_lag".into(),
                message: "9 closed WAL segment(s)".into(),
            }],
        };
        assert_eq!(report.exit_code(), 1);
        assert_eq!(Status::Ok.exit_code(), 0);
        assert_eq!(Status::Critical.exit_code(), 2);
        let text = report.to_prometheus();
        assert!(
            text.contains("citus_recovery_check_status{cluster=\"prod \\\"a\\\"\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "citus_recovery_node_status{cluster=\"prod \\\"a\\\"\",node=\"worker1\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "citus_recovery_newest_backup_age_seconds{cluster=\"prod \\\"a\\\"\"} 5400\n"
            ),
            "{text}"
        );
        // Unknown values are left out, not reported as 0.
        assert!(
            !text.contains("citus_recovery_newest_restore_point_age_seconds{"),
            "{text}"
        );
        assert!(
            !text.contains("citus_recovery_round_trip_seconds{"),
            "{text}"
        );
        assert!(text.contains("# TYPE citus_recovery_archive_lag_bytes gauge"));
        let shown = report.to_string();
        assert!(shown.starts_with("WARNING - cluster"), "{shown}");
        assert!(shown.contains("WARNING: node worker1: 9 closed"), "{shown}");
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "warning");
        assert_eq!(json["nodes"][1]["current_lsn"], "0/4000100");
    }
}
