//! A throwaway local cluster for integration tests: real PostgreSQL servers on free ports in a
//! temporary folder, stopped when the test ends (also when it fails).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use citus_recovery::{Cluster, ClusterConfig, LocalBackend, RunOptions};

/// Where the PostgreSQL 15 server programs are on Debian.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Why integration tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !Path::new(PG_BIN).join("postgres").is_file() {
        return Some(format!("PostgreSQL server programs not found in {PG_BIN}"));
    }
    if nix::unistd::Uid::effective().is_root()
        && nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .is_none()
    {
        return Some(
            "running as root and there is no `postgres` OS user to run the servers".into(),
        );
    }
    None
}

/// Free TCP ports on localhost for test servers, below Linux's ephemeral range (32768 and up):
/// a port the OS hands out for `bind(0)` is soon reused for some client's outgoing connection
/// (moto, psql, another test), and a server started on it later fails with "address in use".
/// Each port is bound once to check it is free, never handed out twice by this process, and
/// picked at random so that test processes running at once rarely choose the same one.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap();
    let given = given.get_or_insert_with(HashSet::new);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ (u64::from(std::process::id()) << 32);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..100_000 {
        if ports.len() == n {
            break;
        }
        // xorshift: no dependency, different in every process.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = 20_000 + (seed % 12_000) as u16;
        if given.contains(&port) || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.insert(port);
        ports.push(port);
    }
    assert_eq!(ports.len(), n, "no free ports in 20000..32000 on 127.0.0.1");
    ports
}

/// A config for `workers` workers in `dir`.
pub fn config_json(dir: &Path, workers: usize) -> String {
    let ports = free_ports(workers + 1);
    let node = |name: &str, port: u16| serde_json::json!({"name": name, "hostname": "localhost", "port": port, "username": "postgres", "dbname": "postgres"});
    let worker_nodes: Vec<_> = (0..workers)
        .map(|i| node(&format!("worker{}", i + 1), ports[i + 1]))
        .collect();
    serde_json::json!({
        "clusterName": "test",
        "workerCount": workers,
        "coordinatorNode": node("coordinator", ports[0]),
        "workerNodes": worker_nodes,
        "clusterBaseFolder": dir.join("cluster"),
        "archiveBaseFolder": dir.join("archive"),
        "backupBaseFolder": dir.join("backup"),
        "pgBinDir": PG_BIN,
    })
    .to_string()
}

/// A config for `workers` workers whose cluster, archive and backup folders are the given paths
/// inside `dir` (they may hold spaces, quotes and `%`).
pub fn config_json_with_folders(
    dir: &Path,
    workers: usize,
    cluster: &str,
    archive: &str,
    backup: &str,
) -> String {
    let mut config: serde_json::Value =
        serde_json::from_str(&config_json(dir, workers)).expect("config JSON");
    config["clusterBaseFolder"] = serde_json::json!(dir.join(cluster));
    config["archiveBaseFolder"] = serde_json::json!(dir.join(archive));
    config["backupBaseFolder"] = serde_json::json!(dir.join(backup));
    config.to_string()
}

/// Stops every server whose data directory is in `cluster_dir` (`pg_ctl stop -m immediate`),
/// for clusters whose folder is not the default one `Drop` looks at.
pub fn stop_servers_in(cluster_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(cluster_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.path().join("postmaster.pid").exists() {
            let mut cmd = if nix::unistd::Uid::effective().is_root() {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"])
                    .arg(Path::new(PG_BIN).join("pg_ctl"));
                c
            } else {
                std::process::Command::new(Path::new(PG_BIN).join("pg_ctl"))
            };
            let _ = cmd
                .arg("stop")
                .arg("-D")
                .arg(entry.path())
                .args(["-m", "immediate", "-w"])
                .current_dir("/")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A temporary folder the servers' OS user can reach, and a cluster config inside it.
pub struct TestCluster {
    /// The cluster.
    pub cluster: Cluster,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// A config for a cluster of `workers` workers; nothing is created yet.
    pub fn new(workers: usize) -> Self {
        Self::with_folders(workers, "cluster", "archive", "backup")
    }

    /// Like [`TestCluster::new`], with the cluster, archive and backup folders at these paths
    /// inside the temporary folder. `Drop` does not see servers outside `<dir>/cluster`: stop
    /// them with [`stop_servers_in`].
    pub fn with_folders(workers: usize, cluster: &str, archive: &str, backup: &str) -> Self {
        Self::build(workers, cluster, archive, backup, |_, _| {})
    }

    fn build(
        workers: usize,
        cluster: &str,
        archive: &str,
        backup: &str,
        edit: impl FnOnce(&mut serde_json::Value, &Path),
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("citus-recovery-test-")
            .tempdir()
            .expect("temporary folder");
        // tempdir makes 0700 folders; the servers run as another user and must get in.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let text = config_json_with_folders(dir.path(), workers, cluster, archive, backup);
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("config JSON");
        edit(&mut json, dir.path());
        let text = json.to_string();
        std::fs::write(dir.path().join("cluster-config.json"), &text).unwrap();
        let config = ClusterConfig::from_json_str(&text, None).expect("valid config");
        let backend = LocalBackend::new(config).expect("backend");
        let cluster = Cluster::with_backend(Arc::new(backend))
            .expect("cluster")
            .with_options(RunOptions {
                wait_timeout: Duration::from_secs(300),
                ..RunOptions::default()
            });
        TestCluster { cluster, dir }
    }

    /// Like [`TestCluster::new`], with the config JSON changed by `edit` (given the temporary
    /// folder) before it is read: connection keys, host names.
    pub fn with_config(workers: usize, edit: impl FnOnce(&mut serde_json::Value, &Path)) -> Self {
        Self::build(workers, "cluster", "archive", "backup", edit)
    }

    /// The temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file, for the command-line tool.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("cluster-config.json")
    }

    /// The config.
    pub fn config(&self) -> &ClusterConfig {
        self.cluster.config()
    }

    /// Runs SQL on a node and returns the first column of every row as text.
    pub async fn sql(&self, node: &str, sql: &str) -> Result<Vec<String>, tokio_postgres::Error> {
        let node = self.config().node(node).expect("known node").clone();
        let client = self
            .cluster
            .backend()
            .connect(&node)
            .await
            .expect("connect");
        let messages = client.simple_query(sql).await?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("").to_string())
                }
                _ => None,
            })
            .collect())
    }

    /// `SELECT count(*) FROM table` on a node.
    pub async fn count(&self, node: &str, table: &str) -> i64 {
        let rows = self
            .sql(node, &format!("SELECT count(*) FROM {table}"))
            .await
            .expect("count");
        rows[0].parse().unwrap()
    }

    /// Every node's data directory, in config order.
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.config()
            .nodes()
            .map(|n| self.config().data_dir(n))
            .collect()
    }

    /// Whether Citus can be used here.
    pub async fn citus_available(&self) -> bool {
        self.cluster
            .backend()
            .citus_available(&self.config().coordinator)
            .await
            .unwrap_or(false)
    }
}

impl Drop for TestCluster {
    /// Stops every server straight through `pg_ctl` (no runtime needed in `drop`).
    fn drop(&mut self) {
        stop_servers_in(&self.dir.path().join("cluster"));
    }
}

/// Returns early from a test, printing why, when integration tests cannot run here; fails the
/// test instead when `CITUS_RECOVERY_REQUIRE_POSTGRES` is set (to anything but "" or "0"), as CI
/// does, so that a missing PostgreSQL can never pass as a skipped test.
#[macro_export]
macro_rules! skip_unless_postgres {
    () => {
        if let Some(reason) = common::skip_reason() {
            if std::env::var("CITUS_RECOVERY_REQUIRE_POSTGRES").is_ok_and(|v| !v.is_empty() && v != "0") {
                panic!("PostgreSQL is required (CITUS_RECOVERY_REQUIRE_POSTGRES is set) but this test cannot run: {reason}");
            }
            eprintln!("SKIPPED: {reason} (CITUS_RECOVERY_REQUIRE_POSTGRES=1 makes this a failure)");
            return;
        }
    };
}

/// Rows in `xx` on every node at the restore point `rp`.
pub const FIRST: i64 = 3000;
/// Rows added on every node after it.
pub const SECOND: i64 = 2000;

impl TestCluster {
    /// A cluster of plain nodes, archiving, a backup `base`, `FIRST` rows of `xx` on every node,
    /// a restore point `rp`, then `SECOND` more rows on every node.
    pub async fn prepared(workers: usize) -> Self {
        let t = TestCluster::new(workers);
        t.cluster.create(true).await.expect("create");
        t.cluster
            .prepare_archiving(true, false)
            .await
            .expect("prepare archiving");
        t.cluster
            .basebackup(Some("base"))
            .await
            .expect("base backup");
        t.insert_everywhere(FIRST, true).await;
        t.cluster
            .create_restore_point(Some("rp"))
            .await
            .expect("restore point");
        t.insert_everywhere(SECOND, false).await;
        t
    }

    /// Every node's name, in config order.
    pub fn node_names(&self) -> Vec<String> {
        self.config().nodes().map(|n| n.name.clone()).collect()
    }

    /// Inserts `rows` rows into `xx` on every node (creating the table first with `create`).
    pub async fn insert_everywhere(&self, rows: i64, create: bool) {
        for node in self.node_names() {
            let create = if create {
                "CREATE TABLE xx(id int); "
            } else {
                ""
            };
            self.sql(
                &node,
                &format!("{create}INSERT INTO xx SELECT generate_series(1, {rows})"),
            )
            .await
            .expect("insert");
        }
    }

    /// `count(*)` of `xx` on every node.
    pub async fn counts(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for node in self.node_names() {
            counts.push(self.count(&node, "xx").await);
        }
        counts
    }

    /// A snapshot of the cluster folder's top level and the catalog, to show nothing changed.
    pub fn snapshot(&self) -> Vec<String> {
        let mut entries: Vec<String> = ["cluster", "backup"]
            .iter()
            .flat_map(|d| {
                std::fs::read_dir(self.dir().join(d))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|e| e.path().display().to_string())
            .filter(|p| !p.ends_with(".log") && !p.ends_with(".lock"))
            .collect();
        entries.sort();
        entries
    }
}

/// Returns early from a test, printing why, when the Citus extension is not installed; fails the
/// test instead when `CITUS_RECOVERY_REQUIRE_CITUS` is set (to anything but "" or "0"), as CI
/// does, so that a missing Citus can never pass as a skipped test.
#[macro_export]
macro_rules! skip_unless_citus {
    ($t:expr) => {
        if !$t.citus_available().await {
            let reason = format!(
                "the Citus extension is not installed for PostgreSQL in {} (install it with `bash ../shared/citus/install.sh` from the repository root)",
                common::PG_BIN
            );
            if std::env::var("CITUS_RECOVERY_REQUIRE_CITUS").is_ok_and(|v| !v.is_empty() && v != "0") {
                panic!("Citus is required (CITUS_RECOVERY_REQUIRE_CITUS is set) but {reason}");
            }
            eprintln!("SKIPPED: {reason} (CITUS_RECOVERY_REQUIRE_CITUS=1 makes this a failure)");
            return;
        }
    };
}

/// The names of the cluster's complete backups, as `list_backups` orders them.
pub async fn backup_names(c: &Cluster) -> Vec<String> {
    c.list_backups()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect()
}
