//! Remote nodes over SSH (`--ssh`, issue 11's speed section), side by side in one run:
//!
//! - whole-cluster base backup and restore until paused of a cluster whose nodes are hosts of
//!   the namespace topology (`scripts/netns.sh`: one network namespace per host, with its own
//!   address, sshd and PostgreSQL), reached over SSH, against the same shape of cluster on this
//!   host without SSH; both with a posix repository (a folder every host sees, as the tests use)
//!   and zstd, the same pgbench data on every node;
//! - SSH's cost per command (a no-op and `pg_ctl status` over the ControlMaster against the same
//!   run locally, and the first connection to a host) and per byte (a stream through one channel
//!   against a local pipe);
//! - scaling: whole-cluster backup (and, with `--ssh-scaling-restore`, restore) with 1, 2, 4 and
//!   8 workers against the slowest node's own time, taken from a run of one node after another.
//!
//! The topology is built with `scripts/netns.sh up` (the tests' code, not a copy) and torn down
//! with `down` when [`Topology`] is dropped: after the measurements, on an error, and on Ctrl-C
//! (main drops the work then). `scripts/bench.sh --ssh` also sweeps what a killed run left.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use citus_recovery::progress::{ProgressSink, STATE_DONE};
use citus_recovery::{Cluster, ClusterConfig, RunOptions, SshBackend};
use citus_recovery_benches::stats::{millis, ratio, secs, Samples, Table};

use crate::local::{progress, remove, Env, Local, Result};
use crate::timed;

/// Parent of the topologies' folders: root-owned and not writable by others all the way up, as
/// sshd's StrictModes wants for the authorized keys inside (the tests use the same folder).
const BASE: &str = "/var/lib/citus-recovery-netns";

/// What the SSH comparison needs from the command line.
#[derive(Debug, Clone)]
pub struct SshArgs {
    /// Workers of the side-by-side comparison.
    pub workers: usize,
    /// pgbench scale of every node in the comparison.
    pub scale: u32,
    /// Rounds of the comparison.
    pub reps: usize,
    /// Share of accounts updated between backup and restore point.
    pub update_percent: u32,
    /// The citus-recovery program the hosts and the local servers run.
    pub binary: PathBuf,
    /// Worker counts of the scaling runs (empty: none).
    pub scaling: Vec<usize>,
    /// pgbench scale of every node in the scaling runs.
    pub scaling_scale: u32,
    /// Rounds of the scaling runs.
    pub scaling_reps: usize,
    /// Also restores in the scaling runs.
    pub scaling_restore: bool,
    /// Repetitions of each per-command timing.
    pub command_reps: usize,
}

/// One host of a topology.
#[derive(Debug, Clone)]
struct NsHost {
    name: String,
    addr: String,
}

/// A running topology; dropping it tears it down.
#[derive(Debug)]
struct Topology {
    dir: PathBuf,
    hosts: Vec<NsHost>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns.sh")
}

impl Topology {
    /// Builds `n` hosts with `scripts/netns.sh up`.
    async fn up(n: usize) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = Path::new(BASE);
        match std::fs::DirBuilder::new().mode(0o755).create(base) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(format!("create {BASE}: {e}").into())
            }
            _ => {}
        }
        let meta = std::fs::symlink_metadata(base)?;
        if !(meta.is_dir() && meta.uid() == 0 && meta.permissions().mode() & 0o022 == 0) {
            return Err(format!(
                "{BASE} must be a root-owned folder others cannot write (sshd's StrictModes)"
            )
            .into());
        }
        let dir = base.join(format!(
            "bench-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let started = Instant::now();
        let out = tokio::process::Command::new("bash")
            .arg(script())
            .arg("up")
            .arg(n.to_string())
            .arg(&dir)
            .env("NETNS_OWNER", std::process::id().to_string())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("run scripts/netns.sh: {e}"))?;
        // From here on Drop tears down whatever `up` left (it cleans up after itself on failure).
        let mut topology = Topology {
            dir,
            hosts: Vec::new(),
        };
        if !out.status.success() {
            return Err(format!(
                "netns.sh up {n} failed: {}{}; fix: run as root with openssh-server installed (bash scripts/setup.sh --tests)",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let ["host", name, _netns, addr] =
                line.split_whitespace().collect::<Vec<_>>().as_slice()
            {
                topology.hosts.push(NsHost {
                    name: name.to_string(),
                    addr: addr.to_string(),
                });
            }
        }
        if topology.hosts.len() != n {
            return Err(
                format!("netns.sh up listed {} hosts, not {n}", topology.hosts.len()).into(),
            );
        }
        progress(&format!(
            "topology of {n} hosts up in {:.1} s ({})",
            started.elapsed().as_secs_f64(),
            topology.dir.display()
        ));
        Ok(topology)
    }

    /// A cluster over SSH on these hosts (h1 the coordinator), with a posix repository in
    /// `DIR/repo` that every host sees; the config is written to `DIR/cluster-config.json`,
    /// the path the hosts' archive-push and node-backup read it from.
    fn cluster(&self, env: &Env, binary: &Path) -> Result<Cluster> {
        let repo = self.dir.join("repo");
        std::fs::DirBuilder::new().mode(0o755).create(&repo)?;
        // The hosts' archive-push and node-backup write these, as the servers' user.
        env.mkdir(&repo.join("wal"), 0o755)?;
        env.mkdir(&repo.join("backups"), 0o755)?;
        let node = |h: &NsHost| {
            serde_json::json!({"name": h.name, "hostname": h.addr, "port": 5432,
                               "username": "postgres", "dbname": "postgres"})
        };
        let json = serde_json::json!({
            "clusterName": "ssh",
            "workerCount": self.hosts.len() - 1,
            "coordinatorNode": node(&self.hosts[0]),
            "workerNodes": self.hosts[1..].iter().map(node).collect::<Vec<_>>(),
            "clusterBaseFolder": self.dir.join("nodes"),
            "archiveBaseFolder": self.dir.join("archive"),
            "backupBaseFolder": self.dir.join("backup"),
            "pgBinDir": env.bin,
            "binary": binary,
            "compression": "zstd",
            "repository": {"type": "posix", "path": repo},
            "ssh": {
                "user": "postgres",
                "identityFile": self.dir.join("client/id_ed25519"),
                "knownHostsFile": self.dir.join("client/known_hosts"),
            },
        });
        let file = self.dir.join("cluster-config.json");
        std::fs::write(&file, serde_json::to_string_pretty(&json)?)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
        Ok(Cluster::new(ClusterConfig::from_file(&file)?)?)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let out = std::process::Command::new("bash")
            .arg(script())
            .arg("down")
            .arg(&self.dir)
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let _ = std::fs::remove_dir_all(&self.dir);
                progress(&format!("topology {} torn down", self.dir.display()));
            }
            other => eprintln!(
                "netns.sh down {} failed ({other:?}); tear down by hand: bash scripts/netns.sh down {}",
                self.dir.display(),
                self.dir.display()
            ),
        }
    }
}

/// Seconds of every node's steps in one run, summed per node from the library's progress events
/// (each step reports its elapsed time once, when done).
#[derive(Debug, Clone, Default)]
struct NodeTimes(Arc<Mutex<HashMap<String, f64>>>);

impl NodeTimes {
    /// `cluster` with these options, reporting its steps' times here.
    fn view(&self, cluster: &Cluster, concurrency: usize) -> Cluster {
        let times = self.0.clone();
        cluster.clone().with_options(RunOptions {
            concurrency,
            progress: Some(ProgressSink::new(move |e| {
                if e.state == STATE_DONE {
                    *times
                        .lock()
                        .expect("not poisoned")
                        .entry(e.node.clone())
                        .or_default() += e.elapsed_secs;
                }
            })),
            ..RunOptions::default()
        })
    }

    /// The slowest node's time and the sum over nodes, then forgets them for the next run.
    fn take(&self) -> (f64, f64) {
        let mut map = self.0.lock().expect("not poisoned");
        let max = map.values().copied().fold(0.0, f64::max);
        let sum = map.values().sum();
        map.clear();
        (max, sum)
    }
}

/// Timings of the side-by-side comparison.
#[derive(Debug, Default)]
struct Compared {
    nodes: usize,
    bytes: u64,
    backup: [Samples; 2],
    backup_serial: [Samples; 2],
    plan: [Samples; 2],
    restore: [Samples; 2],
}

/// The two ways the nodes are reached, in the order of [`Compared`]'s arrays.
const WAYS: [&str; 2] = ["over SSH (namespace hosts)", "local (this host, no SSH)"];

/// Timings of SSH's cost per command and per byte.
#[derive(Debug, Default)]
struct Commands {
    first: Samples,
    noop_ssh: Samples,
    noop_local: Samples,
    status_ssh: Samples,
    status_local: Samples,
    stream_ssh: Samples,
    stream_local: Samples,
}

/// Bytes streamed in the per-byte rows.
const STREAM_BYTES: u64 = 256 << 20;

/// One scaling run.
#[derive(Debug, Default)]
struct Scaled {
    workers: usize,
    bytes: u64,
    backup: Samples,
    backup_serial: Samples,
    backup_slowest: Samples,
    backup_sum: Samples,
    backup_slowest_together: Samples,
    restore: Samples,
    restore_serial: Samples,
    restore_slowest: Samples,
    restore_sum: Samples,
    plan: Samples,
}

/// Bytes of every database of every node: about what a base backup reads (the catalog's
/// `bytes` are the stored, compressed ones).
async fn data_bytes(c: &Local) -> Result<u64> {
    let mut total = 0;
    for node in c.nodes() {
        let bytes: i64 = c
            .connect(node)
            .await?
            .query_one(
                "SELECT sum(pg_database_size(oid))::bigint FROM pg_database",
                &[],
            )
            .await?
            .get(0);
        total += u64::try_from(bytes)?;
    }
    Ok(total)
}

fn secs_sample(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Runs the comparison, the per-command timings and the scaling runs; returns the report.
pub async fn run_all(args: &SshArgs, env: &Env, root: &Path) -> Result<String> {
    let started = Instant::now();
    let load_before = crate::load_average();
    let binary = std::path::absolute(&args.binary)?;
    if !binary.is_file() {
        return Err(format!(
            "{} is missing: build it first (cargo build --release -p citus-recovery --bin citus-recovery), or pass --binary",
            binary.display()
        )
        .into());
    }

    // Side by side: the same shape and data, over SSH and locally.
    let topology = Topology::up(args.workers + 1).await?;
    let ssh = Local::adopt(env, "ssh", topology.cluster(env, &binary)?, args.scale).await?;
    let local = Local::create_with(
        env,
        root,
        "local",
        args.workers,
        args.scale,
        &serde_json::json!({
            "repository": {"type": "posix", "path": root.join("local").join("repo")},
            "compression": "zstd", "binary": binary}),
    )
    .await?;
    for c in [&ssh, &local] {
        c.cluster.prepare_archiving(true, false).await?;
        c.on_every_node("CHECKPOINT").await?;
    }
    let compared = compare(args, &[&ssh, &local]).await?;
    let commands = per_command(args, &ssh, &local).await?;
    local.stop().await?;
    remove(&root.join("local"))?;
    drop(ssh);
    drop(topology);

    let mut scaled = Vec::new();
    for &workers in &args.scaling {
        scaled.push(scale(args, env, &binary, workers).await?);
    }
    Ok(report(
        args,
        &compared,
        &commands,
        &scaled,
        started.elapsed(),
        &load_before,
    )
    .await)
}

/// Backups, then a workload and a restore point, then restores, in turns.
async fn compare(args: &SshArgs, clusters: &[&Local; 2]) -> Result<Compared> {
    let mut m = Compared {
        nodes: clusters[0].nodes().count(),
        bytes: data_bytes(clusters[0]).await?,
        ..Compared::default()
    };
    let reps = args.reps.max(1);
    for r in 0..reps {
        progress(&format!(
            "ssh vs local: base backup, round {}/{reps}",
            r + 1
        ));
        // Alternate who goes first, so a drift of the machine hits both alike.
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let c = clusters[i];
            let name = format!("all-{r}");
            timed(
                &mut m.backup[i],
                &format!("{}, all nodes at once", WAYS[i]),
                async { Ok(c.cluster.basebackup(Some(&name)).await?) },
            )
            .await?;
            let name = format!("serial-{r}");
            timed(
                &mut m.backup_serial[i],
                &format!("{}, one node after another", WAYS[i]),
                async { Ok(c.serial.basebackup(Some(&name)).await?) },
            )
            .await?;
        }
    }
    progress("ssh vs local: workload and restore point");
    let mut rows = 0;
    for c in clusters {
        rows = c.update_workload(args.update_percent).await?;
        c.cluster.create_restore_point(Some("rp")).await?;
    }
    let backup = format!("all-{}", reps - 1);
    for r in 0..reps {
        progress(&format!(
            "ssh vs local: restore until paused, round {}/{reps}",
            r + 1
        ));
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let c = clusters[i];
            timed(
                &mut m.plan[i],
                &format!("restore-start plan only {}", WAYS[i]),
                async {
                    Ok(c.cluster
                        .plan_restore_start(Some(&backup), Some("rp"))
                        .await?)
                },
            )
            .await?;
            restore_round(c, &c.cluster, &backup, rows, &mut m.restore[i], WAYS[i]).await?;
        }
    }
    Ok(m)
}

/// One timed restore-start of `view` until paused, checked, then restore-finish and cleanup.
async fn restore_round(
    c: &Local,
    view: &Cluster,
    backup: &str,
    rows: i64,
    samples: &mut Samples,
    label: &str,
) -> Result<()> {
    let report = timed(samples, &format!("restore {label}"), async {
        Ok(view.restore_start(Some(backup), Some("rp")).await?)
    })
    .await?;
    c.check_restored(rows, label).await?;
    c.cluster.restore_finish().await?;
    // The moved-aside data directories: on the hosts, which share this machine's disk.
    for node in report.nodes {
        if let Some(dir) = node.moved_aside_to {
            remove(&dir)?;
        }
    }
    Ok(())
}

/// SSH's cost per command and per byte, against the same done locally.
async fn per_command(args: &SshArgs, ssh: &Local, local: &Local) -> Result<Commands> {
    let mut m = Commands::default();
    let reps = args.command_reps.max(1);
    let node = ssh.config().coordinator.clone();
    let local_node = local.config().coordinator.clone();
    progress(&format!(
        "per command: first connection, no-op, pg_ctl status, {} MiB stream; {reps} times each",
        STREAM_BYTES >> 20
    ));
    // The first command to a host: ssh's handshake and login, then the command.
    for _ in 0..reps.min(10) {
        let backend = SshBackend::new(ssh.config().clone())?;
        let t = Instant::now();
        backend.run_on_host(&node, "true", &[]).await?;
        m.first.push(t.elapsed());
    }
    let backend = SshBackend::new(ssh.config().clone())?;
    backend.run_on_host(&node, "true", &[]).await?;
    ssh.cluster.backend().server_state(&node).await?;
    for _ in 0..reps {
        let t = Instant::now();
        backend.run_on_host(&node, "true", &[]).await?;
        m.noop_ssh.push(t.elapsed());
        let t = Instant::now();
        let status = tokio::process::Command::new("true").status().await?;
        m.noop_local.push(t.elapsed());
        if !status.success() {
            return Err("true failed".into());
        }
        let t = Instant::now();
        ssh.cluster.backend().server_state(&node).await?;
        m.status_ssh.push(t.elapsed());
        let t = Instant::now();
        local.cluster.backend().server_state(&local_node).await?;
        m.status_local.push(t.elapsed());
    }
    let count = STREAM_BYTES.to_string();
    for _ in 0..3 {
        let t = Instant::now();
        let out = backend
            .run_on_host(&node, "head", &["-c", &count, "/dev/zero"])
            .await?;
        m.stream_ssh.push(t.elapsed());
        if out.len() as u64 != STREAM_BYTES {
            return Err(format!("the SSH stream gave {} bytes", out.len()).into());
        }
        let t = Instant::now();
        let out = tokio::process::Command::new("head")
            .args(["-c", &count, "/dev/zero"])
            .output()
            .await?;
        m.stream_local.push(t.elapsed());
        if out.stdout.len() as u64 != STREAM_BYTES {
            return Err(format!("the local pipe gave {} bytes", out.stdout.len()).into());
        }
    }
    Ok(m)
}

/// Whole-cluster backup (and restore) with `workers` workers over SSH: all nodes at once, and
/// one node after another, which gives each node's own time.
async fn scale(args: &SshArgs, env: &Env, binary: &Path, workers: usize) -> Result<Scaled> {
    let topology = Topology::up(workers + 1).await?;
    let name = format!("scale-{workers}");
    let c = Local::adopt(
        env,
        &name,
        topology.cluster(env, binary)?,
        args.scaling_scale,
    )
    .await?;
    c.cluster.prepare_archiving(true, false).await?;
    c.on_every_node("CHECKPOINT").await?;
    let times = NodeTimes::default();
    let together = times.view(&c.cluster, 0);
    let serial = times.view(&c.cluster, 1);
    let mut m = Scaled {
        workers,
        bytes: data_bytes(&c).await?,
        ..Scaled::default()
    };
    let reps = args.scaling_reps.max(1);
    for r in 0..reps {
        progress(&format!("{name}: base backup, round {}/{reps}", r + 1));
        let b = format!("all-{r}");
        timed(&mut m.backup, "all nodes at once", async {
            Ok(together.basebackup(Some(&b)).await?)
        })
        .await?;
        m.backup_slowest_together.push(secs_sample(times.take().0));
        let b = format!("serial-{r}");
        timed(&mut m.backup_serial, "one node after another", async {
            Ok(serial.basebackup(Some(&b)).await?)
        })
        .await?;
        let (slowest, sum) = times.take();
        m.backup_slowest.push(secs_sample(slowest));
        m.backup_sum.push(secs_sample(sum));
    }
    if args.scaling_restore {
        let rows = c.update_workload(args.update_percent).await?;
        c.cluster.create_restore_point(Some("rp")).await?;
        let backup = format!("all-{}", reps - 1);
        for r in 0..reps {
            progress(&format!(
                "{name}: restore until paused, round {}/{reps}",
                r + 1
            ));
            timed(&mut m.plan, "restore-start plan only", async {
                Ok(c.cluster
                    .plan_restore_start(Some(&backup), Some("rp"))
                    .await?)
            })
            .await?;
            restore_round(
                &c,
                &together,
                &backup,
                rows,
                &mut m.restore,
                "all nodes at once",
            )
            .await?;
            times.take();
            restore_round(
                &c,
                &serial,
                &backup,
                rows,
                &mut m.restore_serial,
                "one node after another",
            )
            .await?;
            let (slowest, sum) = times.take();
            m.restore_slowest.push(secs_sample(slowest));
            m.restore_sum.push(secs_sample(sum));
        }
    }
    drop(c);
    drop(topology);
    Ok(m)
}

fn mb_s(bytes: u64, s: f64) -> String {
    format!("{:.0}", bytes as f64 / 1e6 / s)
}

async fn report(
    args: &SshArgs,
    m: &Compared,
    k: &Commands,
    scaled: &[Scaled],
    took: Duration,
    load_before: &str,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let command: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(
        out,
        "## Remote nodes over SSH\n\n- command: `bash scripts/bench.sh {}` (took {:.0} s)",
        command.join(" "),
        took.as_secs_f64()
    );
    for line in crate::machine().await {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(
        out,
        "- load average (1, 5, 15 min) at the start: {load_before}; at the end: {}",
        crate::load_average()
    );
    let _ = writeln!(
        out,
        "- data: {} nodes (coordinator + {} workers), plain PostgreSQL, pgbench scale {} on every node; {} MiB of databases in all (what a backup reads; the MB/s below are of these); {}% of accounts updated before the restore point\n- repository: posix on a folder every host sees (the namespace hosts share this machine's disk), zstd-1; over SSH each host's own `citus-recovery node-backup`/`node-restore` moves its node's bytes, locally the library does in-process\n- every figure: median of {} runs, in seconds (min and max beside it)\n",
        m.nodes,
        args.workers,
        args.scale,
        m.bytes >> 20,
        args.update_percent,
        args.reps
    );
    let mut t = Table::new(&[
        "whole cluster",
        "median",
        "min",
        "max",
        "MB/s",
        "SSH / local",
    ]);
    for (what, samples) in [
        ("base backup, all nodes at once", &m.backup),
        ("base backup, one node after another", &m.backup_serial),
        (
            "restore-start plan only (pre-flight checks, observe, paths)",
            &m.plan,
        ),
        ("restore until paused, all nodes at once", &m.restore),
    ] {
        for (i, way) in WAYS.iter().enumerate() {
            let s = &samples[i];
            t.row(vec![
                format!("{what}, {way}"),
                secs(s.median()),
                secs(s.min()),
                secs(s.max()),
                if std::ptr::eq(samples, &m.plan) {
                    String::new()
                } else {
                    mb_s(m.bytes, s.median())
                },
                if i == 0 {
                    ratio(s.median(), samples[1].median())
                } else {
                    String::new()
                },
            ]);
        }
    }
    let _ = writeln!(out, "{t}");

    let _ = writeln!(
        out,
        "SSH's cost per command ({} runs each; the first connection {} runs) and per byte ({} MiB, 3 runs):\n",
        args.command_reps,
        args.command_reps.min(10),
        STREAM_BYTES >> 20
    );
    let mut t = Table::new(&["per command", "over SSH", "locally", "SSH's cost"]);
    let ms = |s: &Samples| format!("{:.1} ms", s.median() * 1000.0);
    t.row(vec![
        "first command to a host (master connection: handshake, login), then `true`".into(),
        ms(&k.first),
        ms(&k.noop_local),
        millis(k.first.median() - k.noop_local.median()),
    ]);
    t.row(vec![
        "no-op (`true`) over the ControlMaster / a local process".into(),
        ms(&k.noop_ssh),
        ms(&k.noop_local),
        millis(k.noop_ssh.median() - k.noop_local.median()),
    ]);
    t.row(vec![
        "server state (`pg_ctl status` as the servers' user)".into(),
        ms(&k.status_ssh),
        ms(&k.status_local),
        millis(k.status_ssh.median() - k.status_local.median()),
    ]);
    let _ = writeln!(out, "{t}");
    let mut t = Table::new(&[
        "per byte",
        "MB/s over one SSH channel",
        "MB/s through a local pipe",
        "ratio",
    ]);
    t.row(vec![
        format!(
            "{} MiB of zeros (`head -c`) to this process",
            STREAM_BYTES >> 20
        ),
        mb_s(STREAM_BYTES, k.stream_ssh.median()),
        mb_s(STREAM_BYTES, k.stream_local.median()),
        ratio(k.stream_ssh.median(), k.stream_local.median()),
    ]);
    let _ = writeln!(out, "{t}");

    if !scaled.is_empty() {
        let _ = writeln!(
            out,
            "Scaling over SSH, pgbench scale {} on every node, {} runs. \"Slowest node alone\" and \"sum of nodes\" are the nodes' own step times (the library's progress events) in the run of one node after another; \"slowest node, all at once\" is the same in the run of all nodes at once (the nodes share this machine's 2 cores and disk there).\n",
            args.scaling_scale, args.scaling_reps
        );
        let mut t = Table::new(&[
            "workers",
            "nodes",
            "MiB",
            "backup, all at once",
            "one after another",
            "sum of nodes",
            "slowest node alone",
            "slowest node, all at once",
            "all at once / slowest alone",
            "all at once / sum",
        ]);
        for s in scaled {
            t.row(vec![
                s.workers.to_string(),
                (s.workers + 1).to_string(),
                (s.bytes >> 20).to_string(),
                secs(s.backup.median()),
                secs(s.backup_serial.median()),
                secs(s.backup_sum.median()),
                secs(s.backup_slowest.median()),
                secs(s.backup_slowest_together.median()),
                ratio(s.backup.median(), s.backup_slowest.median()),
                ratio(s.backup.median(), s.backup_sum.median()),
            ]);
        }
        let _ = writeln!(out, "{t}");
        if args.scaling_restore {
            let mut t = Table::new(&[
                "workers",
                "restore-start plan only",
                "restore, all at once",
                "one after another",
                "sum of nodes",
                "slowest node alone",
                "all at once / slowest alone",
                "all at once / sum",
            ]);
            for s in scaled {
                t.row(vec![
                    s.workers.to_string(),
                    secs(s.plan.median()),
                    secs(s.restore.median()),
                    secs(s.restore_serial.median()),
                    secs(s.restore_sum.median()),
                    secs(s.restore_slowest.median()),
                    ratio(s.restore.median(), s.restore_slowest.median()),
                    ratio(s.restore.median(), s.restore_sum.median()),
                ]);
            }
            let _ = writeln!(out, "{t}");
        }
    }
    out
}
