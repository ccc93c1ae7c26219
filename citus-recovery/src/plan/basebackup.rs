//! [`BasebackupPlan`]: a base backup of every node at once, complete only when all are.
//!
//! Each node's folder gets PostgreSQL's tar backup and, once its WAL up to the stop LSN is in the
//! archive, a node manifest; the cluster manifest is written last, after every node is done, so a
//! backup that failed or was interrupted on any node is never listed or offered for restore.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::archive::find;
use super::{run_phases, NodePlan, Phase, RunOptions, Step, StepOutput};
use crate::backend::ClusterBackend;
use crate::catalog::{Backup, Catalog};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::names;
use crate::observe::NodeObservation;

/// The plan of `basebackup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BasebackupPlan {
    /// The backup's name.
    pub name: String,
    /// The Citus version on the coordinator, `None` on plain PostgreSQL.
    pub citus_version: Option<String>,
    /// The phases.
    pub phases: Vec<Phase>,
    /// Remarks.
    pub notes: Vec<String>,
    /// What it was built from, checked again by [`crate::Cluster::apply`] (not in the JSON).
    #[serde(skip)]
    pub basis: super::PlanBasis,
}

impl BasebackupPlan {
    /// Builds the plan. `name` defaults to the UTC date and time; `name_taken` says that a
    /// backup folder of that name exists (complete or not), and it is then refused. Every node
    /// must run with archiving on. Touches no disk: `catalog` only names the folders.
    pub fn build(
        config: &ClusterConfig,
        observed: &[NodeObservation],
        name: Option<&str>,
        now: DateTime<Utc>,
        catalog: &Catalog,
        name_taken: bool,
    ) -> Result<Self> {
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| names::default_name(now));
        names::check_backup_name(&name)?;
        if name_taken {
            return Err(Error::InvalidArgument {
                what: "backup name",
                value: name.clone(),
                problem: format!(
                    "{} exists already; choose another name",
                    catalog.backup_dir(&name).display()
                ),
            });
        }
        crate::observe::check_citus_topology(config, observed)?;
        let mut nodes = Vec::new();
        for node in config.nodes() {
            let obs = find(observed, &node.name);
            obs.require_running("start it with `citus-recovery cluster start`")?;
            if !obs.archiving() {
                return Err(Error::ArchivingOff {
                    node: node.name.clone(),
                    why: "a backup without archived WAL cannot be restored to a restore point",
                });
            }
            if obs.in_recovery == Some(true) {
                return Err(Error::NodeInRecovery {
                    node: node.name.clone(),
                    command: "basebackup",
                    fix: "finish the restore (`citus-recovery restore-finish`) before taking a backup"
                        .into(),
                });
            }
            nodes.push(NodePlan {
                node: node.name.clone(),
                steps: vec![Step::BaseBackup {
                    backup: name.clone(),
                    folder: catalog.node_backup_dir(&name, &node.name),
                    archive: config.archive_dir(node),
                }],
            });
        }
        Ok(BasebackupPlan {
            citus_version: find(observed, &config.coordinator.name)
                .citus_version
                .clone(),
            phases: vec![Phase {
                title: format!("base backup {name}"),
                nodes,
            }],
            notes: vec![format!(
                "the cluster manifest {} is written last, once every node is done",
                catalog
                    .backup_dir(&name)
                    .join(crate::catalog::CLUSTER_MANIFEST)
                    .display()
            )],
            name,
            basis: super::PlanBasis::default(),
        })
    }

    /// Runs the plan and returns the complete backup.
    pub async fn execute(&self, backend: &dyn ClusterBackend, opts: &RunOptions) -> Result<Backup> {
        let start_time = Utc::now();
        let config = backend.config();
        // The backup's folder is the invoking user's; only the node folders inside are the
        // servers' user's (pg_basebackup writes them).
        Catalog::open(config, opts.repository.clone()).create_backup_dir(&self.name)?;
        let outputs = run_phases(backend, &self.phases, opts).await?;
        let mut nodes = Vec::new();
        for node in config.nodes() {
            let part = outputs
                .iter()
                .find(|o| o.node == node.name)
                .and_then(|o| {
                    o.outputs.iter().find_map(|out| match out {
                        StepOutput::Backup(b) => Some(b.clone()),
                        _ => None,
                    })
                })
                .ok_or_else(|| Error::node(&node.name, "base backup", "it reported no result"))?;
            nodes.push(part);
        }
        let backup = Backup {
            name: self.name.clone(),
            cluster_name: config.cluster_name.clone(),
            start_time,
            end_time: Utc::now(),
            citus_version: self.citus_version.clone(),
            nodes,
        };
        Catalog::open(config, opts.repository.clone())
            .write_cluster_manifest(&backup)
            .await?;
        Ok(backup)
    }
}

super::plan_impls!(BasebackupPlan, "basebackup", |p| format!(
    "plan: basebackup {}",
    p.name
));
