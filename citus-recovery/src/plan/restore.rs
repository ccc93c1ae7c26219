//! [`RestorePlan`]: every node back to the same restore point, paused there for inspection.
//!
//! Per node: stop the server, move the data directory aside (kept, never deleted), extract the
//! backup, write the recovery settings and `recovery.signal`, start, and wait until recovery is
//! paused at the restore point. Before the first node is touched, the plan's state is written to
//! `<clusterBaseFolder>/citus-recovery-restore.json`, so `restore-abort` (or a person) knows which
//! directory to put back.

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::archive::find;
use super::recovery_conf::{self, quote_value};
use super::{run_phases, AbortPlan, NodePlan, Phase, RunOptions, Step, StepOutput};
use crate::backend::{ClusterBackend, ServerState};
use crate::catalog::{Backup, Catalog, RestorePoint};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::observe::NodeObservation;
use crate::wal::Lsn;

/// File name of the restore state, in `clusterBaseFolder`.
pub const RESTORE_STATE: &str = "citus-recovery-restore.json";

/// What restore-start changed on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRestore {
    /// The node's name.
    pub node: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where the old data directory was moved, if there was one.
    pub moved_aside_to: Option<PathBuf>,
    /// Whether the node's server was running before, so an abort starts it again.
    #[serde(default)]
    pub was_running: bool,
}

/// A restore under way, as written before any node is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreState {
    /// The backup restored.
    pub backup: String,
    /// The restore point recovered to.
    pub restore_point: String,
    /// When restore-start began.
    pub started: DateTime<Utc>,
    /// Every node.
    pub nodes: Vec<NodeRestore>,
}

impl RestoreState {
    /// Where the state file of `config` lives.
    pub fn path(config: &ClusterConfig) -> PathBuf {
        config.cluster_base_folder.join(RESTORE_STATE)
    }
}

/// The plan of `restore-start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorePlan {
    /// What will be changed, written to the state file first.
    pub state: RestoreState,
    /// The phases.
    pub phases: Vec<Phase>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// One node after restore-start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodePaused {
    /// The node's name.
    pub node: String,
    /// Where replay paused.
    pub replay_lsn: Lsn,
    /// The old data directory, kept.
    pub moved_aside_to: Option<PathBuf>,
}

/// What restore-start did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub backup: String,
    /// The restore point every node is paused at.
    pub restore_point: String,
    /// Every node, paused.
    pub nodes: Vec<NodePaused>,
}

impl fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "every node is paused at restore point {} (backup {}); check the data with read-only queries, then run restore-finish",
            quote_value(&self.restore_point),
            self.backup
        )?;
        for n in &self.nodes {
            write!(f, "  {:<16} paused, replay lsn {}", n.node, n.replay_lsn)?;
            if let Some(p) = &n.moved_aside_to {
                write!(f, ", old data directory kept at {}", p.display())?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl RestorePlan {
    /// Builds the plan from a complete backup and a recorded restore point. Refused when either
    /// lacks a node of the config, or when the point is older than the backup on any node.
    pub fn build(
        config: &ClusterConfig,
        observed: &[NodeObservation],
        backup: &Backup,
        restore_point: &RestorePoint,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let stamp = crate::names::default_name(now);
        let mut nodes = Vec::new();
        let mut state_nodes = Vec::new();
        for node in config.nodes() {
            let part = backup.node(&node.name).ok_or_else(|| {
                Error::State(format!(
                    "backup {} has no part for node {}: it was taken of a cluster without that node; choose another backup",
                    backup.name, node.name
                ))
            })?;
            let point = restore_point.node(&node.name).ok_or_else(|| {
                Error::State(format!(
                    "restore point {:?} was not made on node {}; choose another restore point",
                    restore_point.name, node.name
                ))
            })?;
            let too_old = match point.lsn {
                Some(lsn) if point.timeline == part.timeline => lsn < part.end_lsn,
                _ => restore_point.time < backup.end_time,
            };
            if too_old {
                return Err(Error::State(format!(
                    "restore point {:?} (made {}) lies before the end of backup {} on node {}: recovery cannot stop there; choose an older backup",
                    restore_point.name,
                    restore_point.time.to_rfc3339(),
                    backup.name,
                    node.name
                )));
            }
            let obs = find(observed, &node.name);
            let data_dir = config.data_dir(node);
            let mut steps = Vec::new();
            if obs.server == ServerState::Running {
                steps.push(Step::Stop);
            }
            let moved_aside_to =
                (obs.server != ServerState::Missing || data_dir.exists()).then(|| {
                    config
                        .cluster_base_folder
                        .join(format!("{}.before-restore-{stamp}", node.name))
                });
            if let Some(to) = &moved_aside_to {
                steps.push(Step::MoveAside {
                    from: data_dir.clone(),
                    to: to.clone(),
                });
            }
            let archive = config.archive_dir(node);
            steps.push(Step::Extract {
                backup: catalog.node_backup_dir(&backup.name, &node.name),
                data_dir: data_dir.clone(),
            });
            steps.push(Step::WriteRecoverySettings {
                file: data_dir.join("postgresql.auto.conf"),
                settings: vec![
                    (
                        "restore_command".into(),
                        quote_value(&recovery_conf::restore_command(&archive)),
                    ),
                    (
                        "recovery_target_name".into(),
                        quote_value(&restore_point.name),
                    ),
                    ("recovery_target_action".into(), quote_value("pause")),
                    // The timeline the point was made on: 'latest' could pass it by.
                    (
                        "recovery_target_timeline".into(),
                        quote_value(&point.timeline.to_string()),
                    ),
                    // Pausing needs hot standby; without it PostgreSQL shuts down at the target.
                    ("hot_standby".into(), quote_value("on")),
                ],
            });
            steps.push(Step::CreateSignal {
                path: data_dir.join("recovery.signal"),
            });
            steps.push(Step::Start { wait: false });
            steps.push(Step::WaitPaused {
                restore_point: restore_point.name.clone(),
            });
            nodes.push(NodePlan {
                node: node.name.clone(),
                steps,
            });
            state_nodes.push(NodeRestore {
                node: node.name.clone(),
                data_dir,
                moved_aside_to,
                was_running: obs.server == ServerState::Running,
            });
        }
        Ok(RestorePlan {
            state: RestoreState {
                backup: backup.name.clone(),
                restore_point: restore_point.name.clone(),
                started: now,
                nodes: state_nodes,
            },
            phases: vec![Phase {
                title: format!(
                    "restore backup {} to restore point {}",
                    backup.name,
                    quote_value(&restore_point.name)
                ),
                nodes,
            }],
            notes: vec![
                format!(
                    "the restore state is written to {} before any node is touched",
                    RestoreState::path(config).display()
                ),
                "once paused, check the data with read-only queries, then run `citus-recovery restore-finish`".into(),
            ],
        })
    }

    /// Runs the plan: writes the restore state, then restores every node at once.
    pub async fn execute(
        &self,
        backend: &dyn ClusterBackend,
        opts: &RunOptions,
    ) -> Result<RestoreReport> {
        let config = backend.config();
        let mut text = serde_json::to_vec_pretty(&self.state).expect("plain data serializes");
        text.push(b'\n');
        backend
            .create_dir(&config.coordinator, &config.cluster_base_folder)
            .await?;
        backend
            .write_file(
                &config.coordinator,
                &RestoreState::path(config),
                &text,
                crate::backend::FileSync::Now,
            )
            .await?;
        let outputs = match run_phases(backend, &self.phases, opts).await {
            Ok(outputs) => outputs,
            Err(failure) => return Err(self.roll_back(backend, opts, failure).await),
        };
        let nodes = self
            .state
            .nodes
            .iter()
            .map(|n| {
                let replay_lsn = outputs
                    .iter()
                    .find(|o| o.node == n.node)
                    .and_then(|o| {
                        o.outputs.iter().find_map(|out| match out {
                            StepOutput::Paused { replay_lsn } => Some(*replay_lsn),
                            _ => None,
                        })
                    })
                    .ok_or_else(|| {
                        Error::node(&n.node, "restore", "it reported no replay position")
                    })?;
                Ok(NodePaused {
                    node: n.node.clone(),
                    replay_lsn,
                    moved_aside_to: n.moved_aside_to.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RestoreReport {
            backup: self.state.backup.clone(),
            restore_point: self.state.restore_point.clone(),
            nodes,
        })
    }
}

impl RestorePlan {
    /// Undoes a failed restore on every node; the error says what failed and how the rollback went.
    async fn roll_back(
        &self,
        backend: &dyn ClusterBackend,
        opts: &RunOptions,
        failure: Error,
    ) -> Error {
        tracing::error!("restore-start failed, rolling back every node: {failure}");
        let rollback = async {
            let observed = crate::observe::cluster(backend).await?;
            let existing = super::existing_paths(backend, &self.state).await?;
            let plan = AbortPlan::build(
                backend.config(),
                &observed,
                &self.state,
                &existing,
                Utc::now(),
            )?;
            plan.execute(backend, opts).await
        }
        .await;
        Error::RestoreFailed {
            failure: Box::new(failure),
            rollback: match rollback {
                Ok(_) => "every node was rolled back: the data directories from before restore-start are in place again".into(),
                Err(e) => format!(
                    "rolling back failed too ({e}); nothing was deleted: the restore state in {} says where each old data directory is",
                    RestoreState::path(backend.config()).display()
                ),
            },
        }
    }
}

super::plan_impls!(RestorePlan, "restore-start", |p| format!(
    "plan: restore-start backup {} to restore point {}",
    p.state.backup,
    quote_value(&p.state.restore_point)
));
