//! [`ArchivePlan`]: WAL archiving on every node, into `<archiveBaseFolder>/<node>`.
//!
//! Archiving uses PostgreSQL's own `basic_archive` module: it writes to a temporary file, syncs
//! and renames, accepts a file that is already archived with identical content and fails loudly
//! on a different one, which is what a trustworthy archive needs and `cp` does not give.

use std::fmt;

use serde::Serialize;

use super::{run_phases, NodePlan, Parameter, Phase, RunOptions, Step};
use crate::backend::ClusterBackend;
use crate::config::ClusterConfig;
use crate::error::Result;
use crate::observe::NodeObservation;

/// Parameters that take effect only at a server restart.
const RESTART_ONLY: [&str; 2] = ["wal_level", "archive_mode"];

/// The plan of `prepare-archiving`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchivePlan {
    /// The phases.
    pub phases: Vec<Phase>,
    /// Nodes that need a restart the plan does not do (`restart` was false), with the reasons.
    pub restart_pending: Vec<(String, Vec<String>)>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// What `prepare-archiving` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveReport {
    /// Nodes restarted for settings that need it.
    pub restarted: Vec<String>,
    /// Nodes that still need a restart before archiving works, with the settings.
    pub restart_pending: Vec<(String, Vec<String>)>,
}

impl fmt::Display for ArchiveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "archiving prepared")?;
        if !self.restarted.is_empty() {
            writeln!(f, "restarted: {}", self.restarted.join(", "))?;
        }
        for (node, because) in &self.restart_pending {
            writeln!(
                f,
                "restart needed on {node} for {} before archiving works",
                because.join(", ")
            )?;
        }
        Ok(())
    }
}

impl ArchivePlan {
    /// Builds the plan from the config and the observed nodes (all must be running). With
    /// `restart`, nodes whose `wal_level` or `archive_mode` change are restarted.
    pub fn build(
        config: &ClusterConfig,
        observed: &[NodeObservation],
        restart: bool,
    ) -> Result<Self> {
        let mut nodes = Vec::new();
        let mut restart_pending = Vec::new();
        for node in config.nodes() {
            let obs = find(observed, &node.name);
            obs.require_running("start it with `citus-recovery cluster start`")?;
            let archive = config.archive_dir(node);
            let current = |name: &str| obs.settings.get(name).cloned().unwrap_or_default();
            let mut wanted = Vec::new();
            if !matches!(current("wal_level").as_str(), "replica" | "logical") {
                wanted.push(("wal_level", "replica".to_string()));
            }
            if !matches!(current("archive_mode").as_str(), "on" | "always") {
                wanted.push(("archive_mode", "on".to_string()));
            }
            if current("archive_library") != "basic_archive" {
                wanted.push(("archive_library", "basic_archive".to_string()));
            }
            let dir = archive.to_string_lossy().to_string();
            if current("basic_archive.archive_directory") != dir {
                wanted.push(("basic_archive.archive_directory", dir));
            }
            // archive_library wins over archive_command; clear it so nobody is misled.
            if !current("archive_command").is_empty() && current("archive_command") != "(disabled)"
            {
                wanted.push(("archive_command", String::new()));
            }
            let mut steps = vec![Step::CreateFolder { path: archive }];
            let because: Vec<String> = wanted
                .iter()
                .filter(|(n, _)| RESTART_ONLY.contains(n))
                .map(|(n, _)| n.to_string())
                .collect();
            if !wanted.is_empty() {
                steps.push(Step::SetParameters {
                    parameters: wanted
                        .into_iter()
                        .map(|(name, value)| Parameter {
                            name: name.to_string(),
                            value,
                        })
                        .collect(),
                });
                steps.push(Step::Reload);
            }
            if !because.is_empty() {
                if restart {
                    steps.push(Step::Restart { because });
                } else {
                    restart_pending.push((node.name.clone(), because));
                }
            }
            nodes.push(NodePlan {
                node: node.name.clone(),
                steps,
            });
        }
        let mut notes = Vec::new();
        for (node, because) in &restart_pending {
            notes.push(format!(
                "node {node} needs a restart for {} before archiving works: run prepare-archiving without --no-restart, or `citus-recovery cluster stop` and `cluster start`",
                because.join(" and ")
            ));
        }
        if nodes.iter().all(|n| n.steps.len() == 1) {
            notes.push("archiving is already prepared on every node".into());
        }
        Ok(ArchivePlan {
            phases: vec![Phase {
                title: "prepare WAL archiving".into(),
                nodes,
            }],
            restart_pending,
            notes,
        })
    }

    /// Runs the plan.
    pub async fn execute(
        &self,
        backend: &dyn ClusterBackend,
        opts: &RunOptions,
    ) -> Result<ArchiveReport> {
        run_phases(backend, &self.phases, opts).await?;
        let restarted = self.phases[0]
            .nodes
            .iter()
            .filter(|n| n.steps.iter().any(|s| matches!(s, Step::Restart { .. })))
            .map(|n| n.node.clone())
            .collect();
        Ok(ArchiveReport {
            restarted,
            restart_pending: self.restart_pending.clone(),
        })
    }
}

/// The observation of `node`; plans are always built from observations of every config node.
pub(super) fn find<'a>(observed: &'a [NodeObservation], node: &str) -> &'a NodeObservation {
    observed
        .iter()
        .find(|o| o.node == node)
        .expect("every config node is observed")
}

super::plan_impls!(ArchivePlan, "prepare-archiving", |_p| {
    "plan: prepare-archiving"
});
