//! [`Cluster::plan_fork`] and [`Cluster::fork`]: this (live) cluster restored into a second
//! cluster beside it (see [`crate::fork`]).

use chrono::Utc;

use super::Cluster;
use crate::error::{Error, Result};
use crate::fork::{ForkPlan, ForkReport};
use crate::observe;
use crate::plan::{moved_aside_dir, PlanBasis, RestoreInputs, RestorePlan};

impl Cluster {
    /// Plans `fork`: every node of `target` (the fork's config: its own folders and ports, the
    /// same node names) restored from this cluster's `backup` (default: the newest that reaches
    /// the point) to `restore_point` (default: the config's `restorePoint`), paused there, or
    /// with `promote` writable with `pg_dist_node` rewritten. Reads this cluster's catalog and
    /// archive only; observes the fork's nodes; changes nothing.
    pub async fn plan_fork(
        &self,
        target: &Cluster,
        backup: Option<&str>,
        restore_point: Option<&str>,
        promote: bool,
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
        let now = Utc::now();
        let stamp = previous
            .as_ref()
            .map_or_else(|| crate::names::default_name(now), |p| p.stamp.clone());
        let paths: Vec<(String, std::path::PathBuf)> = config
            .nodes()
            .flat_map(|n| {
                [
                    (n.name.clone(), config.data_dir(n)),
                    (n.name.clone(), moved_aside_dir(config, &n.name, &stamp)),
                ]
            })
            .collect();
        let checked = target.path_basis(paths.into_iter()).await?;
        let existing = checked
            .iter()
            .filter(|(_, _, exists)| *exists)
            .map(|(_, p, _)| p.clone())
            .collect();
        let inputs = RestoreInputs {
            backup: &backup,
            restore_point: &report.target,
            wal_parameters: &report.wal_parameters,
            existing: &existing,
            previous: previous.as_ref(),
        };
        let mut restore = RestorePlan::build(config, &observed, &catalog, &inputs, now)?;
        if let Some(why) = report.chosen_because {
            restore.notes.insert(0, why);
        }
        restore.basis = PlanBasis {
            paths: checked,
            backup: Some(backup.name.clone()),
            ..PlanBasis::new(&observed).with_restore(previous.map(|p| p.started.to_rfc3339()))
        };
        ForkPlan::build(source, config, restore, moves, promote)
    }

    /// `fork`: under the fork's own lock (none is taken on this cluster), builds the plan and
    /// runs it on the fork's nodes, reading this cluster's repository.
    pub async fn fork(
        &self,
        target: &Cluster,
        backup: Option<&str>,
        restore_point: Option<&str>,
        promote: bool,
    ) -> Result<ForkReport> {
        let _lock = target.lock("fork").await?;
        let plan = self
            .plan_fork(target, backup, restore_point, promote)
            .await?;
        plan.execute(target.backend(), &self.options).await
    }
}
