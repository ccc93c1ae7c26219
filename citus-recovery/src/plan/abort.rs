//! [`AbortPlan`]: undo restore-start, putting every node's old data directory back.
//!
//! Built from the restore state that restore-start wrote before touching any node. Per node: stop
//! the server, move the restored data directory aside (kept as `<node>.failed-restore-<time>`,
//! never deleted), move the old one back, and start it again if it was running before. Used by
//! `restore-abort`, and by restore-start itself when it fails half-way.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::archive::find;
use super::{run_phases, NodePlan, Phase, RestoreState, RunOptions, Step};
use crate::backend::{ClusterBackend, ServerState};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::observe::NodeObservation;

/// The plan of `restore-abort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AbortPlan {
    /// The restore being undone.
    pub state: RestoreState,
    /// The phases.
    pub phases: Vec<Phase>,
    /// Remarks.
    pub notes: Vec<String>,
    /// What it was built from, checked again by [`crate::Cluster::apply`] (not in the JSON).
    #[serde(skip)]
    pub basis: super::PlanBasis,
}

/// What restore-abort did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AbortReport {
    /// Every node with what became of its restored data directory.
    pub nodes: Vec<NodeAbort>,
}

/// One node after restore-abort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeAbort {
    /// The node's name.
    pub node: String,
    /// Whether its old data directory was put back.
    pub restored_old_data_dir: bool,
    /// Where the data directory restore-start had made was moved (kept for inspection).
    pub failed_restore_kept_at: Option<PathBuf>,
}

impl AbortPlan {
    /// Where each node's restored data directory would be kept under `stamp`
    /// (`<node>.failed-restore-<stamp>`): the names [`AbortPlan::build`] needs free.
    pub fn kept_paths(
        config: &ClusterConfig,
        state: &RestoreState,
        stamp: &str,
    ) -> Vec<(String, PathBuf)> {
        state
            .nodes
            .iter()
            .map(|n| {
                (
                    n.node.clone(),
                    super::failed_restore_dir(config, &n.node, stamp),
                )
            })
            .collect()
    }

    /// Builds the plan. `existing` holds which of the state's paths and of the
    /// [`AbortPlan::kept_paths`] of `stamp` (a [`crate::names::default_name`], see
    /// [`super::free_stamp`]) exist now; a kept copy's name that exists is refused.
    pub fn build(
        config: &ClusterConfig,
        observed: &[NodeObservation],
        state: &RestoreState,
        existing: &HashSet<PathBuf>,
        stamp: &str,
    ) -> Result<Self> {
        crate::names::check_stamp(stamp)?;
        let mut nodes = Vec::new();
        for n in &state.nodes {
            let node = config.node(&n.node).ok_or_else(|| Error::Identity {
                node: n.node.clone(),
                problem: "the restore under way names this node, which the config lacks".into(),
                fix: format!(
                    "use the config the restore began with, or restore its data directory by hand from {:?}",
                    n.moved_aside_to
                ),
            })?;
            let mut steps = Vec::new();
            let old = n.moved_aside_to.as_ref().filter(|p| existing.contains(*p));
            // A node without a data directory before restore-start: whatever is there now was
            // made by the restore, and is moved aside like any restored one.
            let restored_in_place = old.is_some() || n.moved_aside_to.is_none();
            let move_restored = restored_in_place && existing.contains(&n.data_dir);
            if move_restored && config.repository.is_some() {
                // What archive-get prefetched must not stay in the kept copy's pg_wal.
                steps.push(Step::RemoveSpool {
                    pg_wal: n.data_dir.join("pg_wal"),
                });
            }
            if move_restored {
                let kept = super::failed_restore_dir(config, &node.name, stamp);
                super::refuse_taken_stamp(stamp, [kept.as_path()], existing)?;
                steps.push(Step::MoveAside {
                    from: n.data_dir.clone(),
                    to: kept,
                });
            }
            if let Some(old) = old {
                steps.push(Step::MoveAside {
                    from: old.clone(),
                    to: n.data_dir.clone(),
                });
            }
            let running = find(observed, &node.name).server == ServerState::Running;
            // A running node with nothing to move was rolled back already (by restore-start's
            // own rollback while another host was lost): it is left running.
            let moves = !steps.is_empty();
            if running && moves {
                steps.insert(0, Step::Stop);
            }
            if n.was_running
                && (moves || !running)
                && (old.is_some() || (existing.contains(&n.data_dir) && !move_restored))
            {
                steps.push(Step::Start { wait: true });
            }
            nodes.push(NodePlan {
                node: node.name.clone(),
                steps,
            });
        }
        Ok(AbortPlan {
            state: state.clone(),
            phases: vec![Phase {
                title: format!(
                    "undo the restore of backup {} to {:?}",
                    state.backup, state.restore_point
                ),
                nodes,
            }],
            notes: vec![
                "restored data directories are kept as <node>.failed-restore-<time> beside the data directory; remove them by hand".into(),
            ],
            basis: super::PlanBasis::default(),
        })
    }

    /// Runs the plan, then closes the restore state.
    pub async fn execute(
        &self,
        backend: &dyn ClusterBackend,
        opts: &RunOptions,
    ) -> Result<AbortReport> {
        run_phases(backend, &self.phases, opts).await?;
        RestoreState::remove(backend.config())?;
        let nodes = self.phases[0]
            .nodes
            .iter()
            .map(|np| {
                let mut report = NodeAbort {
                    node: np.node.clone(),
                    restored_old_data_dir: false,
                    failed_restore_kept_at: None,
                };
                for step in &np.steps {
                    if let Step::MoveAside { from, to } = step {
                        if self.state.nodes.iter().any(|n| &n.data_dir == from) {
                            report.failed_restore_kept_at = Some(to.clone());
                        } else {
                            report.restored_old_data_dir = true;
                        }
                    }
                }
                report
            })
            .collect();
        Ok(AbortReport { nodes })
    }
}

impl fmt::Display for AbortReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "restore aborted: the data directories from before restore-start are back"
        )?;
        for n in &self.nodes {
            write!(f, "  {:<16}", n.node)?;
            write!(
                f,
                "{}",
                if n.restored_old_data_dir {
                    "old data directory put back"
                } else if n.failed_restore_kept_at.is_some() {
                    "no data directory before restore-start"
                } else {
                    "data directory unchanged"
                }
            )?;
            if let Some(p) = &n.failed_restore_kept_at {
                write!(f, ", restored copy kept at {}", p.display())?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

super::plan_impls!(AbortPlan, "restore-abort", |_p| "plan: restore-abort"
    .to_string());
