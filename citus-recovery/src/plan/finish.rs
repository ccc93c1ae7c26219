//! [`FinishPlan`]: end recovery on every node at the restore point, so the cluster is writable.
//!
//! `pg_wal_replay_resume()` on each paused node promotes it onto a new timeline; once every node
//! has left recovery, the recovery settings are removed so a later restart does not recover again.

use std::fmt;

use serde::Serialize;

use super::archive::find;
use super::{run_phases, NodePlan, Phase, RestoreState, RunOptions, Step, StepOutput};
use crate::backend::{ClusterBackend, ServerState};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::observe::NodeObservation;

/// The plan of `restore-finish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinishPlan {
    /// The phases.
    pub phases: Vec<Phase>,
    /// Remarks.
    pub notes: Vec<String>,
    /// What it was built from, checked again by [`crate::Cluster::apply`] (not in the JSON).
    #[serde(skip)]
    pub basis: super::PlanBasis,
}

/// One node after restore-finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeFinish {
    /// The node's name.
    pub node: String,
    /// Its timeline now, when it was promoted by this command.
    pub timeline: Option<u32>,
}

/// What restore-finish did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinishReport {
    /// Every node.
    pub nodes: Vec<NodeFinish>,
}

impl fmt::Display for FinishReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "recovery finished: every node is out of recovery and writable"
        )?;
        for n in &self.nodes {
            match n.timeline {
                Some(t) => writeln!(f, "  {:<16} promoted, timeline {t}", n.node)?,
                None => writeln!(f, "  {:<16} already out of recovery", n.node)?,
            }
        }
        Ok(())
    }
}

impl FinishPlan {
    /// Builds the plan. Every node must run; a node still replaying (not yet paused) is refused,
    /// as is a cluster with no node in recovery and no restore under way.
    pub fn build(
        config: &ClusterConfig,
        observed: &[NodeObservation],
        state: Option<&RestoreState>,
    ) -> Result<Self> {
        let mut promote = Vec::new();
        let mut clean = Vec::new();
        for node in config.nodes() {
            let obs = find(observed, &node.name);
            if obs.server != ServerState::Running {
                return Err(Error::NodeNotRunning {
                    node: node.name.clone(),
                    state: obs.server,
                    fix: "run `citus-recovery restore-start` again, or start it with `citus-recovery cluster start`".into(),
                });
            }
            obs.require_running("check the server log")?;
            let conf = config.data_dir(node).join("postgresql.auto.conf");
            match (obs.in_recovery, obs.pause_state.as_deref()) {
                (Some(true), Some("paused")) => promote.push(NodePlan {
                    node: node.name.clone(),
                    steps: vec![Step::Resume, Step::WaitPromoted],
                }),
                (Some(true), other) => {
                    return Err(Error::NotPaused {
                        node: node.name.clone(),
                        pause_state: other.unwrap_or("unknown").into(),
                    })
                }
                _ => {}
            }
            let mut steps = vec![Step::RemoveRecoverySettings { file: conf }];
            if config.repository.is_some() {
                // Segments prefetched past the restore point are not wanted any more.
                steps.push(Step::RemoveSpool {
                    pg_wal: config.data_dir(node).join("pg_wal"),
                });
            }
            clean.push(NodePlan {
                node: node.name.clone(),
                steps,
            });
        }
        if promote.is_empty() && state.is_none() {
            return Err(Error::NoRestoreUnderWay {
                detail: "no node is paused in recovery and no restore-start is recorded".into(),
            });
        }
        let mut phases = Vec::new();
        if !promote.is_empty() {
            phases.push(Phase {
                title: "end recovery at the restore point".into(),
                nodes: promote,
            });
        }
        phases.push(Phase {
            title: "remove the recovery settings".into(),
            nodes: clean,
        });
        Ok(FinishPlan {
            phases,
            notes: vec![format!(
                "the data directories moved aside by restore-start are kept; remove them by hand once you no longer need them{}",
                state
                    .map(|s| {
                        let dirs: Vec<String> = s
                            .nodes
                            .iter()
                            .filter_map(|n| n.moved_aside_to.as_ref().map(|p| p.display().to_string()))
                            .collect();
                        format!(" ({})", dirs.join(", "))
                    })
                    .unwrap_or_default()
            )],
            basis: super::PlanBasis::default(),
        })
    }

    /// Runs the plan, then closes the restore state.
    pub async fn execute(
        &self,
        backend: &dyn ClusterBackend,
        opts: &RunOptions,
    ) -> Result<FinishReport> {
        let outputs = run_phases(backend, &self.phases, opts).await?;
        let config = backend.config();
        RestoreState::remove(config)?;
        let nodes = config
            .nodes()
            .map(|n| NodeFinish {
                node: n.name.clone(),
                timeline: outputs.iter().find(|o| o.node == n.name).and_then(|o| {
                    o.outputs.iter().find_map(|out| match out {
                        StepOutput::Promoted { timeline } => Some(*timeline),
                        _ => None,
                    })
                }),
            })
            .collect();
        Ok(FinishReport { nodes })
    }
}

super::plan_impls!(FinishPlan, "restore-finish", |_p| "plan: restore-finish"
    .to_string());
