//! Typed plans, one per recovery step: [`ArchivePlan`], [`BasebackupPlan`],
//! [`RestorePointPlan`], [`RestorePlan`], [`FinishPlan`].
//!
//! A plan is built from the config and what was observed on the nodes; building one changes
//! nothing. It is plain data: it serializes to JSON, prints as numbered steps per node (the
//! `--dry-run` output), and is executed through a [`ClusterBackend`]. A plan is made of phases
//! run one after another; within a phase every node's steps run at the same time, one node's
//! steps in order.

mod abort;
pub(crate) mod archive;
pub(crate) mod basebackup;
mod basis;
mod finish;
pub mod recovery_conf;
mod restore;
mod restore_point;
mod step;
mod wait;

use std::fmt;

use futures::stream::{self, StreamExt};
use serde::Serialize;

pub use abort::{AbortPlan, AbortReport, NodeAbort};
pub use archive::{ArchivePlan, ArchiveReport, ReplacedSetting};
pub use basebackup::{in_backup_folder, BasebackupPlan, StoredBackup};
pub use basis::{NodeBasis, PlanBasis};
pub use finish::{FinishPlan, FinishReport, NodeFinish};
pub(crate) use restore::prefetch_segments;
pub use restore::{
    attempt_paths, failed_restore_dir, moved_aside_dir, NodePaused, NodeRestore, RestoreInputs,
    RestorePlan, RestoreReport, RestoreState,
};
pub use restore_point::RestorePointPlan;
pub use step::{Parameter, RestorePointFunction, RunOptions, Step, StepOutput};

use crate::backend::ClusterBackend;
use crate::error::{Error, Result};

/// One node's steps within a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    /// The node's name.
    pub node: String,
    /// Its steps, run in order.
    pub steps: Vec<Step>,
}

/// Steps that run on several nodes at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Phase {
    /// What the phase does.
    pub title: String,
    /// Every node's steps.
    pub nodes: Vec<NodePlan>,
}

/// What every plan offers besides its own fields and `execute`.
pub trait Plan: fmt::Display + Serialize {
    /// The command this plan belongs to (`restore-start`).
    fn command(&self) -> &'static str;

    /// The phases, in order.
    fn phases(&self) -> &[Phase];

    /// Remarks a person should read before running it (restarts needed, what is skipped).
    fn notes(&self) -> &[String];

    /// Every step as one line, `node: step`, in the order they are listed.
    fn step_lines(&self) -> Vec<String> {
        self.phases()
            .iter()
            .flat_map(|p| &p.nodes)
            .flat_map(|n| n.steps.iter().map(move |s| format!("{}: {s}", n.node)))
            .collect()
    }

    /// The plan as pretty JSON (the `--dry-run --json` output).
    fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serializes")
    }
}

/// Implements [`Plan`] and `Display` for a plan struct with `phases` and `notes` fields; the
/// heading is computed from the plan by the closure given.
macro_rules! plan_impls {
    ($plan:ty, $command:literal, |$p:ident| $heading:expr) => {
        impl $crate::plan::Plan for $plan {
            fn command(&self) -> &'static str {
                $command
            }
            fn phases(&self) -> &[$crate::plan::Phase] {
                &self.phases
            }
            fn notes(&self) -> &[String] {
                &self.notes
            }
        }

        impl std::fmt::Display for $plan {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let $p = self;
                let heading = $heading;
                $crate::plan::write_plan(
                    f,
                    AsRef::<str>::as_ref(&heading),
                    &self.phases,
                    &self.notes,
                )
            }
        }
    };
}
pub(crate) use plan_impls;

/// The dry-run text shared by every plan: a heading, then numbered steps per node and phase.
pub(crate) fn write_plan(
    f: &mut fmt::Formatter<'_>,
    heading: &str,
    phases: &[Phase],
    notes: &[String],
) -> fmt::Result {
    writeln!(f, "{heading}")?;
    for (i, phase) in phases.iter().enumerate() {
        let together = if phase.nodes.len() > 1 {
            " (nodes at once)"
        } else {
            ""
        };
        writeln!(f, "phase {}: {}{together}", i + 1, phase.title)?;
        for node in &phase.nodes {
            writeln!(f, "  {}:", node.node)?;
            if node.steps.is_empty() {
                writeln!(f, "     nothing to do")?;
            }
            for (n, step) in node.steps.iter().enumerate() {
                writeln!(f, "    {}. {step}", n + 1)?;
            }
        }
    }
    if phases.is_empty() {
        writeln!(f, "nothing to do")?;
    }
    for note in notes {
        writeln!(f, "note: {note}")?;
    }
    Ok(())
}

/// Which of `paths` (each on its node's host) exist now: what restore and abort plans are built
/// from, so that building them touches no disk.
pub async fn existing_paths<'a>(
    backend: &dyn ClusterBackend,
    paths: impl Iterator<Item = (&'a str, &'a std::path::Path)>,
) -> Result<std::collections::HashSet<std::path::PathBuf>> {
    let config = backend.config();
    // All at once: over SSH each check is a round trip to the node's host (20-30 ms on the
    // test topology), two paths per node, checked when planning and again when applying. The
    // host's session limit still bounds how many run there together.
    let checks = paths.map(|(node, path)| async move {
        let node = config.node(node).unwrap_or(&config.coordinator);
        Ok::<_, crate::error::Error>(
            backend
                .exists(node, path)
                .await?
                .then(|| path.to_path_buf()),
        )
    });
    Ok(futures::future::try_join_all(checks)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// The first stamp ([`crate::names::default_name`]) from `now` on, second by second, of which
/// none of `paths(stamp)` exists: a folder named with the time must never be one an earlier run
/// in the same second (or before the clock went back) left, or the rename into it would fail
/// half-way through a restore or its rollback.
pub async fn free_stamp(
    backend: &dyn ClusterBackend,
    now: chrono::DateTime<chrono::Utc>,
    paths: impl Fn(&str) -> Vec<(String, std::path::PathBuf)>,
) -> Result<String> {
    const TRIES: i64 = 60;
    let mut taken = Vec::new();
    for second in 0..TRIES {
        let stamp = crate::names::default_name(now + chrono::Duration::seconds(second));
        let candidates = paths(&stamp);
        let existing = existing_paths(
            backend,
            candidates.iter().map(|(n, p)| (n.as_str(), p.as_path())),
        )
        .await?;
        if existing.is_empty() {
            return Ok(stamp);
        }
        taken.extend(existing);
    }
    taken.sort();
    Err(stamp_error(
        &crate::names::default_name(now),
        format!(
            "the folders of every stamp in the next {TRIES} seconds exist already (the first: {}); move old ones away",
            taken.first().map_or_else(String::new, |p| p.display().to_string())
        ),
    ))
}

/// Refuses `stamp` when any of `paths`, the folders a plan would create under it, is in
/// `existing`: the plan's renames into them would fail half-way.
pub(crate) fn refuse_taken_stamp<'a>(
    stamp: &str,
    paths: impl IntoIterator<Item = &'a std::path::Path>,
    existing: &std::collections::HashSet<std::path::PathBuf>,
) -> Result<()> {
    let taken: Vec<String> = paths
        .into_iter()
        .filter(|p| existing.contains(*p))
        .map(|p| p.display().to_string())
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(stamp_error(
        stamp,
        format!(
            "names folders that exist already ({}); new folders need a stamp of their own",
            taken.join(", ")
        ),
    ))
}

/// The one error for a stamp whose folders are taken.
fn stamp_error(stamp: &str, problem: String) -> Error {
    Error::InvalidArgument {
        what: "time stamp of new folders",
        value: stamp.into(),
        problem,
    }
}

/// What the steps of one node found out.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeOutputs {
    pub node: String,
    pub outputs: Vec<StepOutput>,
}

/// Runs the phases in order; within a phase the nodes at once (up to `opts.concurrency`). A
/// phase in which any node fails lets the other nodes finish their steps, then stops the plan
/// with every node's error.
pub(crate) async fn run_phases(
    backend: &dyn ClusterBackend,
    phases: &[Phase],
    opts: &RunOptions,
) -> Result<Vec<NodeOutputs>> {
    let mut all: Vec<NodeOutputs> = Vec::new();
    for phase in phases {
        let limit = if opts.concurrency == 0 {
            phase.nodes.len().max(1)
        } else {
            opts.concurrency
        };
        let results: Vec<Result<NodeOutputs>> = stream::iter(&phase.nodes)
            .map(|np| {
                // Every line logged while a node's steps run names the node.
                let span = tracing::info_span!("node", node = %np.node);
                tracing::Instrument::instrument(run_node(backend, np, opts), span)
            })
            .buffered(limit)
            .collect()
            .await;
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok(out) => match all.iter_mut().find(|o| o.node == out.node) {
                    Some(existing) => existing.outputs.extend(out.outputs),
                    None => all.push(out),
                },
                Err(e) => errors.push(e),
            }
        }
        if let Some(e) = Error::from_several(errors) {
            return Err(e);
        }
    }
    Ok(all)
}

async fn run_node(
    backend: &dyn ClusterBackend,
    np: &NodePlan,
    opts: &RunOptions,
) -> Result<NodeOutputs> {
    let node = backend
        .config()
        .node(&np.node)
        .ok_or_else(|| Error::PlanOutdated {
            what: format!("it names node {} which the config lacks", np.node),
        })?
        .clone();
    let mut outputs = Vec::new();
    for step in &np.steps {
        // The node is in the span around these steps (run_phases).
        tracing::info!("{step}");
        let phase = serde_json::to_value(step).ok();
        let phase = phase
            .as_ref()
            .and_then(|v| v["action"].as_str())
            .unwrap_or("step");
        let work = step.run(backend, &node, opts);
        let run = crate::progress::run_step(
            opts.progress.as_ref(),
            &node.name,
            phase,
            step.to_string(),
            work,
        );
        if let Some(out) = run.await? {
            outputs.push(out);
        }
    }
    Ok(NodeOutputs {
        node: np.node.clone(),
        outputs,
    })
}

#[cfg(test)]
mod orchestration_tests;
#[cfg(test)]
mod spool_tests;
#[cfg(test)]
mod tests;
