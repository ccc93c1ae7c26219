//! Local cluster management, as `citus_dev make/start/stop` did it: create, start, stop, status.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use futures::future::join_all;
use serde::Serialize;

use super::Cluster;
use crate::backend::{FileSync, ServerState, StartWait};
use crate::config::{ClusterConfig, NodeConfig, SslMode};
use crate::connect::certs::{self, TestCa};
use crate::connect::passfile::{self, Secret};
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
    /// Creates and starts a local cluster (a config with `ssh` needs [`Self::create_secure`]):
    /// `initdb` of every node (trust authentication on
    /// localhost), the config's ports, and, when Citus is installed and `plain` is false,
    /// `shared_preload_libraries = 'citus'`, `CREATE EXTENSION citus` and the workers added.
    pub async fn create(&self, plain: bool) -> Result<()> {
        self.create_with(plain, false).await
    }

    /// Like [`Self::create`], for a cluster that admits only scram-sha-256 passwords over TLS
    /// (a test cluster of the real path; see docs/connections.md). The config must give, at
    /// cluster level, `sslmode` `verify-full` (or `verify-ca`), and `sslrootcert` and `passfile`
    /// paths that do not exist yet: this writes the generated CA certificate to `sslrootcert`
    /// and a random superuser password to `passfile` (mode 0600, ours). Each node gets a server
    /// certificate for its `hostname` signed by that CA (the CA key is never stored), `ssl = on`,
    /// a `pg_hba.conf` of `hostssl ... scram-sha-256` lines that rejects connections without
    /// TLS, and, with Citus, `citus.node_conninfo` (verify-full) and a `pg_dist_authinfo` row
    /// so that the nodes authenticate to each other. `PGPASSWORD` must be unset (it would be
    /// used instead of the passfile).
    ///
    /// With `ssh`, each node is made on its host through SSH: the certificates are generated
    /// here and written there, `initdb` sets the password (it travels on ssh's stdin), and the
    /// server admits only scram-sha-256 over TLS from its first start.
    pub async fn create_secure(&self, plain: bool) -> Result<()> {
        self.create_with(plain, true).await
    }

    async fn create_with(&self, plain: bool, secure: bool) -> Result<()> {
        let config = self.config();
        let remote = config.uses_ssh();
        if remote && !secure {
            // initdb's servers trust only their own host: this host could never log in.
            return Err(Error::Config {
                path: config.source.clone(),
                field: "ssh".into(),
                problem: "is set, and cluster create without --secure makes servers that trust connections from their own host only, which this host could not reach".into(),
                fix: "run `citus-recovery cluster create --secure` (scram-sha-256 over TLS, see docs/connections.md), or set up the servers on their hosts as docs/remote.md says".into(),
            });
        }
        let _lock = self.lock("cluster create").await?;
        let backend = self.backend();
        let secure = match secure {
            true => Some(Secure::prepare(config)?),
            false => None,
        };
        let secure = secure.as_ref();
        for node in config.nodes() {
            if backend.server_state(node).await? != ServerState::Missing
                || (!remote && config.data_dir(node).exists())
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
            if let Some(secure) = secure {
                settings.extend(secure.settings(config, node, citus));
            }
            match secure {
                // On another host: the password is set by initdb, and from the first start only
                // scram-sha-256 over TLS is admitted (this host is not the server's own).
                Some(secure) if remote => {
                    backend
                        .init_node_with_password(node, &settings, &secure.password)
                        .await?;
                    secure.install_certificates(self, node).await?;
                    let hba = config.data_dir(node).join("pg_hba.conf");
                    backend
                        .write_file(node, &hba, SECURE_HBA.as_bytes(), FileSync::Now)
                        .await
                }
                Some(secure) => {
                    backend.init_node(node, &settings).await?;
                    secure.install_certificates(self, node).await
                }
                None => backend.init_node(node, &settings).await,
            }
        })
        .await?;
        if let Some(secure) = secure {
            secure.write_client_files(config)?;
        }
        self.start_nodes().await?;
        each_node(
            self,
            |node| async move { create_database(self, node).await },
        )
        .await?;
        if let Some(secure) = secure {
            each_node(self, |node| secure.set_password(self, node)).await?;
        }
        if citus {
            each_node(self, |node| async move {
                let client = backend.connect(node).await?;
                client
                    .batch_execute("CREATE EXTENSION IF NOT EXISTS citus")
                    .await
                    .map_err(|e| Error::sql(&node.name, "CREATE EXTENSION citus", e))
            })
            .await?;
            if let Some(secure) = secure {
                each_node(self, |node| secure.add_authinfo(self, node)).await?;
            }
        }
        if let Some(secure) = secure {
            // From here on, only scram-sha-256 over TLS: Citus adds the workers that way too.
            each_node(self, |node| secure.require_tls(self, node)).await?;
        }
        if citus {
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

/// What `cluster create --secure` generated, before any of it is written.
struct Secure {
    ca_pem: String,
    /// Per node name: its server certificate and key (PEM).
    servers: Vec<(String, String, String)>,
    password: Secret,
    rootcert: PathBuf,
    passfile: PathBuf,
}

/// The CA certificate Citus' own connections check the other nodes against, in each data
/// directory (the servers' user cannot be relied on to read the invoking user's file).
const CITUS_ROOT_CERT: &str = "citus-root.crt";

/// Only scram-sha-256 over TLS; local socket connections by the servers' OS user.
const SECURE_HBA: &str = "\
# Written by citus-recovery cluster create --secure: scram-sha-256 over TLS only.
local     all          all                  peer
hostssl   all          all   0.0.0.0/0      scram-sha-256
hostssl   all          all   ::/0           scram-sha-256
hostssl   replication  all   0.0.0.0/0      scram-sha-256
hostssl   replication  all   ::/0           scram-sha-256
hostnossl all          all   0.0.0.0/0      reject
hostnossl all          all   ::/0           reject
hostnossl replication  all   0.0.0.0/0      reject
hostnossl replication  all   ::/0           reject
";

impl Secure {
    /// Checks the config keys and generates the CA, the certificates and the password.
    fn prepare(config: &ClusterConfig) -> Result<Self> {
        let err = |field: &str, problem: String, fix: &str| Error::Config {
            path: config.source.clone(),
            field: field.into(),
            problem,
            fix: fix.into(),
        };
        let c = &config.connection;
        if !matches!(c.sslmode, Some(SslMode::VerifyFull | SslMode::VerifyCa)) {
            return Err(err(
                "sslmode",
                format!(
                    "is {} but a secure cluster's certificates are meant to be verified",
                    c.mode()
                ),
                "set \"sslmode\": \"verify-full\" at cluster level",
            ));
        }
        let missing = |key: &str, value: &Option<PathBuf>| -> Result<PathBuf> {
            let path = value.clone().ok_or_else(|| {
                err(
                    key,
                    "is not given".into(),
                    "give, at cluster level, the path create --secure should write it to",
                )
            })?;
            if path.symlink_metadata().is_ok() {
                return Err(err(
                    key,
                    format!("{} exists already", path.display()),
                    "remove it or choose another path: create --secure writes a new one",
                ));
            }
            Ok(path)
        };
        let rootcert = missing("sslrootcert", &c.sslrootcert)?;
        let passfile = missing("passfile", &c.passfile)?;
        for (i, node) in config.nodes().enumerate() {
            let n = &node.connection;
            if n.sslmode.is_some() || n.sslrootcert.is_some() || n.passfile.is_some() {
                let field = if i == 0 {
                    "coordinatorNode".to_string()
                } else {
                    format!("workerNodes[{}]", i - 1)
                };
                return Err(err(
                    &field,
                    format!(
                        "node {} overrides sslmode, sslrootcert or passfile",
                        node.name
                    ),
                    "give these keys only at cluster level for create --secure",
                ));
            }
        }
        if std::env::var_os("PGPASSWORD").is_some_and(|p| !p.is_empty()) {
            return Err(err(
                "passfile",
                "PGPASSWORD is set and would be used instead of the generated password".into(),
                "unset PGPASSWORD for create --secure",
            ));
        }
        let fail = |problem: String| {
            err(
                "sslrootcert",
                problem,
                "report this: certificate generation should not fail",
            )
        };
        let ca = TestCa::new(&config.cluster_name).map_err(fail)?;
        let servers = config
            .nodes()
            .map(|n| {
                let (cert, key) = ca.server_cert(&n.hostname).map_err(fail)?;
                Ok((n.name.clone(), cert, key))
            })
            .collect::<Result<Vec<_>>>()?;
        let password = certs::random_password()
            .map_err(|e| Error::io("read random bytes from", "/dev/urandom", e))?;
        Ok(Secure {
            ca_pem: ca.pem(),
            servers,
            password,
            rootcert,
            passfile,
        })
    }

    /// The server settings of `node`.
    fn settings(
        &self,
        config: &ClusterConfig,
        node: &NodeConfig,
        citus: bool,
    ) -> Vec<(String, String)> {
        let mut settings = vec![
            ("ssl".to_string(), "on".to_string()),
            ("ssl_cert_file".into(), quote_value("server.crt")),
            ("ssl_key_file".into(), quote_value("server.key")),
            ("password_encryption".into(), quote_value("scram-sha-256")),
        ];
        if citus {
            let root = config.data_dir(node).join(CITUS_ROOT_CERT);
            settings.push((
                "citus.node_conninfo".into(),
                quote_value(&format!(
                    "sslmode=verify-full sslrootcert={}",
                    root.display()
                )),
            ));
        }
        settings
    }

    /// Writes the node's server certificate and key and the CA certificate into its data
    /// directory (mode 0600, the servers' user's, as PostgreSQL wants its key).
    async fn install_certificates(&self, cluster: &Cluster, node: &NodeConfig) -> Result<()> {
        let data_dir = cluster.config().data_dir(node);
        let (_, cert, key) = self
            .servers
            .iter()
            .find(|(name, _, _)| *name == node.name)
            .expect("a certificate for every node");
        let backend = cluster.backend();
        for (file, contents) in [
            ("server.crt", cert.as_str()),
            ("server.key", key.as_str()),
            (CITUS_ROOT_CERT, self.ca_pem.as_str()),
        ] {
            backend
                .write_file(
                    node,
                    &data_dir.join(file),
                    contents.as_bytes(),
                    FileSync::Now,
                )
                .await?;
        }
        Ok(())
    }

    /// Writes `sslrootcert` (0644) and `passfile` (0600, a line per node) for the invoking user;
    /// neither may exist.
    fn write_client_files(&self, config: &ClusterConfig) -> Result<()> {
        let lines: String = config
            .nodes()
            .map(|n| {
                format!(
                    "{}:{}:*:{}:{}\n",
                    passfile::escape(&n.hostname),
                    n.port,
                    passfile::escape(&n.username),
                    self.password.expose()
                )
            })
            .collect();
        for (path, mode, contents) in [
            (&self.rootcert, 0o644, self.ca_pem.as_str()),
            (&self.passfile, 0o600, lines.as_str()),
        ] {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
                .map_err(|e| Error::io("create", path, e))?;
            file.write_all(contents.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io("write", path, e))?;
        }
        Ok(())
    }

    /// Sets the node's superuser password; only its SCRAM verifier travels.
    async fn set_password(&self, cluster: &Cluster, node: &NodeConfig) -> Result<()> {
        let verifier =
            postgres_protocol::password::scram_sha_256(self.password.expose().as_bytes());
        let client = cluster.backend().connect(node).await?;
        let row = client
            .query_one(
                "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
                &[&node.username, &verifier],
            )
            .await
            .map_err(|e| Error::sql(&node.name, "quote ALTER ROLE", e))?;
        let sql: String = row.get(0);
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::sql(&node.name, "set the superuser's password", e))
    }

    /// Lets Citus on this node log in to every node (node id 0: all) with the password.
    async fn add_authinfo(&self, cluster: &Cluster, node: &NodeConfig) -> Result<()> {
        let client = cluster.backend().connect(node).await?;
        // The password travels as a bind parameter, so no statement log can show it.
        client
            .execute(
                "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, $1, $2)",
                &[
                    &node.username,
                    &format!("password={}", self.password.expose()),
                ],
            )
            .await
            .map_err(|e| Error::sql(&node.name, "add the password to pg_dist_authinfo", e))
            .map(|_| ())
    }

    /// Replaces the node's `pg_hba.conf` with [`SECURE_HBA`] and reloads it.
    async fn require_tls(&self, cluster: &Cluster, node: &NodeConfig) -> Result<()> {
        let path = cluster.config().data_dir(node).join("pg_hba.conf");
        cluster
            .backend()
            .write_file(node, &path, SECURE_HBA.as_bytes(), FileSync::Now)
            .await?;
        let client = cluster.backend().connect(node).await?;
        client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .map_err(|e| Error::sql(&node.name, "reload pg_hba.conf", e))?;
        // The postmaster reloads on its own time: wait until a connection without TLS is
        // refused, so that what follows (Citus adding the workers) takes the secure path.
        let mut plain = cluster.config().clone();
        plain.connection.sslmode = Some(SslMode::Disable);
        for _ in 0..100 {
            if crate::connect::connect(&plain, node).await.is_err() {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(Error::node(
            &node.name,
            "require TLS",
            "the server still admits connections without TLS after reloading pg_hba.conf; look at the server log for pg_hba.conf errors",
        ))
    }
}
