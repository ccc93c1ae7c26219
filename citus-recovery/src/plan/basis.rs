//! [`PlanBasis`]: what a plan was built from, so that [`crate::Cluster::apply`] can refuse a plan
//! the cluster has moved away from instead of running steps that no longer fit.
//!
//! Only what a plan's steps depend on is kept: each node's server state, whether it is in
//! recovery and paused, its archiving settings and identity; the restore under way; which of the
//! paths the plan asked about existed; the backup it restores. LSNs are left out: they move all
//! the time and no plan depends on them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::backend::ServerState;
use crate::error::{Error, Result};
use crate::observe::NodeObservation;

/// One node as the plan saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeBasis {
    /// The node's name.
    pub node: String,
    /// Whether its server ran.
    pub server: ServerState,
    /// Whether it answered when running.
    pub answered: bool,
    /// `pg_is_in_recovery()`.
    pub in_recovery: Option<bool>,
    /// `pg_get_wal_replay_pause_state()` while in recovery.
    pub pause_state: Option<String>,
    /// The archiving settings found.
    pub settings: BTreeMap<String, String>,
    /// The server's `system_identifier`.
    pub system_identifier: Option<u64>,
}

impl NodeBasis {
    fn of(obs: &NodeObservation) -> Self {
        NodeBasis {
            node: obs.node.clone(),
            server: obs.server,
            answered: obs.error.is_none(),
            in_recovery: obs.in_recovery,
            pause_state: obs.pause_state.clone(),
            settings: obs.settings.clone(),
            system_identifier: obs.system_identifier,
        }
    }

    /// What differs between this (planned) and `now`, in words. What a server cannot tell
    /// while it starts (not answering yet), and the pause state (a resumed restore replays on
    /// until it pauses), are not compared: they change without anyone acting on the node.
    fn differs(&self, now: &NodeBasis) -> Option<String> {
        let n = &self.node;
        if self.server != now.server {
            return Some(format!(
                "node {n} was {} when planned and is {} now",
                self.server, now.server
            ));
        }
        let role = |r: bool| if r { "in recovery" } else { "a primary" };
        if let (Some(was), Some(is)) = (self.in_recovery, now.in_recovery) {
            if was != is {
                return Some(format!(
                    "node {n} was {} when planned and is {} now",
                    role(was),
                    role(is)
                ));
            }
        }
        if self.answered && now.answered && self.settings != now.settings {
            let changed: std::collections::BTreeSet<&str> = self
                .settings
                .keys()
                .chain(now.settings.keys())
                .filter(|k| self.settings.get(*k) != now.settings.get(*k))
                .map(String::as_str)
                .collect();
            let changed: Vec<&str> = changed.into_iter().collect();
            return Some(format!(
                "node {n}: {} changed since the plan was built",
                changed.join(", ")
            ));
        }
        if let (Some(was), Some(is)) = (self.system_identifier, now.system_identifier) {
            if was != is {
                return Some(format!(
                    "node {n} is another server now (system identifier {was} when planned, {is} now)"
                ));
            }
        }
        None
    }
}

/// What a plan was built from; see the module docs. Built by the `Cluster::plan_*` methods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanBasis {
    /// Every node as observed (empty for a plan not built by a `Cluster::plan_*` method).
    pub nodes: Vec<NodeBasis>,
    /// Whether the plan depends on the restore under way (restore-start, -finish, -abort).
    pub restore_matters: bool,
    /// The restore under way when planned (its start, RFC 3339), if `restore_matters`.
    pub restore_under_way: Option<String>,
    /// Each path the plan asked about, on its node's host, and whether it existed.
    pub paths: Vec<(String, PathBuf, bool)>,
    /// The backup the plan restores, which must still be complete.
    pub backup: Option<String>,
}

impl PlanBasis {
    /// The basis of a plan built from `observed`; the other fields start empty.
    pub fn new(observed: &[NodeObservation]) -> Self {
        PlanBasis {
            nodes: observed.iter().map(NodeBasis::of).collect(),
            ..PlanBasis::default()
        }
    }

    /// Records the restore under way (or none): the plan depends on it.
    pub fn with_restore(mut self, started: Option<String>) -> Self {
        self.restore_matters = true;
        self.restore_under_way = started;
        self
    }

    /// `Ok` when `now` (observed the same way, just before running) still fits the plan; else
    /// [`Error::PlanOutdated`] naming the first difference.
    pub fn check(&self, now: &PlanBasis) -> Result<()> {
        let outdated = |what: String| Err(Error::PlanOutdated { what });
        if self.nodes.is_empty() {
            return outdated(
                "it was not built by a Cluster plan method, so what it was built from is unknown"
                    .into(),
            );
        }
        for planned in &self.nodes {
            match now.nodes.iter().find(|n| n.node == planned.node) {
                None => return outdated(format!("node {} is not in the config", planned.node)),
                Some(n) => {
                    if let Some(what) = planned.differs(n) {
                        return outdated(what);
                    }
                }
            }
        }
        if let Some(extra) = now
            .nodes
            .iter()
            .find(|n| !self.nodes.iter().any(|p| p.node == n.node))
        {
            return outdated(format!(
                "node {} is in the config but not in the plan",
                extra.node
            ));
        }
        if self.restore_matters && self.restore_under_way != now.restore_under_way {
            return outdated(match (&self.restore_under_way, &now.restore_under_way) {
                (None, Some(s)) => format!("a restore began at {s}"),
                (Some(s), None) => format!("the restore begun at {s} has ended"),
                (Some(a), Some(b)) => {
                    format!("the restore under way began at {a} when planned, at {b} now")
                }
                (None, None) => unreachable!("they differ"),
            });
        }
        for ((node, path, was), (_, _, is)) in self.paths.iter().zip(&now.paths) {
            if was != is {
                return outdated(format!(
                    "on node {node}, {} {} when planned and {} now",
                    path.display(),
                    if *was { "existed" } else { "did not exist" },
                    if *is { "exists" } else { "does not" }
                ));
            }
        }
        Ok(())
    }
}
