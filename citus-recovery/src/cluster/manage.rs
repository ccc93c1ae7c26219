//! Local cluster management, as `citus_dev make/start/stop` did it: create, start, stop, status.

use futures::future::join_all;
use serde::Serialize;

use super::Cluster;
use crate::backend::{ServerState, StartWait};
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::observe::{self, NodeObservation};
use crate::plan::recovery_conf::quote_value;
use crate::plan::RestoreState;

/// What `cluster status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// The cluster's name.
    pub cluster_name: String,
    /// Every node, observed.
    pub nodes: Vec<NodeObservation>,
    /// The restore under way, if any.
    pub restore: Option<RestoreState>,
}

impl std::fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "cluster {}", self.cluster_name)?;
        for n in &self.nodes {
            write!(f, "  {:<16} {}", n.node, n.server)?;
            if let Some(r) = n.in_recovery {
                if r {
                    write!(
                        f,
                        ", in recovery ({})",
                        n.pause_state.as_deref().unwrap_or("?")
                    )?;
                } else {
                    write!(f, ", primary")?;
                }
            }
            if let Some(t) = n.timeline {
                write!(f, ", timeline {t}")?;
            }
            if let Some(l) = &n.lsn {
                write!(f, ", lsn {l}")?;
            }
            if let Some(v) = &n.citus_version {
                write!(f, ", citus {v}")?;
            }
            if n.server == ServerState::Running {
                write!(
                    f,
                    ", archiving {}",
                    if n.archiving() { "on" } else { "off" }
                )?;
            }
            if let Some(e) = &n.error {
                write!(f, ", error: {e}")?;
            }
            writeln!(f)?;
        }
        if let Some(r) = &self.restore {
            writeln!(
                f,
                "restore under way: backup {} to restore point {:?}, started {}",
                r.backup,
                r.restore_point,
                r.started.to_rfc3339()
            )?;
        }
        Ok(())
    }
}

/// Runs `f` on every node at once; all errors are reported together.
async fn each_node<'a, F, Fut>(cluster: &'a Cluster, f: F) -> Result<()>
where
    F: Fn(&'a NodeConfig) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let results = join_all(cluster.config().nodes().map(f)).await;
    match Error::from_several(results.into_iter().filter_map(Result::err).collect()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Cluster {
    /// Creates and starts a local cluster: `initdb` of every node (trust authentication on
    /// localhost), the config's ports, and, when Citus is installed and `plain` is false,
    /// `shared_preload_libraries = 'citus'`, `CREATE EXTENSION citus` and the workers added.
    pub async fn create(&self, plain: bool) -> Result<()> {
        let _lock = self.lock("cluster create").await?;
        let config = self.config();
        let backend = self.backend();
        for node in config.nodes() {
            if backend.server_state(node).await? != ServerState::Missing
                || config.data_dir(node).exists()
            {
                return Err(Error::DataDirExists {
                    node: node.name.clone(),
                    data_dir: config.data_dir(node),
                });
            }
        }
        let citus = !plain && backend.citus_available(&config.coordinator).await?;
        each_node(self, |node| async move {
            let mut settings = vec![
                ("port".to_string(), node.port.to_string()),
                ("listen_addresses".to_string(), quote_value(&node.hostname)),
                // Short and writable by any user; socket paths are limited to 107 bytes.
                ("unix_socket_directories".to_string(), quote_value("/tmp")),
            ];
            if citus {
                settings.push(("shared_preload_libraries".into(), quote_value("citus")));
            }
            backend.init_node(node, &settings).await
        })
        .await?;
        self.start_nodes().await?;
        each_node(
            self,
            |node| async move { create_database(self, node).await },
        )
        .await?;
        if citus {
            each_node(self, |node| async move {
                let client = backend.connect(node).await?;
                client
                    .batch_execute("CREATE EXTENSION IF NOT EXISTS citus")
                    .await
                    .map_err(|e| Error::sql(&node.name, "CREATE EXTENSION citus", e))
            })
            .await?;
            let coordinator = &config.coordinator;
            let client = backend.connect(coordinator).await?;
            client
                .execute(
                    "SELECT citus_set_coordinator_host($1, $2)",
                    &[&coordinator.hostname, &i32::from(coordinator.port)],
                )
                .await
                .map_err(|e| Error::sql(&coordinator.name, "citus_set_coordinator_host", e))?;
            for worker in &config.workers {
                client
                    .execute(
                        "SELECT citus_add_node($1, $2)",
                        &[&worker.hostname, &i32::from(worker.port)],
                    )
                    .await
                    .map_err(|e| {
                        Error::sql(
                            &coordinator.name,
                            format!("citus_add_node for {}", worker.name),
                            e,
                        )
                    })?;
            }
        }
        Ok(())
    }

    /// Starts every stopped node.
    ///
    /// While a restore is under way, a node starts only when its restore got as far as writing
    /// `recovery.signal` and `global/pg_control` (it then recovers to the restore point and
    /// pauses, as restore-start left it); otherwise the command is refused before any node
    /// starts, saying to run restore-start again or restore-abort.
    pub async fn start(&self) -> Result<()> {
        let _lock = self.lock("cluster start").await?;
        if let Some(state) = self.restore_state()? {
            let backend = self.backend();
            for node in self.config().nodes() {
                let dir = self.config().data_dir(node);
                let ready = backend.exists(node, &dir.join("recovery.signal")).await?
                    && backend.exists(node, &dir.join("global/pg_control")).await?;
                if !ready {
                    return Err(state.in_progress(&format!(
                        "node {} was not fully restored ({} lacks recovery.signal or global/pg_control), so it must not start; run `citus-recovery restore-start` again to resume the restore, or `citus-recovery restore-abort` to put the old data directories back",
                        node.name,
                        dir.display()
                    )));
                }
            }
        }
        self.start_nodes().await
    }

    async fn start_nodes(&self) -> Result<()> {
        let backend = self.backend();
        each_node(self, |node| async move {
            match backend.server_state(node).await? {
                ServerState::Running => Ok(()),
                ServerState::Stopped => backend.start(node, StartWait::UntilReady).await,
                ServerState::Missing => Err(Error::DataDirMissing {
                    node: node.name.clone(),
                    data_dir: self.config().data_dir(node),
                }),
            }
        })
        .await
    }

    /// Stops every running node.
    pub async fn stop(&self) -> Result<()> {
        let _lock = self.lock("cluster stop").await?;
        let backend = self.backend();
        each_node(self, |node| async move {
            match backend.server_state(node).await? {
                ServerState::Running => backend.stop(node).await,
                _ => Ok(()),
            }
        })
        .await
    }

    /// Every node's state.
    pub async fn status(&self) -> Result<ClusterStatus> {
        Ok(ClusterStatus {
            cluster_name: self.config().cluster_name.clone(),
            nodes: observe::cluster(self.backend()).await?,
            restore: self.restore_state()?,
        })
    }
}

/// Creates the node's database when it is not `postgres` (which initdb made).
async fn create_database(cluster: &Cluster, node: &NodeConfig) -> Result<()> {
    if node.dbname == "postgres" {
        return Ok(());
    }
    let mut admin = node.clone();
    admin.dbname = "postgres".into();
    let client = cluster.backend().connect(&admin).await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&node.dbname],
        )
        .await
        .map_err(|e| Error::sql(&node.name, "look up the database", e))?
        .is_some();
    if !exists {
        let row = client
            .query_one(
                "SELECT format('CREATE DATABASE %I', $1::text)",
                &[&node.dbname],
            )
            .await
            .map_err(|e| Error::sql(&node.name, "quote CREATE DATABASE", e))?;
        let sql: String = row.get(0);
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::sql(&node.name, format!("create database {}", node.dbname), e))?;
    }
    Ok(())
}
