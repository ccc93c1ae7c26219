//! Throwaway local clusters of generated data, and the small tools every measurement uses.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use citus_recovery::files::OsUser;
use citus_recovery::{Cluster, ClusterConfig, LocalBackend, NodeConfig, RunOptions};
use tokio::process::Command;

/// Errors of the benchmark: anything, with a message.
pub type Error = Box<dyn std::error::Error>;
/// The benchmark's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// What every cluster of the run shares: the PostgreSQL programs and the servers' OS user.
#[derive(Debug, Clone)]
pub struct Env {
    /// The PostgreSQL bin folder (as the library resolves it).
    pub bin: PathBuf,
    /// The servers' OS user.
    pub user: OsUser,
}

impl Env {
    /// Resolves both the way the library does, from a config in `root`.
    pub fn new(root: &Path) -> Result<Self> {
        let backend = LocalBackend::new(config(root, "probe", 0, &[1])?)?;
        Ok(Env {
            bin: backend.bin_dir().to_path_buf(),
            user: backend.os_user().clone(),
        })
    }

    /// A command running `program` as the servers' user (PostgreSQL tools refuse root).
    pub fn as_server_user(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = if self.user.needs_switch() {
            let mut c = Command::new("runuser");
            c.arg("-u").arg(&self.user.name).arg("--").arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.current_dir("/").stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// A PostgreSQL program from the bin folder, as the servers' user.
    pub fn pg(&self, program: &str) -> Command {
        self.as_server_user(self.bin.join(program))
    }

    /// Creates a folder owned by the servers' user.
    pub fn mkdir(&self, path: &Path, mode: u32) -> Result<()> {
        Ok(citus_recovery::files::create_dir_owned(
            path, mode, &self.user,
        )?)
    }
}

/// Runs a command to completion; a failure is an error quoting its output.
pub async fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{what} failed ({}): {}", out.status, text.trim()).into())
    }
}

/// Removes a folder tree if it exists (cleanup between runs, never timed).
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("remove {}: {e}", path.display()).into())
        }
        _ => Ok(()),
    }
}

/// Folders timed steps leave behind (moved-aside data directories), removed only after the last
/// timed step. This machine's disk is ext4 without a journal: creating a file there soon after
/// many were deleted checks every recently deleted inode it passes (`find_inode_bit` and
/// `recently_deleted`, a sixth of an extraction's CPU in a profile), so a removal between two
/// timed steps slows whichever runs next.
#[derive(Debug, Default)]
pub struct Leftovers(Vec<PathBuf>);

impl Leftovers {
    /// Keeps `dir` (if it exists) until [`Leftovers::remove_all`], renamed to a name of its own
    /// so that the next round can move a directory to `dir` again.
    pub fn keep(&mut self, dir: &Path) -> Result<()> {
        if !dir.exists() {
            return Ok(());
        }
        let name = dir.file_name().ok_or("a folder without a name")?;
        let to = dir.with_file_name(format!("{}.left-{}", name.to_string_lossy(), self.0.len()));
        std::fs::rename(dir, &to).map_err(|e| format!("rename {}: {e}", dir.display()))?;
        self.0.push(to);
        Ok(())
    }

    /// Removes every folder kept.
    pub fn remove_all(self) -> Result<()> {
        self.0.iter().try_for_each(|dir| remove(dir))
    }
}

/// Free local TCP ports.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    // Hold every listener until all are chosen, so no port is handed out twice.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?)
}

/// The config of a cluster `name` with `workers` workers on `ports`, in `<root>/<name>`.
pub fn config(root: &Path, name: &str, workers: usize, ports: &[u16]) -> Result<ClusterConfig> {
    config_with(root, name, workers, ports, &serde_json::json!({}))
}

/// [`config`] with the keys of `extra` added. With any, the config is written to
/// `<root>/<name>/cluster-config.json` and read from there, since the servers' archive_command
/// and restore_command name the file.
fn config_with(
    root: &Path,
    name: &str,
    workers: usize,
    ports: &[u16],
    extra: &serde_json::Value,
) -> Result<ClusterConfig> {
    let base = root.join(name);
    let node = |name: String, port: u16| {
        serde_json::json!({"name": name, "hostname": "127.0.0.1", "port": port,
                           "username": "postgres", "dbname": "postgres"})
    };
    let json = serde_json::json!({
        "clusterName": name,
        "workerCount": workers,
        "coordinatorNode": node("coordinator".into(), ports[0]),
        "workerNodes": (1..=workers).map(|i| node(format!("worker{i}"), ports[i])).collect::<Vec<_>>(),
        "clusterBaseFolder": base.join("cluster"),
        "archiveBaseFolder": base.join("archive"),
        "backupBaseFolder": base.join("backup"),
    });
    let mut json = json;
    match extra.as_object() {
        Some(keys) if !keys.is_empty() => {
            for (k, v) in keys {
                json[k] = v.clone();
            }
            let file = base.join("cluster-config.json");
            std::fs::write(&file, serde_json::to_string_pretty(&json)?)?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
            Ok(ClusterConfig::from_file(&file)?)
        }
        _ => Ok(ClusterConfig::from_json_str(&json.to_string(), None)?),
    }
}

/// A local cluster of generated data: plain PostgreSQL nodes, each with its own pgbench tables.
pub struct Local {
    /// The cluster's name (its folder in the run's folder).
    pub name: String,
    /// The library's view, all nodes at once.
    pub cluster: Cluster,
    /// The library's view, one node after another (the old scripts' way).
    pub serial: Cluster,
    /// The library's view, all nodes at once, polling every 10 ms instead of every 100 ms.
    pub fast_poll: Cluster,
    /// pgbench scale of every node.
    pub scale: u32,
}

impl Local {
    /// Creates and starts the cluster and loads pgbench data of `scale` into every node at once.
    /// Nodes are plain PostgreSQL so every node holds the same amount of data.
    pub async fn create(
        env: &Env,
        root: &Path,
        name: &str,
        workers: usize,
        scale: u32,
    ) -> Result<Self> {
        Self::create_with(env, root, name, workers, scale, &serde_json::json!({})).await
    }

    /// [`Local::create`] with the config keys of `extra` added (a `repository`, `binary`).
    pub async fn create_with(
        env: &Env,
        root: &Path,
        name: &str,
        workers: usize,
        scale: u32,
        extra: &serde_json::Value,
    ) -> Result<Self> {
        let folder = root.join(name);
        std::fs::create_dir_all(&folder)?;
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))?;
        let config = config_with(root, name, workers, &free_ports(workers + 1)?, extra)?;
        let cluster = Cluster::new(config)?;
        cluster.create(true).await?;
        Self::adopt(env, name, cluster, scale).await
    }

    /// A cluster whose servers run already (made elsewhere, such as the SSH topology's): the
    /// three views of it, and pgbench data of `scale` loaded into every node at once.
    pub async fn adopt(env: &Env, name: &str, cluster: Cluster, scale: u32) -> Result<Self> {
        let serial = cluster.clone().with_options(RunOptions {
            concurrency: 1,
            ..RunOptions::default()
        });
        let fast_poll = cluster.clone().with_options(RunOptions {
            poll_interval: Duration::from_millis(10),
            ..RunOptions::default()
        });
        let local = Local {
            name: name.into(),
            cluster,
            serial,
            fast_poll,
            scale,
        };
        let started = Instant::now();
        futures::future::try_join_all(local.nodes().map(|node| async move {
            let mut cmd = Command::new(env.bin.join("pgbench"));
            cmd.args(["-i", "-q", "-s", &scale.to_string(), "-h", &node.hostname])
                .args([
                    "-p",
                    &node.port.to_string(),
                    "-U",
                    &node.username,
                    &node.dbname,
                ])
                .kill_on_drop(true);
            run(&mut cmd, &format!("pgbench -i on {}", node.name)).await
        }))
        .await?;
        progress(&format!(
            "{name}: {} nodes, pgbench scale {scale} each, loaded in {:.0} s",
            local.nodes().count(),
            started.elapsed().as_secs_f64()
        ));
        Ok(local)
    }

    /// The config.
    pub fn config(&self) -> &ClusterConfig {
        self.cluster.config()
    }

    /// Every node.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeConfig> {
        self.config().nodes()
    }

    /// Connects to a node.
    pub async fn connect(&self, node: &NodeConfig) -> Result<tokio_postgres::Client> {
        Ok(self.cluster.backend().connect(node).await?)
    }

    /// Runs `sql` on every node at once.
    pub async fn on_every_node(&self, sql: &str) -> Result<()> {
        futures::future::try_join_all(self.nodes().map(|node| async move {
            self.connect(node).await?.batch_execute(sql).await?;
            Result::Ok(())
        }))
        .await?;
        Ok(())
    }

    /// Rows of `pgbench_accounts` per node.
    pub fn accounts(&self) -> i64 {
        i64::from(self.scale) * 100_000
    }

    /// The WAL to replay: on every node, +1 to the balance of the first `percent` of the accounts.
    pub async fn update_workload(&self, percent: u32) -> Result<i64> {
        let rows = self.accounts() * i64::from(percent) / 100;
        self.on_every_node(&format!(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= {rows}"
        ))
        .await?;
        Ok(rows)
    }

    /// Checks that every node holds the data of the restore point: `sum(abalance)` is the
    /// workload's row count (the workload runs once, before the restore point).
    pub async fn check_restored(&self, expected: i64, what: &str) -> Result<()> {
        for node in self.nodes() {
            let sum: i64 = self
                .connect(node)
                .await?
                .query_one(
                    "SELECT coalesce(sum(abalance), 0)::bigint FROM pgbench_accounts",
                    &[],
                )
                .await?
                .get(0);
            if sum != expected {
                return Err(format!(
                    "{what}: node {} restored sum(abalance) = {sum}, expected {expected}",
                    node.name
                )
                .into());
            }
        }
        Ok(())
    }

    /// `CHECKPOINT` on every node (a restartpoint on one still in recovery), waited for: a
    /// promoted node's end-of-recovery checkpoint otherwise writes in the background, spread
    /// over minutes, into whatever is measured next.
    pub async fn checkpoint(&self) -> Result<()> {
        self.on_every_node("CHECKPOINT").await
    }

    /// Stops every node (cleanup).
    pub async fn stop(&self) -> Result<()> {
        Ok(self.cluster.stop().await?)
    }
}

/// Polls `check` every `every` until it is true (or fails), up to an hour.
pub async fn poll<F, Fut>(every: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(format!("{what}: still not done after an hour").into());
        }
        tokio::time::sleep(every).await;
    }
}

/// A progress line on stderr.
pub fn progress(text: &str) {
    eprintln!("[{}] {text}", chrono::Local::now().format("%H:%M:%S%.3f"));
}
