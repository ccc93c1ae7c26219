//! [`RestorePlan`]: every node back to the same restore point, paused there for inspection.
//!
//! Per node: stop the server, move the data directory aside (kept, never deleted), extract the
//! backup, write the recovery settings and `recovery.signal`, start, and wait until recovery is
//! paused at the restore point. Before the first node is touched, the plan's state is written to
//! `<backupBaseFolder>/citus-recovery-restore.json` (a file of the invoking user's, see
//! [`crate::trusted`]), so `restore-abort`, a second `restore-start` (which resumes) or a person
//! knows which directory to put back. Paths are never read from that file: they are rebuilt from
//! the config and the validated time stamp it holds.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::archive::find;
use super::recovery_conf::{self, quote_value};
use super::{run_phases, AbortPlan, NodePlan, Phase, RunOptions, Step, StepOutput};
use crate::backend::{ClusterBackend, ServerState, TablespaceTarget};
use crate::catalog::{Backup, Catalog, NodeBackup, NodeRestorePoint, RestorePoint};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::observe::NodeObservation;
use crate::trusted;
use crate::wal::{HotStandbyParameters, Lsn};

/// File name of the restore state, in `backupBaseFolder`.
pub const RESTORE_STATE: &str = "citus-recovery-restore.json";

/// What restore-start changed on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRestore {
    /// The node's name.
    pub node: String,
    /// Its data directory (rebuilt from the config when the state is read).
    pub data_dir: PathBuf,
    /// Where the old data directory was moved, if there was one (rebuilt from the config and the
    /// state's stamp when the state is read).
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
    /// The time stamp in the names of the moved-aside data directories
    /// (`<node>.before-restore-<stamp>`).
    pub stamp: String,
    /// Every node.
    pub nodes: Vec<NodeRestore>,
}

/// Where restore-start moves a node's data directory: `<clusterBaseFolder>/<node>.before-restore-<stamp>`.
pub fn moved_aside_dir(config: &ClusterConfig, node: &str, stamp: &str) -> PathBuf {
    config
        .cluster_base_folder
        .join(format!("{node}.before-restore-{stamp}"))
}

/// Where a restored data directory goes when its restore is undone or started again:
/// `<clusterBaseFolder>/<node>.failed-restore-<stamp>`.
pub fn failed_restore_dir(config: &ClusterConfig, node: &str, stamp: &str) -> PathBuf {
    config
        .cluster_base_folder
        .join(format!("{node}.failed-restore-{stamp}"))
}

/// The folders one restore-start attempt may create under `stamp`, per node: the moved-aside
/// data directory, the kept result of a killed attempt and the tablespaces' folder. An attempt's
/// stamp must name none that exists, or two attempts in one second would collide.
pub fn attempt_paths(config: &ClusterConfig, stamp: &str) -> Vec<(String, PathBuf)> {
    config
        .nodes()
        .flat_map(|n| {
            [
                moved_aside_dir(config, &n.name, stamp),
                failed_restore_dir(config, &n.name, stamp),
                tablespaces_dir(config, &n.name, stamp),
            ]
            .map(|p| (n.name.clone(), p))
        })
        .collect()
}

/// The folder of one attempt's tablespaces on a node: `<clusterBaseFolder>/<node>.tablespaces-<stamp>`.
fn tablespaces_dir(config: &ClusterConfig, node: &str, stamp: &str) -> PathBuf {
    config
        .cluster_base_folder
        .join(format!("{node}.tablespaces-{stamp}"))
}

/// Where restore-start puts a tablespace of the backup:
/// `<clusterBaseFolder>/<node>.tablespaces-<stamp>/<oid>`, a new folder for every attempt.
pub fn tablespace_dir(config: &ClusterConfig, node: &str, stamp: &str, oid: u32) -> PathBuf {
    tablespaces_dir(config, node, stamp).join(oid.to_string())
}

impl RestoreState {
    /// Where the state file of `config` lives.
    pub fn path(config: &ClusterConfig) -> PathBuf {
        config.backup_base_folder.join(RESTORE_STATE)
    }

    /// Where versions before 0.2 wrote it: a folder the servers' user can write.
    fn legacy_path(config: &ClusterConfig) -> PathBuf {
        config.cluster_base_folder.join(RESTORE_STATE)
    }

    /// Reads the restore under way, if any, after checking that only the invoking user could
    /// have written it; every path is rebuilt from `config` and the validated stamp.
    pub fn load(config: &ClusterConfig) -> Result<Option<Self>> {
        let legacy = Self::legacy_path(config);
        if std::fs::symlink_metadata(&legacy).is_ok() {
            return Err(Error::UntrustedFile {
                path: legacy,
                problem: "is a restore state left by an older version, in a folder the servers' user can write".into(),
                fix: "read it, put each node's data directory back by hand if a restore was under way (the names it lists are <node>.before-restore-<time> in clusterBaseFolder), then remove it".into(),
            });
        }
        let path = Self::path(config);
        let Some(mut state) = trusted::read_json::<RestoreState>(&path)? else {
            return Ok(None);
        };
        crate::names::check_stamp(&state.stamp).map_err(|e| Error::UntrustedFile {
            path: path.clone(),
            problem: format!("holds a bad stamp: {e}"),
            fix: "restore the file from the output of restore-start, or remove it after putting the data directories back by hand".into(),
        })?;
        for n in &mut state.nodes {
            let node = config.node(&n.node).ok_or_else(|| Error::Identity {
                node: n.node.clone(),
                problem: format!(
                    "the restore under way ({}) names a node the config lacks",
                    path.display()
                ),
                fix: format!(
                    "use the config the restore began with, or put the node's data directory back by hand from {} and remove the file",
                    moved_aside_dir(config, &n.node, &state.stamp).display()
                ),
            })?;
            n.data_dir = config.data_dir(node);
            n.moved_aside_to = n
                .moved_aside_to
                .is_some()
                .then(|| moved_aside_dir(config, &node.name, &state.stamp));
        }
        Ok(Some(state))
    }

    /// Writes the state, durably, before any node is touched.
    pub fn save(&self, config: &ClusterConfig) -> Result<()> {
        trusted::ensure_dir(&config.backup_base_folder)?;
        trusted::write_json(&Self::path(config), self)
    }

    /// Removes the state: no restore is under way any more.
    pub fn remove(config: &ClusterConfig) -> Result<()> {
        trusted::remove(&Self::path(config))
    }

    /// The entry of `node`.
    pub fn node(&self, node: &str) -> Option<&NodeRestore> {
        self.nodes.iter().find(|n| n.node == node)
    }

    /// The error for a command that must not run while this restore is under way.
    pub fn in_progress(&self, fix: &str) -> Error {
        Error::RestoreInProgress {
            backup: self.backup.clone(),
            restore_point: self.restore_point.clone(),
            started: self.started.to_rfc3339(),
            fix: fix.into(),
        }
    }

    /// Every path a plan built from this state asks about.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.nodes.iter().flat_map(|n| {
            std::iter::once((n.node.as_str(), n.data_dir.as_path()))
                .chain(n.moved_aside_to.as_deref().map(|p| (n.node.as_str(), p)))
        })
    }
}

/// What a [`RestorePlan`] is built from, besides the config and the nodes' observations.
#[derive(Debug, Clone, Copy)]
pub struct RestoreInputs<'a> {
    /// The complete backup to restore.
    pub backup: &'a Backup,
    /// The restore point, as found in each node's archive.
    pub restore_point: &'a RestorePoint,
    /// Per node, the highest hot-standby settings the WAL up to the point asks for
    /// ([`crate::VerifyReport::wal_parameters`]).
    pub wal_parameters: &'a BTreeMap<String, HotStandbyParameters>,
    /// Which data directories and moved-aside directories exist now.
    pub existing: &'a HashSet<PathBuf>,
    /// The restore under way, when restore-start runs again.
    pub previous: Option<&'a RestoreState>,
    /// This attempt's stamp (a [`crate::names::default_name`]), in the names of the folders it
    /// creates: none of its [`attempt_paths`] may be in `existing`.
    pub attempt: &'a str,
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
    /// What it was built from, checked again by [`crate::Cluster::apply`] (not in the JSON).
    #[serde(skip)]
    pub basis: super::PlanBasis,
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
    /// When the restore point was chosen for a time (`--before`): which, and how far before it.
    /// Set by the caller that chose it; `None` when the point was named.
    pub before: Option<crate::verify::before::ChosenPoint>,
}

impl fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "every node is paused at restore point {} (backup {}); check the data with read-only queries, then run restore-finish",
            quote_value(&self.restore_point),
            self.backup
        )?;
        if let Some(chosen) = &self.before {
            writeln!(f, "{}", chosen.note)?;
        }
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
    /// Builds the plan from a complete backup and the restore point as found in the archives.
    /// Refused when the backup's nodes are not the config's, when the point lacks a node, or
    /// when the point is older than the backup on any node. Touches no disk: what exists is in
    /// `inputs.existing`.
    pub fn build(
        config: &ClusterConfig,
        observed: &[NodeObservation],
        catalog: &Catalog,
        inputs: &RestoreInputs<'_>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let RestoreInputs {
            backup,
            restore_point,
            wal_parameters,
            existing,
            previous,
            attempt,
        } = *inputs;
        crate::names::check_stamp(attempt)?;
        let paths = attempt_paths(config, attempt);
        super::refuse_taken_stamp(attempt, paths.iter().map(|(_, p)| p.as_path()), existing)?;
        // A restore started again keeps the first attempt's stamp: the old data directories
        // stay where that attempt put them.
        let stamp = previous.map_or_else(|| attempt.to_string(), |p| p.stamp.clone());
        crate::observe::check_backup_nodes(config, backup)?;
        let in_folder = super::basebackup::in_backup_folder(catalog);
        let mut nodes = Vec::new();
        let mut state_nodes = Vec::new();
        for node in config.nodes() {
            let part = backup.node(&node.name).ok_or_else(|| Error::Identity {
                node: node.name.clone(),
                problem: format!(
                    "backup {} has no part for this node: it was taken of a cluster without it",
                    backup.name
                ),
                fix: "choose another backup".into(),
            })?;
            let point =
                restore_point
                    .node(&node.name)
                    .ok_or_else(|| Error::UnknownRestorePoint {
                        name: restore_point.name.clone(),
                        hint: format!(
                            "it was not made on node {}; choose another restore point",
                            node.name
                        ),
                    })?;
            let too_old = match point.lsn {
                Some(lsn) if point.timeline == part.timeline => lsn < part.end_lsn,
                _ => restore_point.time < backup.end_time,
            };
            if too_old {
                return Err(Error::BackupTooNew {
                    backup: backup.name.clone(),
                    restore_point: restore_point.name.clone(),
                    made: restore_point.time.to_rfc3339(),
                    node: node.name.clone(),
                });
            }
            let obs = find(observed, &node.name);
            let data_dir = config.data_dir(node);
            let mut steps = Vec::new();
            if obs.server == ServerState::Running {
                steps.push(Step::Stop);
            }
            let aside = moved_aside_dir(config, &node.name, &stamp);
            let has_data_dir = existing.contains(&data_dir);
            let (moved_aside_to, was_running) = match previous.map(|p| p.node(&node.name)) {
                None => {
                    if has_data_dir {
                        steps.push(Step::MoveAside {
                            from: data_dir.clone(),
                            to: aside.clone(),
                        });
                    }
                    (
                        has_data_dir.then_some(aside),
                        obs.server == ServerState::Running,
                    )
                }
                Some(None) => {
                    return Err(Error::Identity {
                        node: node.name.clone(),
                        problem: "the restore under way was begun without this node".into(),
                        fix: "run restore-abort with the config the restore began with".into(),
                    })
                }
                Some(Some(prev)) => {
                    let old_kept = prev.moved_aside_to.is_some() && existing.contains(&aside);
                    if prev.moved_aside_to.is_some() && !old_kept && has_data_dir {
                        // Killed before the move: the data directory is still the old one.
                        steps.push(Step::MoveAside {
                            from: data_dir.clone(),
                            to: aside.clone(),
                        });
                    } else if prev.moved_aside_to.is_some() && !old_kept {
                        return Err(Error::OldDataDirGone {
                            node: node.name.clone(),
                            data_dir: data_dir.clone(),
                            moved_aside_to: aside.clone(),
                        });
                    } else if has_data_dir {
                        // What the killed attempt restored: kept, never deleted.
                        steps.push(Step::MoveAside {
                            from: data_dir.clone(),
                            to: failed_restore_dir(config, &node.name, attempt),
                        });
                    }
                    (
                        prev.moved_aside_to.as_ref().map(|_| aside),
                        prev.was_running,
                    )
                }
            };
            // With a repository, archive-get fetches (and checks) each file.
            let restore_command = match config.repository {
                Some(_) => {
                    super::archive::tool_command(config, "archive-get", &node.name, "%f %p")?
                }
                None => recovery_conf::restore_command(&config.archive_dir(node)),
            };
            // Each attempt restores tablespaces into new folders of its own: never the live
            // tablespace, never what an earlier attempt left.
            let tablespaces: Vec<TablespaceTarget> = part
                .tablespaces
                .iter()
                .map(|&oid| TablespaceTarget {
                    oid,
                    location: tablespace_dir(config, &node.name, attempt, oid),
                })
                .collect();
            // With a repository, backups are in it (see plan::basebackup); without, in folders.
            steps.push(match in_folder {
                false => Step::ExtractFromRepository {
                    backup: backup.name.clone(),
                    objects: crate::repository::backup::node_folder(&backup.name, &node.name)?
                        .as_str()
                        .to_string(),
                    data_dir: data_dir.clone(),
                    tablespaces: tablespaces.clone(),
                },
                true => Step::Extract {
                    backup: catalog.node_backup_dir(&backup.name, &node.name),
                    data_dir: data_dir.clone(),
                    tablespaces: tablespaces.clone(),
                },
            });
            steps.push(Step::WriteRecoverySettings {
                file: data_dir.join("postgresql.auto.conf"),
                settings: vec![
                    ("restore_command".into(), quote_value(&restore_command)),
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
                raised: raised_settings(wal_parameters.get(&node.name), part.hot_standby),
            });
            steps.push(Step::CreateSignal {
                path: data_dir.join("recovery.signal"),
            });
            // archive-get's spool filled while the other nodes may still extract, before this
            // server asks: before the sync too, so the fetches overlap it.
            if config.repository.is_some() {
                if let Some((first, last, count)) =
                    prefetch_window(part, point, config.archive_get_queue)
                {
                    steps.push(Step::PrefetchWal {
                        pg_wal: data_dir.join("pg_wal"),
                        first,
                        last,
                        count,
                        segment_size: part.segment_size(),
                    });
                }
            }
            steps.push(Step::InstallControlFile {
                data_dir: data_dir.clone(),
                tablespaces,
            });
            steps.push(Step::Start { wait: false });
            steps.push(Step::WaitPaused {
                restore_point: restore_point.name.clone(),
                lsn: point.lsn,
            });
            nodes.push(NodePlan {
                node: node.name.clone(),
                steps,
            });
            state_nodes.push(NodeRestore {
                node: node.name.clone(),
                data_dir,
                moved_aside_to,
                was_running,
            });
        }
        Ok(RestorePlan {
            state: RestoreState {
                backup: backup.name.clone(),
                restore_point: restore_point.name.clone(),
                started: previous.map_or(now, |p| p.started),
                stamp,
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
                match previous {
                    None => format!(
                        "the restore state is written to {} before any node is touched",
                        RestoreState::path(config).display()
                    ),
                    Some(p) => format!(
                        "resumes the restore begun at {}: the data directories from before it stay where it moved them; what it had restored is kept as <node>.failed-restore-{attempt}",
                        p.started.to_rfc3339()
                    ),
                },
                "once paused, check the data with read-only queries, then run `citus-recovery restore-finish`".into(),
            ],
            basis: super::PlanBasis::default(),
        })
    }

    /// Runs the plan: writes the restore state, then restores every node at once.
    pub async fn execute(
        &self,
        backend: &dyn ClusterBackend,
        opts: &RunOptions,
    ) -> Result<RestoreReport> {
        self.state.save(backend.config())?;
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
            before: None,
        })
    }
}

/// The segments replay asks for first, as restore-start's prefetch fetches them: from the one
/// holding the backup's start (its WAL is not in the stored tar) through the restore point's,
/// at most `queue + 1` (the window archive-get's own first worker would hold, so the spool
/// never takes more room than today). `None` with prefetch off (`queue` 0), or when the point
/// is on another timeline than the backup. Segments of the backup's recorded size (16 MiB for
/// backups that did not record it).
fn prefetch_window(
    part: &NodeBackup,
    point: &NodeRestorePoint,
    queue: usize,
) -> Option<(String, String, usize)> {
    let seg_size = part.segment_size();
    let end = match point.lsn {
        Some(lsn) => lsn.segment(seg_size),
        None => match crate::wal::parse_segment_file_name(&point.segment, seg_size)? {
            (tli, n) if tli == point.timeline => n,
            _ => return None,
        },
    };
    let names = prefetch_segments(part, point.timeline, end, queue);
    Some((names.first()?.clone(), names.last()?.clone(), names.len()))
}

/// The segments of a node's prefetch window, in order: from the one holding the backup's start
/// through segment `end` (the one holding the restore point's record) of timeline `tli`, at
/// most `queue + 1` of them. None when the point is on another timeline than the backup or
/// the queue is off. Restore-start's pre-flight keeps the ones it reads for the spool.
pub(crate) fn prefetch_segments(
    part: &NodeBackup,
    tli: crate::wal::TimeLineId,
    end: crate::wal::SegNo,
    queue: usize,
) -> Vec<String> {
    let seg_size = part.segment_size();
    let first = part.start_lsn.segment(seg_size);
    if queue == 0 || tli != part.timeline || end < first {
        return Vec::new();
    }
    let count = (end - first + 1).min(queue as u64 + 1);
    (first..first + count)
        .map(|n| crate::wal::lsn::segno_file_name(part.timeline, n, seg_size))
        .collect()
}

/// The settings to raise so that replay up to the restore point never pauses early: those the
/// WAL raised above the backup's own values (the restored server never gets lower ones than its
/// `pg_control` holds). Without the backup's values, every value the WAL asks for is set.
fn raised_settings(
    wal: Option<&HotStandbyParameters>,
    backup: Option<HotStandbyParameters>,
) -> Vec<(String, String)> {
    let Some(wal) = wal else {
        return Vec::new();
    };
    let needed = backup.map_or(*wal, |b| wal.max(&b));
    let base = backup.map(|b| b.settings());
    needed
        .settings()
        .iter()
        .enumerate()
        .filter(|(i, (_, v))| base.map_or(true, |b| *v > b[*i].1))
        .map(|(_, (k, v))| (k.to_string(), v.to_string()))
        .collect()
}

impl RestorePlan {
    /// Undoes a failed restore on every node it can reach, each at once; the error says what
    /// failed, which nodes were rolled back and which wait for `restore-abort`.
    async fn roll_back(
        &self,
        backend: &dyn ClusterBackend,
        opts: &RunOptions,
        failure: Error,
    ) -> Error {
        tracing::error!("restore-start failed, rolling back every reachable node: {failure}");
        let config = backend.config();
        // Each node is observed on its own: a lost host must not keep the others from rollback.
        let looks = futures::future::join_all(self.state.nodes.iter().map(|n| async move {
            let node = config.node(&n.node).ok_or_else(|| Error::Identity {
                node: n.node.clone(),
                problem: "the restore under way names this node, which the config lacks".into(),
                fix: "run restore-abort with the config the restore began with".into(),
            })?;
            let observed = crate::observe::node(backend, node).await?;
            let paths = self.state.paths().filter(|(name, _)| *name == n.node);
            let existing = super::existing_paths(backend, paths).await?;
            Ok::<_, Error>((observed, existing))
        }))
        .await;
        let mut reachable = self.state.clone();
        reachable.nodes.clear();
        let mut observed = Vec::new();
        let mut existing = HashSet::new();
        let mut waiting = Vec::new();
        for (n, look) in self.state.nodes.iter().zip(looks) {
            match look {
                Ok((o, e)) => {
                    reachable.nodes.push(n.clone());
                    observed.push(o);
                    existing.extend(e);
                }
                Err(e) => waiting.push(format!("node {}: {e}", n.node)),
            }
        }
        let names = |nodes: &[NodeRestore]| {
            nodes
                .iter()
                .map(|n| n.node.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let state_path = RestoreState::path(config);
        let rollback = async {
            // Only the reachable nodes are asked which kept copy's name is free.
            let stamp = super::free_stamp(backend, Utc::now(), |s| {
                AbortPlan::kept_paths(config, &reachable, s)
            })
            .await?;
            let plan = AbortPlan::build(config, &observed, &reachable, &existing, &stamp)?;
            if waiting.is_empty() {
                plan.execute(backend, opts).await.map(|_| ())
            } else {
                // The state stays: restore-abort finishes the nodes that could not be reached.
                run_phases(backend, &plan.phases, opts).await.map(|_| ())
            }
        }
        .await;
        let rollback = match (rollback, waiting.is_empty()) {
            (Ok(()), true) => "every node was rolled back: the data directories from before restore-start are in place again".into(),
            (Ok(()), false) => format!(
                "rolled back (the data directories from before restore-start in place again): {}\nnot reachable, so not rolled back yet: {}\nthe restore state in {} is kept: once those hosts answer again, run `citus-recovery restore-abort` to put their old data directories back",
                if reachable.nodes.is_empty() { "none".into() } else { names(&reachable.nodes) },
                waiting.join("; "),
                state_path.display()
            ),
            (Err(e), _) => format!(
                "rolling back failed too ({e}){}; nothing was deleted: the restore state in {} says where each old data directory is; run `citus-recovery restore-abort` once every host answers",
                if waiting.is_empty() { String::new() } else { format!("; not reachable: {}", waiting.join("; ")) },
                state_path.display()
            ),
        };
        Error::RestoreFailed {
            failure: Box::new(failure),
            rollback,
        }
    }
}

super::plan_impls!(RestorePlan, "restore-start", |p| format!(
    "plan: restore-start backup {} to restore point {}",
    p.state.backup,
    quote_value(&p.state.restore_point)
));
