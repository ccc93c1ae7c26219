//! `fork`: the whole cluster restored to a restore point into a second cluster (its own
//! folders and ports, from a second config) beside the live one, which it never changes.
//!
//! The fork is a [`RestorePlan`] built for the fork's config from the live cluster's catalog,
//! backups and WAL archive, all read only, with three changes to every node's recovery
//! settings: `restore_command` reads the live archive; `archive_mode = off`, so the fork never
//! pushes WAL into it; and `citus.node_conninfo` names a root certificate that does not exist
//! with `sslmode=verify-full`, so no Citus connection from a fork node can be opened at all —
//! the restored `pg_dist_node` still names the live nodes. With `promote`, every node leaves
//! recovery, `pg_dist_node` is rewritten on every node (coordinator and each worker's metadata
//! copy) to name the fork's nodes only, and only then are Citus connections allowed again. A
//! paused fork keeps them impossible: per-node queries work, distributed queries fail.
//! The restore state lives in the fork's `backupBaseFolder`, so `restore-abort` with the
//! fork's config undoes it.

use std::fmt;

use serde::Serialize;

use crate::backend::ClusterBackend;
use crate::config::{ClusterConfig, NodeConfig};
use crate::error::{Error, Result};
use crate::plan::recovery_conf::quote_value;
use crate::plan::{NodePlan, Phase, RestorePlan, RestoreReport, RestoreState, RunOptions, Step};

/// What a fork node's `citus.node_conninfo` is until `pg_dist_node` names fork nodes only: a
/// root certificate that cannot exist, so every outbound Citus connection fails before it is
/// made (with or without SSL on the other side).
pub const BLOCKED_NODE_CONNINFO: &str =
    "sslmode=verify-full sslrootcert=/nonexistent/citus-recovery-fork-makes-no-connections";

/// One node's address in the live cluster and in the fork.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeMove {
    /// The node's name (the same in both configs).
    pub node: String,
    /// Its host name in the live cluster's config.
    pub from_host: String,
    /// Its port there.
    pub from_port: u16,
    /// Its host name in the fork's config.
    pub to_host: String,
    /// Its port there.
    pub to_port: u16,
}

/// The plan of `fork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForkPlan {
    /// The live cluster's name.
    pub source: String,
    /// The fork's cluster name.
    pub target: String,
    /// The backup restored.
    pub backup: String,
    /// The restore point every fork node recovers to.
    pub restore_point: String,
    /// Whether the fork is promoted (writable, `pg_dist_node` rewritten) or left paused.
    pub promote: bool,
    /// Whether the restore point was made by Citus: then Citus connections are blocked until
    /// `pg_dist_node` is rewritten.
    pub citus: bool,
    /// Whether the fork archives its WAL (into its own `archiveBaseFolder`); else
    /// `archive_mode` is off.
    pub archive: bool,
    /// Every node's address, live and fork.
    pub moves: Vec<NodeMove>,
    /// The phases: the restore, then (promoted) recovery ended and `pg_dist_node` rewritten.
    pub phases: Vec<Phase>,
    /// Remarks.
    pub notes: Vec<String>,
    /// The restore part, run first (its phases are the first of `phases`).
    #[serde(skip)]
    restore: RestorePlan,
}

/// What `fork` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForkReport {
    /// The restore of every fork node (paused at the point).
    pub restore: RestoreReport,
    /// Whether the fork was promoted and its `pg_dist_node` rewritten.
    pub promoted: bool,
    /// Seconds from the start of the fork until it was paused at the point (promoted: writable).
    pub seconds: f64,
}

impl fmt::Display for ForkReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.restore)?;
        if self.promoted {
            writeln!(
                f,
                "the fork was promoted: writable, its pg_dist_node names the fork's nodes only ({:.1} s)",
                self.seconds
            )
        } else {
            writeln!(
                f,
                "the fork is paused at the restore point ({:.1} s): query each node on its own; distributed queries fail on purpose (Citus connections are blocked, pg_dist_node still names the live nodes)",
                self.seconds
            )
        }
    }
}

/// Refuses a fork config that could touch the live cluster: other node names, a node address,
/// a folder or the repository lock shared with the live cluster.
pub fn check_target(source: &ClusterConfig, target: &ClusterConfig) -> Result<Vec<NodeMove>> {
    let err = |field: &str, problem: String, fix: &str| Error::Config {
        path: target.source.clone(),
        field: field.into(),
        problem,
        fix: fix.into(),
    };
    if target.uses_ssh() {
        return Err(err(
            "ssh",
            "is set: a fork's nodes are restored on this host only (a fork onto other hosts would need the live repository in the fork's config, which a fork must not lock or write)".into(),
            "give the fork's config no \"ssh\" and its nodes on this host (hostname localhost, free ports), or run `citus-recovery drill`, which forks onto this host by itself",
        ));
    }
    if target.repository.is_some() {
        return Err(err(
            "repository",
            "is set: a fork reads the live cluster's repository through the live config and must take no lock there nor write to it".into(),
            "remove \"repository\" from the fork's config",
        ));
    }
    for (field, a, b) in [
        (
            "clusterBaseFolder",
            &target.cluster_base_folder,
            &source.cluster_base_folder,
        ),
        (
            "archiveBaseFolder",
            &target.archive_base_folder,
            &source.archive_base_folder,
        ),
        (
            "backupBaseFolder",
            &target.backup_base_folder,
            &source.backup_base_folder,
        ),
    ] {
        let live = [
            &source.cluster_base_folder,
            &source.archive_base_folder,
            &source.backup_base_folder,
        ];
        if live
            .iter()
            .any(|l| a.starts_with(l) || l.starts_with(a) || a == b)
        {
            return Err(err(
                field,
                format!("{} is or holds a folder of the live cluster", a.display()),
                "give the fork folders of its own, outside the live cluster's",
            ));
        }
    }
    let mut moves = Vec::new();
    for node in source.nodes() {
        // libpq ignores sslmode on a Unix socket: the block on Citus connections would not hold.
        if node.hostname.starts_with('/') {
            return Err(Error::Config {
                path: source.source.clone(),
                field: "hostname".into(),
                problem: format!(
                    "node {} is reached through the Unix socket folder {}, and a fork can block Citus connections to a live node only over TCP",
                    node.name, node.hostname
                ),
                fix: "register the live nodes by host name (citus_update_node) and use those names in the config".into(),
            });
        }
        let to = target.node(&node.name).ok_or_else(|| {
            err(
                "workerNodes",
                format!("has no node {} of the live cluster", node.name),
                "give the fork the same node names as the live cluster",
            )
        })?;
        moves.push(NodeMove {
            node: node.name.clone(),
            from_host: node.hostname.clone(),
            from_port: node.port,
            to_host: to.hostname.clone(),
            to_port: to.port,
        });
    }
    if target.nodes().count() != source.nodes().count() {
        return Err(err(
            "workerNodes",
            "has nodes the live cluster lacks".into(),
            "give the fork exactly the live cluster's node names",
        ));
    }
    for to in target.nodes() {
        if source
            .nodes()
            .any(|n| n.port == to.port && same_host(&n.hostname, &to.hostname))
        {
            return Err(err(
                "port",
                format!(
                    "node {} of the fork is at {}:{}, a live node's address",
                    to.name, to.hostname, to.port
                ),
                "give every fork node a free port",
            ));
        }
    }
    Ok(moves)
}

/// Loopback names are one host.
fn same_host(a: &str, b: &str) -> bool {
    let local = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "::1") || h.starts_with('/');
    a == b || (local(a) && local(b))
}

impl ForkPlan {
    /// Turns `restore` (built for the fork's config from the live catalog) into the fork's
    /// plan: recovery settings that read the live archive and never write it, Citus
    /// connections blocked; with `promote`, recovery ended and `pg_dist_node` rewritten.
    pub fn build(
        source: &ClusterConfig,
        target: &ClusterConfig,
        mut restore: RestorePlan,
        moves: Vec<NodeMove>,
        promote: bool,
        citus: bool,
        archive: bool,
    ) -> Result<Self> {
        for phase in &mut restore.phases {
            for np in &mut phase.nodes {
                // The fork's restore_command reads the live archive, not what the fork's
                // config would prefetch from: archive-get fills the spool itself.
                np.steps.retain(|s| !matches!(s, Step::PrefetchWal { .. }));
                let live = source.node(&np.node).ok_or_else(|| Error::Identity {
                    node: np.node.clone(),
                    problem: "the fork names a node the live config lacks".into(),
                    fix: "give the fork the live cluster's node names".into(),
                })?;
                for step in &mut np.steps {
                    if let Step::WriteRecoverySettings {
                        settings, raised, ..
                    } = step
                    {
                        for (key, value) in settings.iter_mut() {
                            if key == "restore_command" {
                                *value = quote_value(&live_restore_command(source, live)?);
                            }
                        }
                        // Raised settings outlive restore-finish: the fork never archives
                        // into the live archive, and opens no Citus connection until
                        // pg_dist_node names fork nodes only.
                        let to = target.node(&np.node).unwrap_or(live);
                        if archive {
                            // Into the fork's own archive folder, never the live archive or
                            // repository (the restored archive_command would push there).
                            raised.push(("archive_mode".into(), quote_value("on")));
                            raised.push(("archive_library".into(), quote_value("basic_archive")));
                            raised.push(("archive_command".into(), quote_value("")));
                            raised.push((
                                "basic_archive.archive_directory".into(),
                                quote_value(&target.archive_dir(to).to_string_lossy()),
                            ));
                        } else {
                            raised.push(("archive_mode".into(), quote_value("off")));
                        }
                        // The restored config holds the live node's address and port, which
                        // may be another host's (nodes reached over SSH).
                        let port = target.node(&np.node).map_or(live.port, |n| n.port);
                        raised.push(("port".into(), port.to_string()));
                        if !to.hostname.starts_with('/') {
                            raised.push(("listen_addresses".into(), quote_value(&to.hostname)));
                        }
                        if citus {
                            raised.push((
                                "citus.node_conninfo".into(),
                                quote_value(BLOCKED_NODE_CONNINFO),
                            ));
                        }
                    }
                }
            }
        }
        // The fork's clusterBaseFolder may be new: made (owned by the servers' user) before the
        // data directories are extracted into it.
        let folders = Phase {
            title: "create the fork's folders".into(),
            nodes: target
                .nodes()
                .map(|n| NodePlan {
                    node: n.name.clone(),
                    steps: std::iter::once(target.cluster_base_folder.clone())
                        .chain(archive.then(|| target.archive_dir(n)))
                        .map(|path| Step::CreateFolder { path })
                        .collect(),
                })
                .collect(),
        };
        restore.phases.insert(0, folders);
        let mut phases = restore.phases.clone();
        let each = |steps: fn() -> Vec<Step>| -> Vec<NodePlan> {
            target
                .nodes()
                .map(|n| NodePlan {
                    node: n.name.clone(),
                    steps: steps(),
                })
                .collect()
        };
        let mut notes = vec![
            format!(
                "reads the live cluster {}'s catalog, backups and WAL archive only: no lock is taken there, nothing is written there; {}",
                source.cluster_name,
                if archive {
                    format!("the fork archives its WAL into its own {}", target.archive_base_folder.display())
                } else {
                    "the fork's archive_mode is off".to_string()
                }
            ),
            format!(
                "the restore state is written to {}: `citus-recovery restore-abort --config <fork config>` undoes the fork",
                RestoreState::path(target).display()
            ),
        ];
        if promote {
            phases.push(Phase {
                title: "end recovery on every fork node".into(),
                nodes: target
                    .nodes()
                    .map(|n| NodePlan {
                        node: n.name.clone(),
                        steps: vec![
                            Step::Resume,
                            Step::WaitPromoted,
                            Step::RemoveRecoverySettings {
                                file: target.data_dir(n).join("postgresql.auto.conf"),
                            },
                        ],
                    })
                    .collect(),
            });
        }
        if promote && citus {
            let rewrite = Step::RewriteDistNode {
                moves: moves.clone(),
            };
            phases.push(Phase {
                title: "point pg_dist_node at the fork's nodes (Citus connections still blocked)"
                    .into(),
                nodes: target
                    .nodes()
                    .map(|n| NodePlan {
                        node: n.name.clone(),
                        steps: vec![rewrite.clone()],
                    })
                    .collect(),
            });
            phases.push(Phase {
                title: "allow Citus connections between the fork's nodes".into(),
                nodes: each(|| vec![Step::AllowOutboundConnections]),
            });
        } else if !promote && citus {
            notes.push(format!(
                "left paused at the restore point, read-only: pg_dist_node cannot be rewritten during recovery and still names the live nodes, so citus.node_conninfo = '{BLOCKED_NODE_CONNINFO}' makes every Citus connection fail; query each fork node on its own (distributed queries on the fork's coordinator fail on purpose); run fork again with --promote for a usable Citus fork"
            ));
        }
        Ok(ForkPlan {
            source: source.cluster_name.clone(),
            target: target.cluster_name.clone(),
            backup: restore.state.backup.clone(),
            restore_point: restore.state.restore_point.clone(),
            promote,
            citus,
            archive,
            moves,
            phases,
            notes,
            restore,
        })
    }

    /// Runs the plan on the fork's nodes; `opts.repository` is the live cluster's (read only).
    pub async fn execute(
        &self,
        target: &dyn ClusterBackend,
        opts: &RunOptions,
    ) -> Result<ForkReport> {
        let started = std::time::Instant::now();
        let restore = self.restore.execute(target, opts).await?;
        let rest = &self.phases[self.restore.phases.len()..];
        if !rest.is_empty() {
            crate::plan::run_phases(target, rest, opts).await?;
            RestoreState::remove(target.config())?;
        }
        Ok(ForkReport {
            restore,
            promoted: self.promote,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The `restore_command` of a fork node: the live node's archive, read only.
fn live_restore_command(source: &ClusterConfig, live: &NodeConfig) -> Result<String> {
    Ok(match source.repository {
        Some(_) => crate::plan::archive::tool_command(source, "archive-get", &live.name, "%f %p")?,
        None => crate::plan::recovery_conf::restore_command(&source.archive_dir(live)),
    })
}

/// [`Step::RewriteDistNode`] on one fork node: every `pg_dist_node` row moved in one
/// transaction (through temporary names, so addresses may swap), then refused and rolled back
/// when any row still names a node that is not one of the fork's.
pub(crate) async fn rewrite_dist_node(
    backend: &dyn ClusterBackend,
    node: &NodeConfig,
    moves: &[NodeMove],
) -> Result<()> {
    let sql_err = |action: &'static str| {
        let name = node.name.clone();
        move |e| Error::sql(&name, action, e)
    };
    let mut client = backend.connect(node).await?;
    let has: bool = client
        .query_one(
            "SELECT to_regclass('pg_catalog.pg_dist_node') IS NOT NULL",
            &[],
        )
        .await
        .map_err(sql_err("look for pg_dist_node"))?
        .get(0);
    if !has {
        return Ok(());
    }
    let tx = client
        .transaction()
        .await
        .map_err(sql_err("begin the pg_dist_node rewrite"))?;
    for (i, m) in moves.iter().enumerate() {
        let temp = format!("citus-recovery-fork-moving-{i}");
        tx.execute(
            "UPDATE pg_catalog.pg_dist_node SET nodename = $1 WHERE nodename = $2 AND nodeport = $3",
            &[&temp, &m.from_host, &i32::from(m.from_port)],
        )
        .await
        .map_err(sql_err("rename a pg_dist_node row"))?;
    }
    for (i, m) in moves.iter().enumerate() {
        let temp = format!("citus-recovery-fork-moving-{i}");
        tx.execute(
            "UPDATE pg_catalog.pg_dist_node SET nodename = $1, nodeport = $2 WHERE nodename = $3",
            &[&m.to_host, &i32::from(m.to_port), &temp],
        )
        .await
        .map_err(sql_err("move a pg_dist_node row"))?;
    }
    let rows = tx
        .query(
            "SELECT nodename, nodeport, isactive FROM pg_catalog.pg_dist_node",
            &[],
        )
        .await
        .map_err(sql_err("read pg_dist_node"))?;
    for row in rows {
        let (host, port, active): (String, i32, bool) = (row.get(0), row.get(1), row.get(2));
        let known = moves
            .iter()
            .any(|m| m.to_host == host && i32::from(m.to_port) == port);
        if !known {
            // Dropping the transaction rolls it back.
            return Err(Error::UnlistedCitusNode {
                host,
                port: u16::try_from(port).unwrap_or(0),
                active,
            });
        }
    }
    tx.commit()
        .await
        .map_err(sql_err("commit the pg_dist_node rewrite"))?;
    Ok(())
}

crate::plan::plan_impls!(ForkPlan, "fork", |p| format!(
    "plan: fork {} into {}: backup {} to restore point {}{}",
    p.source,
    p.target,
    p.backup,
    quote_value(&p.restore_point),
    if p.promote { ", promoted" } else { ", paused" }
));

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, base: &str, ports: [u16; 2], extra: serde_json::Value) -> ClusterConfig {
        let node = |n: &str, port: u16| serde_json::json!({"name": n, "hostname": "localhost", "port": port, "username": "postgres", "dbname": "postgres"});
        let mut v = serde_json::json!({
            "clusterName": name,
            "workerCount": 1,
            "coordinatorNode": node("coordinator", ports[0]),
            "workerNodes": [node("worker1", ports[1])],
            "clusterBaseFolder": format!("{base}/cluster"),
            "archiveBaseFolder": format!("{base}/archive"),
            "backupBaseFolder": format!("{base}/backup"),
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        ClusterConfig::from_json_str(&v.to_string(), None).unwrap()
    }

    #[test]
    fn a_fork_config_that_could_touch_the_live_cluster_is_refused() {
        let live = config("live", "/srv/live", [5432, 5433], serde_json::json!({}));
        let fork = config("fork", "/srv/fork", [6432, 6433], serde_json::json!({}));
        let moves = check_target(&live, &fork).unwrap();
        assert_eq!(
            moves[1],
            NodeMove {
                node: "worker1".into(),
                from_host: "localhost".into(),
                from_port: 5433,
                to_host: "localhost".into(),
                to_port: 6433,
            }
        );
        let field = |r: Result<Vec<NodeMove>>| match r {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        // A live node's address (127.0.0.1 is localhost).
        let mut same_port = fork.clone();
        same_port.workers[0].port = 5432;
        same_port.workers[0].hostname = "127.0.0.1".into();
        assert_eq!(field(check_target(&live, &same_port)), "port");
        // A live node behind a Unix socket: sslmode would not block it.
        let mut socket = live.clone();
        socket.workers[0].hostname = "/var/run/postgresql".into();
        assert_eq!(field(check_target(&socket, &fork)), "hostname");
        // A folder inside the live cluster's.
        let inside = config(
            "fork",
            "/srv/live/cluster/x",
            [6432, 6433],
            serde_json::json!({}),
        );
        assert_eq!(field(check_target(&live, &inside)), "clusterBaseFolder");
        // Other node names.
        let mut renamed = fork.clone();
        renamed.workers[0].name = "worker9".into();
        assert_eq!(field(check_target(&live, &renamed)), "workerNodes");
        // A repository of its own would put a lock where the live one may be.
        let with_repo = config(
            "fork",
            "/srv/fork",
            [6432, 6433],
            serde_json::json!({"repository": {"type": "posix", "path": "/srv/repo"}}),
        );
        assert_eq!(field(check_target(&live, &with_repo)), "repository");
        // Nodes on other hosts: a fork restores on this host only.
        let over_ssh = config(
            "fork",
            "/srv/fork",
            [6432, 6433],
            serde_json::json!({"ssh": {"user": "postgres"}}),
        );
        assert_eq!(field(check_target(&live, &over_ssh)), "ssh");
    }

    #[test]
    fn a_fork_restores_the_live_repository_s_backups_from_it() {
        let live = config(
            "live",
            "/srv/live",
            [5432, 5433],
            serde_json::json!({"repository": {"type": "posix", "path": "/srv/repo"}}),
        );
        let fork = config("fork", "/srv/fork", [6432, 6433], serde_json::json!({}));
        let repo: std::sync::Arc<dyn crate::repository::Repository> =
            std::sync::Arc::new(crate::repository::memory::MemoryRepository::new());
        let live_catalog = crate::catalog::Catalog::open(&live, Some(repo));
        // The fork's config has no repository; the live catalog decides.
        assert!(!crate::plan::in_backup_folder(&live_catalog));
        let folders = crate::catalog::Catalog::new(&fork);
        assert!(crate::plan::in_backup_folder(&folders));
    }
}
