//! Restore points under load (`--under-load`): distributed two-phase-commit writes on a Citus
//! cluster for a bounded time, once without restore points and once with a restore point every
//! few seconds; the write latency p50/p99/max of both, side by side.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citus_recovery::Cluster;
use citus_recovery_benches::stats::Table;

use crate::local::{config, free_ports, progress, Result};

/// Accounts of the distributed table (32 shards over the workers).
const ACCOUNTS: i64 = 10_000;

/// What one run measured.
struct Run {
    latencies: Vec<Duration>,
    points_made: usize,
    points_failed: usize,
}

/// The percentile `p` (0..=100) of sorted latencies, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// One writer: transfers between two random accounts (two shards, usually on two workers, so
/// Citus commits with 2PC) until `stop`, every transaction timed.
async fn writer(client: tokio_postgres::Client, seed: u64, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % ACCOUNTS as u64) as i64 + 1
    };
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let (a, b) = (next(), next());
        let began = Instant::now();
        let sql = format!(
            "BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = {a}; \
             UPDATE accounts SET balance = balance + 1 WHERE id = {b}; COMMIT"
        );
        if client.batch_execute(&sql).await.is_ok() {
            out.push(began.elapsed());
        } else {
            let _ = client.batch_execute("ROLLBACK").await;
        }
    }
    out
}

/// Runs the workload for `seconds`, with a restore point every `every` seconds when given.
async fn workload(
    cluster: &Cluster,
    writers: usize,
    seconds: u64,
    every: Option<u64>,
) -> Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..writers {
        let client = cluster
            .backend()
            .connect(&cluster.config().coordinator)
            .await?;
        tasks.push(tokio::spawn(writer(
            client,
            0x9E37_79B9 + i as u64,
            stop.clone(),
        )));
    }
    let end = Instant::now() + Duration::from_secs(seconds);
    let (mut points_made, mut points_failed) = (0, 0);
    while Instant::now() < end {
        match every {
            None => tokio::time::sleep(Duration::from_millis(200)).await,
            Some(e) => {
                tokio::time::sleep(Duration::from_secs(e)).await;
                match cluster.create_restore_point(None).await {
                    Ok(_) => points_made += 1,
                    Err(err) => {
                        progress(&format!("restore point failed: {err}"));
                        points_failed += 1;
                    }
                }
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    latencies.sort();
    Ok(Run {
        latencies,
        points_made,
        points_failed,
    })
}

/// Creates a Citus cluster of `workers` workers in `<root>/under-load`, runs both workloads and
/// returns the markdown report.
pub async fn measure(
    root: &Path,
    workers: usize,
    writers: usize,
    seconds: u64,
    every: u64,
) -> Result<String> {
    let folder = root.join("under-load");
    std::fs::create_dir_all(&folder)?;
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))?;
    let cluster = Cluster::new(config(
        root,
        "under-load",
        workers,
        &free_ports(workers + 1)?,
    )?)?;
    cluster.create(false).await?;
    cluster.prepare_archiving(true, false).await?;
    let client = cluster
        .backend()
        .connect(&cluster.config().coordinator)
        .await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE accounts(id bigint PRIMARY KEY, balance bigint NOT NULL); \
             SELECT create_distributed_table('accounts', 'id', shard_count := 32); \
             INSERT INTO accounts SELECT g, 0 FROM generate_series(1, {ACCOUNTS}) g"
        ))
        .await?;
    progress(&format!(
        "under load: {writers} writers, {seconds} s without restore points"
    ));
    let none = workload(&cluster, writers, seconds, None).await?;
    progress(&format!(
        "under load: {seconds} s with a restore point every {every} s"
    ));
    let with = workload(&cluster, writers, seconds, Some(every)).await?;
    let locks = cluster.config().restore_point_locks;
    let result = cluster.stop().await;
    if let Err(e) = result {
        progress(&format!("stopping the cluster: {e}"));
    }

    let mut table = Table::new(&[
        "run",
        "transactions",
        "p50 ms",
        "p99 ms",
        "max ms",
        "restore points made / failed",
    ]);
    for (name, r) in [
        ("no restore points".to_string(), &none),
        (format!("a restore point every {every} s"), &with),
    ] {
        table.row(vec![
            name,
            r.latencies.len().to_string(),
            format!("{:.1}", percentile(&r.latencies, 50.0)),
            format!("{:.1}", percentile(&r.latencies, 99.0)),
            format!("{:.1}", percentile(&r.latencies, 100.0)),
            format!("{} / {}", r.points_made, r.points_failed),
        ]);
    }
    let p99 = percentile(&with.latencies, 99.0) - percentile(&none.latencies, 99.0);
    Ok(format!(
        "## Restore points under load\n\n{} nodes (Citus), {writers} writers of two-row transfers \
         (two shards, 2PC across workers), {seconds} s each; restorePointLockTimeout {} ms, \
         {} retries.\n\n{table}\nrestore points add {p99:.1} ms to the p99 write latency \
         (goal: under 50 ms).\n",
        workers + 1,
        locks.lock_timeout_ms,
        locks.retries
    ))
}
