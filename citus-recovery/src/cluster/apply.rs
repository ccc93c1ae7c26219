//! [`Cluster::apply`]: runs a plan exactly as it was printed, after checking under the lock that
//! the cluster has not moved away from what the plan was built from.

use std::path::PathBuf;

use futures::future::LocalBoxFuture;

use super::Cluster;
use crate::backend::ClusterBackend;
use crate::catalog::{Backup, RestorePoint};
use crate::error::{Error, Result};
use crate::observe;
use crate::plan::{
    existing_paths, AbortPlan, AbortReport, ArchivePlan, ArchiveReport, BasebackupPlan, FinishPlan,
    FinishReport, Plan, PlanBasis, RestorePlan, RestorePointPlan, RestoreReport, RunOptions,
};

/// A plan [`Cluster::apply`] can run: every plan type of the library.
pub trait Apply: Plan + Sync {
    /// What running it returns.
    type Report: Send;

    /// What the plan was built from.
    fn basis(&self) -> &PlanBasis;

    /// Executes the plan's steps through `backend` (no checks; [`Cluster::apply`] checks).
    fn execute_on<'a>(
        &'a self,
        backend: &'a dyn ClusterBackend,
        opts: &'a RunOptions,
    ) -> LocalBoxFuture<'a, Result<Self::Report>>;
}

macro_rules! apply_impl {
    ($plan:ty, $report:ty) => {
        impl Apply for $plan {
            type Report = $report;
            fn basis(&self) -> &PlanBasis {
                &self.basis
            }
            fn execute_on<'a>(
                &'a self,
                backend: &'a dyn ClusterBackend,
                opts: &'a RunOptions,
            ) -> LocalBoxFuture<'a, Result<$report>> {
                Box::pin(self.execute(backend, opts))
            }
        }
    };
}

apply_impl!(ArchivePlan, ArchiveReport);
apply_impl!(BasebackupPlan, Backup);
apply_impl!(RestorePointPlan, RestorePoint);
apply_impl!(RestorePlan, RestoreReport);
apply_impl!(FinishPlan, FinishReport);
apply_impl!(AbortPlan, AbortReport);

impl Cluster {
    /// Runs `plan` (from one of the `plan_*` methods) exactly as built: takes the cluster's
    /// lock, observes the nodes again, and refuses with [`Error::PlanOutdated`] (changing
    /// nothing) when what the plan was built from has changed: a node started, stopped,
    /// promoted or replaced, its archiving settings changed, a restore began or ended, a path
    /// the plan moves appeared or vanished, or the backup it restores is gone.
    pub async fn apply<P: Apply>(&self, plan: &P) -> Result<P::Report> {
        let _lock = self.lock(plan.command()).await?;
        self.apply_locked(plan).await
    }

    /// [`Cluster::apply`] for a caller that holds the lock already (the plain commands, which
    /// take it before they plan, so that a busy cluster is reported before any planning).
    pub(super) async fn apply_locked<P: Apply>(&self, plan: &P) -> Result<P::Report> {
        let report = match self.check_basis(plan.basis()).await {
            Ok(()) => plan.execute_on(self.backend(), &self.options).await,
            Err(e) => Err(e),
        };
        if plan.command() == "restore-start" {
            // What the run did not take (a node that failed before its prefetch step), or all
            // of it when the plan was refused as outdated.
            self.let_go_of_proven_wal();
        }
        report
    }

    /// Runs a plan built a moment ago by the same call, under the lock that call still holds
    /// and from an observation of that moment: observing again could only find what was just
    /// found (one more `pg_ctl status` and round of queries per node, about 40 ms of every
    /// backup here). Only for plans whose building is that quick (basebackup, restore-point);
    /// restore-start's pre-flight takes seconds and is checked again.
    pub(super) async fn apply_just_planned<P: Apply>(&self, plan: &P) -> Result<P::Report> {
        plan.execute_on(self.backend(), &self.options).await
    }

    /// Drops the WAL a pre-flight held for the nodes' spools
    /// ([`ClusterBackend::hold_proven_wal`]), when no restore will take it.
    pub(super) fn let_go_of_proven_wal(&self) {
        for node in self.config().nodes() {
            self.backend.hold_proven_wal(&node.name, Vec::new());
        }
    }

    /// Observes again what `planned` records and compares.
    async fn check_basis(&self, planned: &PlanBasis) -> Result<()> {
        let observed = observe::cluster(self.backend()).await?;
        let mut now = PlanBasis::new(&observed);
        if planned.restore_matters {
            now = now.with_restore(self.restore_state()?.map(|s| s.started.to_rfc3339()));
        }
        now.paths = self
            .path_basis(planned.paths.iter().map(|(n, p, _)| (n.clone(), p.clone())))
            .await?;
        planned.check(&now)?;
        if let Some(name) = &planned.backup {
            self.catalog()
                .backup(name)
                .await
                .map_err(|e| Error::PlanOutdated {
                    what: format!("backup {name} is no longer there complete ({e})"),
                })?;
        }
        Ok(())
    }

    /// Whether each of `paths` (node, path on its host) exists now.
    pub(super) async fn path_basis(
        &self,
        paths: impl Iterator<Item = (String, PathBuf)>,
    ) -> Result<Vec<(String, PathBuf, bool)>> {
        let paths: Vec<(String, PathBuf)> = paths.collect();
        let existing = existing_paths(
            self.backend(),
            paths.iter().map(|(n, p)| (n.as_str(), p.as_path())),
        )
        .await?;
        Ok(paths
            .into_iter()
            .map(|(n, p)| {
                let exists = existing.contains(&p);
                (n, p, exists)
            })
            .collect())
    }
}
