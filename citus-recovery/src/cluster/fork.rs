//! [`Cluster::plan_fork`] and [`Cluster::fork`]: this (live) cluster restored into a second
//! cluster beside it (see [`crate::fork`]).

use chrono::Utc;

use super::Cluster;
use crate::error::{Error, Result};
use crate::fork::{ForkPlan, ForkReport};
use crate::observe;

impl Cluster {
    /// Plans `fork`: every node of `target` (the fork's config: its own folders and ports, the
    /// same node names) restored from this cluster's `backup` (default: the newest that reaches
    /// the point) to `restore_point` (default: the config's `restorePoint`), paused there, or
    /// with `promote` writable with `pg_dist_node` rewritten. Reads this cluster's catalog and
    /// archive only; observes the fork's nodes; changes nothing. `archive`: the fork archives
    /// its WAL into its own `archiveBaseFolder` (default: `archive_mode` off).
    pub async fn plan_fork(
        &self,
        target: &Cluster,
        backup: Option<&str>,
        restore_point: Option<&str>,
        promote: bool,
        archive: bool,
    ) -> Result<ForkPlan> {
        let (source, config) = (self.config(), target.config());
        let moves = crate::fork::check_target(source, config)?;
        let point = self.restore_point_name(restore_point)?;
        let report = self.verify(backup, Some(&point)).await?;
        if !report.ok() {
            return Err(Error::PreflightFailed {
                backup: report.backup.clone(),
                restore_point: point,
                failures: report.failures(),
            });
        }
        let catalog = self.catalog();
        let backup = catalog.backup(&report.backup).await?;
        let previous = target.restore_state()?;
        let observed = observe::cluster(target.backend()).await?;
        let restore = target
            .restore_plan_into(&catalog, &backup, report, &observed, previous)
            .await?;
        // Unknown to the catalog: treated as Citus, whose connections are then blocked.
        let citus = catalog
            .restore_point(&point)
            .await
            .map_or(true, |p| p.citus);
        ForkPlan::build(source, config, restore, moves, promote, citus, archive)
    }

    /// `fork`: under the fork's own lock (none is taken on this cluster), builds the plan and
    /// runs it on the fork's nodes, reading this cluster's repository.
    pub async fn fork(
        &self,
        target: &Cluster,
        backup: Option<&str>,
        restore_point: Option<&str>,
        promote: bool,
        archive: bool,
    ) -> Result<ForkReport> {
        let _lock = target.lock("fork").await?;
        let plan = self
            .plan_fork(target, backup, restore_point, promote, archive)
            .await?;
        plan.execute(target.backend(), &self.options).await
    }
}

impl Cluster {
    /// `drill`: forks the newest recorded restore point (from the newest backup that reaches
    /// it) onto free ports in a temporary folder, promoted; runs the config's `drill.checks`
    /// there; tears the fork down; records the report in `<backupBaseFolder>/drills`. A fork
    /// that fails is a failed drill (a report, status critical); an error means the drill
    /// could not run (no restore point, the record not written). The fork is always on this
    /// host, also for a cluster whose nodes are reached over SSH: it restores from the live
    /// repository (S3, or a posix folder this host shares with the node hosts).
    pub async fn drill(&self) -> Result<crate::drill::DrillReport> {
        use crate::drill::{drill_config, DrillReport};
        let config = self.config();
        let point = self
            .list_restore_points()
            .await?
            .pop()
            .ok_or_else(|| Error::UnknownRestorePoint {
                name: String::new(),
                hint: "no restore point is recorded, and drill restores the newest: make one with `citus-recovery restore-point`".into(),
            })?;
        let time = Utc::now();
        let dir = std::env::temp_dir().join(format!(
            "citus-recovery-drill-{}-{}",
            crate::names::default_name(time),
            std::process::id()
        ));
        std::fs::create_dir(&dir).map_err(|e| Error::io("create the drill's folder", &dir, e))?;
        // The servers' user must reach the fork's folders inside it.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| Error::io("open the drill's folder to the servers' user", &dir, e))?;
        let mut report = DrillReport {
            cluster_name: config.cluster_name.clone(),
            time,
            restore_point: point.name.clone(),
            backup: None,
            status: crate::check::Status::Critical,
            reached: false,
            seconds_to_recover: None,
            error: None,
            checks: Vec::new(),
            torn_down: false,
        };
        let fork = match drill_config(config, &dir).and_then(Cluster::new) {
            Ok(fork) => Some(fork),
            Err(e) => {
                report.error = Some(e.to_string());
                None
            }
        };
        if let Some(fork) = &fork {
            match self.fork(fork, None, Some(&point.name), true, false).await {
                Err(e) => report.error = Some(e.to_string()),
                Ok(done) => {
                    report.backup = Some(done.restore.backup.clone());
                    report.reached = true;
                    report.seconds_to_recover = Some(done.seconds);
                    for c in &config.drill.checks {
                        report.checks.push(run_check(fork, c).await);
                    }
                }
            }
            // Tear down: every server stopped (a stopped one is fine), then the folder.
            for node in fork.config().nodes() {
                if let Err(e) = fork.backend().stop(node).await {
                    tracing::debug!("drill teardown: stopping {}: {e}", node.name);
                }
            }
        }
        report.torn_down = match std::fs::remove_dir_all(&dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("drill teardown: removing {}: {e}", dir.display());
                false
            }
        };
        if report.reached && report.checks.iter().all(|c| c.passed) {
            report.status = crate::check::Status::Ok;
        }
        report.save(config)?;
        Ok(report)
    }
}

/// Runs one SQL check of the drill on the fork.
async fn run_check(
    fork: &Cluster,
    check: &crate::config::DrillCheck,
) -> crate::drill::DrillCheckResult {
    let mut result = crate::drill::DrillCheckResult {
        node: check.node.clone(),
        sql: check.sql.clone(),
        expect: check.expect.clone(),
        got: None,
        error: None,
        passed: false,
    };
    let Some(node) = fork.config().node(&check.node) else {
        result.error = Some(format!("the config has no node {}", check.node));
        return result;
    };
    let rows = match fork.backend().connect(node).await {
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
        Ok(client) => client.simple_query(&check.sql).await,
    };
    match rows {
        Err(e) => {
            result.error = Some(Error::sql(&check.node, "run the drill check", e).to_string())
        }
        Ok(messages) => {
            result.got = messages.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            });
            result.passed = match &check.expect {
                None => true,
                Some(e) => result.got.as_deref() == Some(e.as_str()),
            };
        }
    }
    result
}
