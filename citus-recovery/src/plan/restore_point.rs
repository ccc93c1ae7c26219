//! [`RestorePointPlan`]: one named restore point on every node, usable once it is archived.
//!
//! On Citus, `citus_create_restore_point` on the coordinator blocks distributed commits briefly and
//! writes the same record into every node's WAL, so the nodes agree on what is committed. On plain
//! PostgreSQL each node gets `pg_create_restore_point`. Then WAL is switched on every node and the
//! point counts as made only when the segment holding it is in every node's archive.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::archive::find;
use super::{run_phases, NodePlan, Phase, RestorePointFunction, RunOptions, Step, StepOutput};
use crate::backend::ClusterBackend;
use crate::catalog::{Catalog, NodeRestorePoint, RestorePoint};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::names;
use crate::observe::NodeObservation;

/// The plan of `restore-point`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorePointPlan {
    /// The restore point's name.
    pub name: String,
    /// Whether Citus writes it (consistent across nodes).
    pub citus: bool,
    /// The phases.
    pub phases: Vec<Phase>,
    /// Remarks.
    pub notes: Vec<String>,
    /// What it was built from, checked again by [`crate::Cluster::apply`] (not in the JSON).
    #[serde(skip)]
    pub basis: super::PlanBasis,
}

impl RestorePointPlan {
    /// Builds the plan. `name` defaults to the UTC date and time; names over 63 bytes and names
    /// already recorded are refused. Every node must run, out of recovery, with archiving on.
    pub fn build(
        config: &ClusterConfig,
        observed: &[NodeObservation],
        name: Option<&str>,
        now: DateTime<Utc>,
        known: &[RestorePoint],
    ) -> Result<Self> {
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| names::default_name(now));
        names::check_restore_point_name(&name)?;
        if let Some(existing) = known.iter().find(|r| r.name == name) {
            return Err(Error::RestorePointExists {
                name,
                created: existing.time.to_rfc3339(),
            });
        }
        crate::observe::check_citus_topology(config, observed)?;
        for node in config.nodes() {
            let obs = find(observed, &node.name);
            obs.require_running("start it with `citus-recovery cluster start`")?;
            if obs.in_recovery == Some(true) {
                return Err(Error::NodeInRecovery {
                    node: node.name.clone(),
                    command: "restore-point",
                    fix: "run `citus-recovery restore-finish` first".into(),
                });
            }
            if !obs.archiving() {
                return Err(Error::ArchivingOff {
                    node: node.name.clone(),
                    why: "a restore point is found only in archived WAL",
                });
            }
        }
        let citus = find(observed, &config.coordinator.name)
            .citus_version
            .is_some();
        let switch = |node: &crate::config::NodeConfig| Step::SwitchWalAndWait {
            archive: config.archive_dir(node),
        };
        let phases = if citus {
            vec![
                Phase {
                    title: "write the restore point on every node (Citus)".into(),
                    nodes: vec![NodePlan {
                        node: config.coordinator.name.clone(),
                        steps: vec![Step::CreateRestorePoint {
                            name: name.clone(),
                            function: RestorePointFunction::Citus,
                            lock_wait: Some(config.restore_point_locks),
                        }],
                    }],
                },
                Phase {
                    title: "archive the WAL holding it".into(),
                    nodes: config
                        .nodes()
                        .map(|n| NodePlan {
                            node: n.name.clone(),
                            steps: vec![switch(n)],
                        })
                        .collect(),
                },
            ]
        } else {
            vec![Phase {
                title: "write the restore point on every node and archive it".into(),
                nodes: config
                    .nodes()
                    .map(|n| NodePlan {
                        node: n.name.clone(),
                        steps: vec![
                            Step::CreateRestorePoint {
                                name: name.clone(),
                                function: RestorePointFunction::Postgres,
                                lock_wait: None,
                            },
                            switch(n),
                        ],
                    })
                    .collect(),
            }]
        };
        let mut notes = Vec::new();
        if !citus {
            notes.push(
                "the Citus extension is not created on the coordinator: each node gets its own pg_create_restore_point, which does not block commits across nodes".into(),
            );
        }
        Ok(RestorePointPlan {
            name,
            citus,
            phases,
            notes,
            basis: super::PlanBasis::default(),
        })
    }

    /// Runs the plan and records the restore point beside the backups.
    pub async fn execute(
        &self,
        backend: &dyn ClusterBackend,
        opts: &RunOptions,
    ) -> Result<RestorePoint> {
        let time = Utc::now();
        let outputs = run_phases(backend, &self.phases, opts).await?;
        let config = backend.config();
        let mut nodes = Vec::new();
        for node in config.nodes() {
            let outs = outputs
                .iter()
                .find(|o| o.node == node.name)
                .map(|o| o.outputs.as_slice())
                .unwrap_or_default();
            let lsn = outs.iter().find_map(|o| match o {
                StepOutput::RestorePoint { lsn } => *lsn,
                _ => None,
            });
            let (timeline, segment) = outs
                .iter()
                .find_map(|o| match o {
                    StepOutput::Archived {
                        timeline, segment, ..
                    } => Some((*timeline, segment.clone())),
                    _ => None,
                })
                .ok_or_else(|| {
                    Error::node(
                        &node.name,
                        "archive the restore point",
                        "it reported no result",
                    )
                })?;
            // Citus returns only the coordinator's LSN, and the server's is the record's end:
            // read the record's start from the few segments just archived, so that verify, list
            // and restore-start never have to scan the archive for a point the library made.
            let (dir, name, last) = (config.archive_dir(node), self.name.clone(), segment.clone());
            let (repo, node_name) = (opts.repository.clone(), node.name.clone());
            let handle = tokio::runtime::Handle::current();
            let located = tokio::task::spawn_blocking(move || {
                let source = crate::wal::node_source(repo, dir, &node_name, handle)?;
                crate::wal::locate_restore_point_in(source.as_ref(), &name, &last, 4)
            })
            .await
            .ok()
            .and_then(|r| r.ok().flatten());
            let lsn = located.map(|r| r.lsn).or(lsn);
            nodes.push(NodeRestorePoint {
                node: node.name.clone(),
                lsn,
                timeline,
                segment,
            });
        }
        let rp = RestorePoint {
            name: self.name.clone(),
            time,
            citus: self.citus,
            nodes,
        };
        Catalog::open(config, opts.repository.clone())
            .record_restore_point(&rp)
            .await?;
        Ok(rp)
    }
}

super::plan_impls!(RestorePointPlan, "restore-point", |p| format!(
    "plan: restore-point {}",
    super::recovery_conf::quote_value(&p.name)
));
