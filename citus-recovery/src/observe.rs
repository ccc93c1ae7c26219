//! What the plans are built from: the state of every node, read without changing anything.

use std::collections::BTreeMap;

use futures::future::join_all;
use serde::Serialize;

use crate::backend::{ClusterBackend, ServerState};
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
    /// On a Citus coordinator: the active primary nodes `pg_dist_node` lists, as host and port.
    pub citus_nodes: Option<Vec<(String, u16)>>,
    /// Why the node could not be asked, when it runs but did not answer.
    pub error: Option<String>,
}

impl NodeObservation {
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
            (state, _) => Err(Error::State(format!(
                "node {} is not running ({state}); {fix}",
                self.node
            ))),
        }
    }
}

/// Observes one node.
pub async fn node(backend: &dyn ClusterBackend, node: &NodeConfig) -> Result<NodeObservation> {
    let server = backend.server_state(node).await?;
    let mut obs = NodeObservation {
        node: node.name.clone(),
        server,
        in_recovery: None,
        pause_state: None,
        lsn: None,
        timeline: None,
        settings: BTreeMap::new(),
        citus_version: None,
        server_version: None,
        citus_nodes: None,
        error: None,
    };
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
            "SELECT pg_is_in_recovery(), \
             CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END, \
             CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END, \
             CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
             current_setting('server_version'), \
             (SELECT extversion FROM pg_extension WHERE extname = 'citus')",
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
    if obs.citus_version.is_some() && node.role == NodeRole::Coordinator {
        let rows = client
            .query(
                "SELECT nodename, nodeport FROM pg_dist_node WHERE isactive AND noderole = 'primary' ORDER BY nodeid",
                &[],
            )
            .await
            .map_err(sql_err)?;
        obs.citus_nodes = Some(
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1) as u16))
                .collect(),
        );
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

/// Refuses a Citus cluster with an active node the config lacks: a backup or restore point that
/// silently missed a worker would lose that worker's shards.
pub fn check_citus_topology(config: &ClusterConfig, observed: &[NodeObservation]) -> Result<()> {
    let Some(coordinator) = observed.iter().find(|o| o.node == config.coordinator.name) else {
        return Ok(());
    };
    let local = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "::1");
    let same_host = |a: &str, b: &str| a == b || (local(a) && local(b));
    for (host, port) in coordinator.citus_nodes.iter().flatten() {
        if !config
            .nodes()
            .any(|n| n.port == *port && same_host(&n.hostname, host))
        {
            return Err(Error::State(format!(
                "Citus lists an active node {host}:{port} in pg_dist_node that the config lacks: a backup or restore point without it would lose its shards; add it to workerNodes (or remove it from the cluster with citus_remove_node)"
            )));
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
