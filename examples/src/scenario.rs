//! The example scenario of the old scripts, as a small program over the library.
//!
//! On a throwaway local cluster in a temporary folder:
//!
//! 1. create a cluster (Citus when it is installed, else plain PostgreSQL nodes);
//! 2. prepare WAL archiving and take a base backup;
//! 3. create a table `xx(id int)` (distributed on Citus; on plain nodes each node holds its share);
//! 4. insert `--rows` rows, create a restore point, insert as many again;
//! 5. restore every node to the restore point: while paused, the count must be the first insert's;
//!    finish the restore: the cluster must take writes again;
//! 6. print how long each phase took, and the verdict.
//!
//! Run it with `bash scripts/scenario.sh` (release build), or
//! `cargo run --release -p citus-recovery-examples --bin scenario -- --rows 100000`.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use citus_recovery::{Cluster, ClusterConfig, NodeConfig};
use clap::Parser;

/// The example scenario: backup, restore point, restore, on a throwaway local cluster.
#[derive(Debug, Parser)]
#[command(name = "scenario")]
struct Args {
    /// Number of worker nodes (besides the coordinator).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Plain PostgreSQL nodes even when Citus is installed.
    #[arg(long)]
    plain: bool,
    /// Rows inserted before the restore point (and as many after it).
    #[arg(long, default_value_t = 15_000_000,
          value_parser = clap::value_parser!(i32).range(1..=1_000_000_000))]
    rows: i32,
    /// Rows per INSERT statement; progress is printed after each.
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(i32).range(1..=100_000_000))]
    chunk: i32,
    /// Keep the temporary folder (and leave the cluster stopped in it).
    #[arg(long)]
    keep: bool,
}

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> ExitCode {
    // The library reports each step it runs (and "replaying WAL" every 10 s while restoring).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("citus_recovery=info"))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let args = Args::parse();
    match scenario(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Sets up the folder and the cluster, runs the scenario, and always stops the cluster again.
async fn scenario(args: &Args) -> Result<bool, Error> {
    let folder = tempfile::Builder::new()
        .prefix("citus-recovery-")
        .tempdir()?;
    // The servers run as `postgres`, which must be able to enter the folder.
    std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o755))?;
    eprintln!("scenario folder: {}", folder.path().display());
    let cluster = Cluster::new(local_config(folder.path(), args.workers)?)?;

    let outcome = run(&cluster, args).await;

    progress("stopping the cluster");
    if let Err(e) = cluster.stop().await {
        eprintln!("warning: could not stop every node: {e}");
    }
    let verdict = outcome.as_ref().is_ok_and(|ok| *ok);
    if args.keep || !verdict {
        // A failed run is kept, so its server logs can be read.
        eprintln!("kept: {}", folder.keep().display());
    }
    outcome
}

/// The scenario steps; true when every count was right.
async fn run(cluster: &Cluster, args: &Args) -> Result<bool, Error> {
    let mut timings = Timings::default();

    progress("1. creating the cluster");
    timings
        .time("cluster create", cluster.create(args.plain))
        .await?;
    let citus = cluster.status().await?.nodes[0].citus_version.is_some();
    eprintln!(
        "   {} nodes, {}",
        cluster.config().nodes().count(),
        if citus { "Citus" } else { "plain PostgreSQL" }
    );

    progress("2. preparing archiving, taking a base backup");
    timings
        .time("prepare archiving", cluster.prepare_archiving(true, false))
        .await?;
    let backup = timings
        .time("base backup", cluster.basebackup(Some("before-inserts")))
        .await?;

    progress("3. creating table xx");
    let table = Table { cluster, citus };
    table.create().await?;

    progress("4. inserting, restore point, inserting again");
    let rows = args.rows;
    let first = timings
        .time("insert 1", table.insert(1, rows, args.chunk, "insert 1"))
        .await?;
    let point = timings
        .time(
            "restore point",
            cluster.create_restore_point(Some("after-first-insert")),
        )
        .await?;
    timings
        .time(
            "insert 2",
            table.insert(rows + 1, 2 * rows, args.chunk, "insert 2"),
        )
        .await?;
    let before_restore = table.count().await?;

    progress("5. restoring to the restore point");
    timings
        .time(
            "restore-start until paused",
            cluster.restore_start(Some(&backup.name), Some(&point.name)),
        )
        .await?;
    let while_paused = table.count().await?;
    eprintln!("   count while paused: {while_paused} (expected {first})");
    timings
        .time("restore-finish", cluster.restore_finish())
        .await?;
    let written = table.write_after_restore().await?;
    let after_write = table.count().await?;

    let checks = [
        (
            "count before the restore",
            before_restore,
            2 * i64::from(rows),
        ),
        (
            "count while paused at the restore point",
            while_paused,
            first,
        ),
        (
            "count after a write to the restored cluster",
            after_write,
            first + written,
        ),
    ];
    println!("\n{timings}");
    let mut ok = true;
    for (what, got, want) in checks {
        let mark = if got == want { "ok" } else { "WRONG" };
        println!("{mark:>5}  {what}: {got} (expected {want})");
        ok &= got == want;
    }
    println!(
        "\nverdict: {}",
        if ok {
            "PASS: the restore brought back exactly the rows of the restore point"
        } else {
            "FAIL: a count is wrong"
        }
    );
    Ok(ok)
}

/// The table `xx(id int)`: distributed on Citus, else each node holds its share of the ids.
struct Table<'a> {
    cluster: &'a Cluster,
    citus: bool,
}

impl Table<'_> {
    /// The nodes that hold rows: with Citus the coordinator routes everything, else all of them.
    fn nodes(&self) -> Vec<&NodeConfig> {
        let config = self.cluster.config();
        if self.citus {
            vec![&config.coordinator]
        } else {
            config.nodes().collect()
        }
    }

    async fn clients(&self) -> Result<Vec<tokio_postgres::Client>, Error> {
        let mut clients = Vec::new();
        for node in self.nodes() {
            clients.push(self.cluster.backend().connect(node).await?);
        }
        Ok(clients)
    }

    async fn create(&self) -> Result<(), Error> {
        let sql = if self.citus {
            "CREATE TABLE xx(id int); SELECT create_distributed_table('xx', 'id')"
        } else {
            "CREATE TABLE xx(id int)"
        };
        for client in self.clients().await? {
            client.batch_execute(sql).await?;
        }
        Ok(())
    }

    /// Inserts ids `from..=to`, `chunk` rows per statement, printing progress; returns the count.
    async fn insert(&self, from: i32, to: i32, chunk: i32, label: &str) -> Result<i64, Error> {
        let clients = self.clients().await?;
        let total = i64::from(to) - i64::from(from) + 1;
        let started = Instant::now();
        let mut start = from;
        while start <= to {
            // ids stay below 2^31: rows and chunk are bounded by their parsers.
            let end = to.min(start + chunk - 1);
            // Each node takes an equal slice of the chunk (with Citus there is one "node").
            let n = clients.len() as i32;
            let per = (end - start + n) / n;
            let statements = clients.iter().enumerate().map(|(i, c)| {
                let lo = start + i as i32 * per;
                let hi = (lo + per - 1).min(end);
                async move {
                    c.execute(
                        "INSERT INTO xx SELECT generate_series($1::int, $2::int)",
                        &[&lo, &hi],
                    )
                    .await
                }
            });
            futures::future::try_join_all(statements).await?;
            let done = i64::from(end) - i64::from(from) + 1;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "   {label}: {done} / {total} rows ({:.0}%), {:.0} rows/s",
                100.0 * done as f64 / total as f64,
                done as f64 / secs.max(1e-9)
            );
            start = end + 1;
        }
        self.count().await
    }

    /// `count(*)` over the whole table.
    async fn count(&self) -> Result<i64, Error> {
        let mut sum = 0;
        for client in self.clients().await? {
            sum += client
                .query_one("SELECT count(*) FROM xx", &[])
                .await?
                .get::<_, i64>(0);
        }
        Ok(sum)
    }

    /// Writes to the restored cluster (ids 0 and below, never used before); returns the rows.
    async fn write_after_restore(&self) -> Result<i64, Error> {
        let mut written = 0;
        for client in self.clients().await? {
            // On Citus 100 ids land in shards on every worker, so every node must take writes.
            let sql = if self.citus {
                "INSERT INTO xx SELECT generate_series(-99, 0)"
            } else {
                "INSERT INTO xx VALUES (0)"
            };
            written += client.execute(sql, &[]).await? as i64;
        }
        Ok(written)
    }
}

/// Phase timings, printed as a table.
#[derive(Default)]
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    /// Runs `work`, recording how long it took under `label`.
    async fn time<T, E>(
        &mut self,
        label: &'static str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = work.await;
        let took = started.elapsed();
        eprintln!("   {label}: {:.1} s", took.as_secs_f64());
        self.0.push((label, took));
        result
    }
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| phase                       | seconds |")?;
        writeln!(f, "|-----------------------------|--------:|")?;
        for (label, took) in &self.0 {
            writeln!(f, "| {label:<27} | {:>7.1} |", took.as_secs_f64())?;
        }
        Ok(())
    }
}

fn progress(step: &str) {
    eprintln!("== {step}");
}

/// A config for a coordinator and `workers` workers on free local ports, all inside `folder`.
fn local_config(folder: &Path, workers: usize) -> Result<ClusterConfig, Error> {
    // Hold every listener until all ports are chosen, so no port is handed out twice.
    let listeners = (0..=workers)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()?;
    drop(listeners);
    let node = |name: String, port: u16| {
        format!(
            r#"{{"name": "{name}", "hostname": "127.0.0.1", "port": {port}, "username": "postgres", "dbname": "postgres"}}"#
        )
    };
    let worker_nodes: Vec<String> = (1..=workers)
        .map(|i| node(format!("worker{i}"), ports[i]))
        .collect();
    let json = format!(
        r#"{{
            "clusterName": "scenario",
            "workerCount": {workers},
            "coordinatorNode": {coordinator},
            "workerNodes": [{worker_nodes}],
            "clusterBaseFolder": "{base}/cluster",
            "archiveBaseFolder": "{base}/archive",
            "backupBaseFolder": "{base}/backup"
        }}"#,
        coordinator = node("coordinator".into(), ports[0]),
        worker_nodes = worker_nodes.join(", "),
        base = folder.display(),
    );
    Ok(ClusterConfig::from_json_str(&json, None)?)
}
