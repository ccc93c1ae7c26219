//! What the plans are built from: the state of every node, read without changing anything.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::future::join_all;
use serde::Serialize;

use crate::backend::{ClusterBackend, ServerState};
use crate::catalog::Backup;
use crate::config::{ClusterConfig, NodeConfig, NodeRole};
use crate::error::{Error, Result};

/// The settings the archive plan looks at.
pub const ARCHIVE_SETTINGS: [&str; 5] = [
    "wal_level",
    "archive_mode",
    "archive_library",
    "archive_command",
    "basic_archive.archive_directory",
];

/// One node, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeObservation {
    /// The node's name.
    pub node: String,
    /// Whether its server runs.
    pub server: ServerState,
    /// `pg_is_in_recovery()`, when it runs and answers.
    pub in_recovery: Option<bool>,
    /// `pg_get_wal_replay_pause_state()` while in recovery.
    pub pause_state: Option<String>,
    /// `pg_last_wal_replay_lsn()` while in recovery, else `pg_current_wal_lsn()`.
    pub lsn: Option<String>,
    /// The current timeline, when it answers and is not in recovery.
    pub timeline: Option<u32>,
    /// The settings in [`ARCHIVE_SETTINGS`] that are set (a module's are absent until loaded);
    /// `archive_command` as configured, also while archiving is off.
    pub settings: BTreeMap<String, String>,
    /// The created Citus extension's version, `None` where it is not created.
    pub citus_version: Option<String>,
    /// `server_version`.
    pub server_version: Option<String>,
    /// Whether the server was built with zstd (`zstd` among `wal_compression`'s values, which
    /// the build decides as it does for base backups), when it runs and answers.
    pub server_zstd: Option<bool>,
    /// On a Citus coordinator: the primary nodes `pg_dist_node` lists that are active or hold
    /// shard placements.
    pub citus_nodes: Option<Vec<CitusNode>>,
    /// The server's `system_identifier` (from `pg_control_system()`), when it runs and answers.
    pub system_identifier: Option<u64>,
    /// The addresses the node's configured host name resolves to (empty when it does not).
    pub addresses: Vec<IpAddr>,
    /// Why the node could not be asked, when it runs but did not answer.
    pub error: Option<String>,
}

/// A node as Citus' `pg_dist_node` registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CitusNode {
    /// `nodename`.
    pub host: String,
    /// `nodeport`.
    pub port: u16,
    /// The addresses `nodename` resolves to here.
    pub addresses: Vec<IpAddr>,
    /// `isactive`.
    pub active: bool,
}

impl CitusNode {
    /// Whether this is the server `node` reaches at `addresses`: the same port, and the same
    /// host name or a shared address (`127.0.0.1` is `localhost`).
    pub fn is(&self, node: &NodeConfig, addresses: &[IpAddr]) -> bool {
        self.port == node.port
            && (self.host == node.hostname || self.addresses.iter().any(|a| addresses.contains(a)))
    }
}

/// The addresses `host` resolves to; empty when it does not.
pub async fn resolve(host: &str) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = match tokio::net::lookup_host((host, 0)).await {
        Ok(it) => it.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    };
    addrs.sort();
    addrs.dedup();
    addrs
}

impl NodeObservation {
    /// A node seen in `server` state, nothing else known yet.
    pub fn new(node: &str, server: ServerState) -> Self {
        NodeObservation {
            node: node.into(),
            server,
            in_recovery: None,
            pause_state: None,
            lsn: None,
            timeline: None,
            settings: BTreeMap::new(),
            citus_version: None,
            server_version: None,
            server_zstd: None,
            citus_nodes: None,
            system_identifier: None,
            addresses: Vec::new(),
            error: None,
        }
    }

    /// Whether WAL archiving is on (a restart may still be pending).
    pub fn archiving(&self) -> bool {
        let mode = self.settings.get("archive_mode").map(String::as_str);
        let has_target = self
            .settings
            .get("archive_library")
            .is_some_and(|v| !v.is_empty())
            || self
                .settings
                .get("archive_command")
                .is_some_and(|v| !v.is_empty());
        matches!(mode, Some("on" | "always")) && has_target
    }

    /// An error unless the server runs and answers; `fix` says what to do.
    pub fn require_running(&self, fix: &str) -> Result<()> {
        match (&self.server, &self.error) {
            (ServerState::Running, None) => Ok(()),
            (ServerState::Running, Some(e)) => {
                Err(Error::node(&self.node, "connect", format!("{e}; {fix}")))
            }
            (state, _) => Err(Error::NodeNotRunning {
                node: self.node.clone(),
                state: *state,
                fix: fix.into(),
            }),
        }
    }
}

/// Whether the server was built with zstd, as SQL readable by any user: `wal_compression`
/// offers `zstd` exactly when the server can also compress base backups with it (PostgreSQL 15
/// and newer; before, the setting is a boolean and this is false). The server's own error for a
/// missing algorithm is in its `lc_messages` language, so it is asked before, not parsed after.
pub(crate) const SERVER_ZSTD: &str =
    "EXISTS (SELECT 1 FROM pg_settings WHERE name = 'wal_compression' AND 'zstd' = ANY(enumvals))";

/// Observes one node.
pub async fn node(backend: &dyn ClusterBackend, node: &NodeConfig) -> Result<NodeObservation> {
    let server = backend.server_state(node).await?;
    let mut obs = NodeObservation::new(&node.name, server);
    obs.addresses = resolve(&node.hostname).await;
    if server != ServerState::Running {
        return Ok(obs);
    }
    if let Err(e) = ask(backend, node, &mut obs).await {
        obs.error = Some(e.to_string());
    }
    Ok(obs)
}

async fn ask(
    backend: &dyn ClusterBackend,
    node: &NodeConfig,
    obs: &mut NodeObservation,
) -> Result<()> {
    let client = backend.connect(node).await?;
    let sql_err = |e| Error::sql(&node.name, "observe", e);
    let row = client
        .query_one(
            &format!("SELECT pg_is_in_recovery(), \
             CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END, \
             CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END, \
             CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
             current_setting('server_version'), \
             (SELECT extversion FROM pg_extension WHERE extname = 'citus'), \
             (SELECT system_identifier FROM pg_control_system()), \
             {SERVER_ZSTD}"),
            &[],
        )
        .await
        .map_err(sql_err)?;
    obs.in_recovery = Some(row.get(0));
    obs.pause_state = row.get(1);
    obs.lsn = row.get(2);
    obs.timeline = row
        .get::<_, Option<String>>(3)
        .and_then(|s| u32::from_str_radix(s.get(..8)?, 16).ok());
    obs.server_version = Some(row.get(4));
    obs.citus_version = row.get(5);
    // A uint64 shown through a signed bigint: the bits are the identifier.
    obs.system_identifier = row.get::<_, Option<i64>>(6).map(|v| v as u64);
    obs.server_zstd = Some(row.get(7));
    if obs.citus_version.is_some() && node.role == NodeRole::Coordinator {
        // Inactive nodes that still hold placements count: their shards are data too.
        let rows = client
            .query(
                "SELECT nodename, nodeport, isactive FROM pg_dist_node WHERE noderole = 'primary' \
                 AND (isactive OR EXISTS (SELECT 1 FROM pg_dist_placement p WHERE p.groupid = pg_dist_node.groupid)) \
                 ORDER BY nodeid",
                &[],
            )
            .await
            .map_err(sql_err)?;
        let mut nodes = Vec::new();
        for r in rows {
            let host: String = r.get(0);
            nodes.push(CitusNode {
                addresses: resolve(&host).await,
                host,
                port: r.get::<_, i32>(1) as u16,
                active: r.get(2),
            });
        }
        obs.citus_nodes = Some(nodes);
    }
    let names: Vec<String> = ARCHIVE_SETTINGS.iter().map(|s| s.to_string()).collect();
    for row in client
        .query(
            // archive_command shows as "(disabled)" while archive_mode is off: read what is set.
            "SELECT n, CASE WHEN n = 'archive_command' THEN (SELECT s.reset_val FROM pg_settings s WHERE s.name = n) ELSE current_setting(n, true) END \
             FROM unnest($1::text[]) AS n WHERE current_setting(n, true) IS NOT NULL",
            &[&names],
        )
        .await
        .map_err(sql_err)?
    {
        obs.settings.insert(row.get(0), row.get(1));
    }
    Ok(())
}

/// Refuses a Citus cluster with a node the config lacks (active, or holding placements): a
/// backup or restore point that silently missed a worker would lose that worker's shards. Nodes
/// are compared by resolved address and port, not by the names' spelling.
pub fn check_citus_topology(config: &ClusterConfig, observed: &[NodeObservation]) -> Result<()> {
    let Some(coordinator) = observed.iter().find(|o| o.node == config.coordinator.name) else {
        return Ok(());
    };
    for cn in coordinator.citus_nodes.iter().flatten() {
        let known = config.nodes().any(|n| {
            let addresses = observed
                .iter()
                .find(|o| o.node == n.name)
                .map(|o| o.addresses.as_slice())
                .unwrap_or_default();
            cn.is(n, addresses)
        });
        if !known {
            return Err(Error::UnlistedCitusNode {
                host: cn.host.clone(),
                port: cn.port,
                active: cn.active,
            });
        }
    }
    Ok(())
}

/// Refuses a backup whose nodes differ from the config's: restoring it would silently restore
/// fewer nodes, or leave a node on today's data.
pub fn check_backup_nodes(config: &ClusterConfig, backup: &Backup) -> Result<()> {
    let missing: Vec<&str> = config
        .nodes()
        .filter(|n| backup.node(&n.name).is_none())
        .map(|n| n.name.as_str())
        .collect();
    let extra: Vec<&str> = backup
        .nodes
        .iter()
        .filter(|b| config.node(&b.node).is_none())
        .map(|b| b.node.as_str())
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let mut problem = format!(
        "backup {} was taken of other nodes than the config has:",
        backup.name
    );
    if !missing.is_empty() {
        problem.push_str(&format!(" it lacks {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        problem.push_str(&format!(
            "{} it has {} which the config lacks",
            if missing.is_empty() { "" } else { ";" },
            extra.join(", ")
        ));
    }
    Err(Error::Identity {
        node: missing
            .first()
            .or(extra.first())
            .unwrap_or(&"?")
            .to_string(),
        problem,
        fix: "choose a backup taken of today's nodes, or use the config the backup was taken with"
            .into(),
    })
}

/// Refuses to restore a node's backup into a server that is not the one it was taken of: the
/// running server's `system_identifier` must be the backup's.
pub fn check_identity(
    config: &ClusterConfig,
    observed: &[NodeObservation],
    backup: &Backup,
) -> Result<()> {
    for node in config.nodes() {
        let (Some(obs), Some(part)) = (
            observed.iter().find(|o| o.node == node.name),
            backup.node(&node.name),
        ) else {
            continue;
        };
        if let (Some(live), Some(taken)) = (obs.system_identifier, part.system_identifier) {
            if live != taken {
                let other = backup
                    .nodes
                    .iter()
                    .find(|p| p.system_identifier == Some(live))
                    .map(|p| format!(" (it is the server backed up as node {})", p.node))
                    .unwrap_or_default();
                return Err(Error::Identity {
                    node: node.name.clone(),
                    problem: format!(
                        "the server at {}:{} has system identifier {live}, but backup {} of this node was taken of system {taken}{other}",
                        node.hostname, node.port, backup.name
                    ),
                    fix: "check the config's host names and ports: each node must name the server it backed up".into(),
                });
            }
        }
    }
    Ok(())
}

/// Observes every node of the config at once.
pub async fn cluster(backend: &dyn ClusterBackend) -> Result<Vec<NodeObservation>> {
    let config = backend.config();
    join_all(config.nodes().map(|n| node(backend, n)))
        .await
        .into_iter()
        .collect()
}
