//! WAL through the tool, side by side in one run (`--wal`, or `--wal-only`):
//!
//! - archiving under pgbench load: `basic_archive` into a folder against `archive-push` into a
//!   posix repository, same data, same load; archiver lag sampled from `pg_stat_archiver` and
//!   `pg_current_wal_lsn()` twice a second;
//! - archive-push of real segments one at a time as the archiver runs it (posix and S3);
//! - archive-get per segment from S3 (moto on loopback) with prefetch off and on;
//! - verify and list with 20 and 400 archived segments.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use citus_recovery_benches::stats::{millis, secs, Samples, Table};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::local::{progress, remove, run, Env, Local, Result};

/// PostgreSQL's default segment size, which the clusters here use.
const SEG: u64 = 16 * 1024 * 1024;

/// What the WAL section runs with.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// The citus-recovery command-line tool the servers run.
    pub binary: PathBuf,
    /// pgbench's duration for each archiving method.
    pub pgbench_seconds: u64,
    /// pgbench clients.
    pub clients: u32,
    /// pgbench scale of the archiving runs.
    pub scale: u32,
    /// Repetitions of the archive-get and verify/list timings.
    pub reps: usize,
    /// Segments archive-get fetches in each timing.
    pub get_segments: usize,
    /// Delay added to every S3 request in the second pair of archive-get rows, in ms.
    pub s3_delay_ms: u64,
    /// archiveGetQueue of the prefetching row.
    pub queue: usize,
    /// Segment counts of the verify and list rows.
    pub verify_segments: Vec<usize>,
    /// Python with moto (S3 rows are left out without it).
    pub moto_python: PathBuf,
    /// scripts/moto-s3.py.
    pub moto_script: PathBuf,
}

/// One archiving run under pgbench.
#[derive(Debug, Default)]
struct ArchiveRun {
    tps: f64,
    wal_bytes: u64,
    run: Duration,
    archived: i64,
    failed: i64,
    lag_max: u64,
    lag_mean: f64,
    lag_bytes_max: u64,
    drain: Duration,
}

/// Runs the whole section; returns its markdown.
pub async fn measure(env: &Env, root: &Path, o: &WalOptions) -> Result<String> {
    let mut out = String::from("## WAL through the tool\n\n");
    if !o.binary.is_file() {
        return Err(format!(
            "{} is missing: build it (cargo build --release -p citus-recovery --bin citus-recovery) or pass --binary",
            o.binary.display()
        )
        .into());
    }

    // 1. Archiving under load, the two methods in turn on clusters of the same data.
    let basic = Local::create(env, root, "wal-basic", 0, o.scale).await?;
    basic.cluster.prepare_archiving(true, false).await?;
    let repo_dir = root.join("wal-posix").join("repo");
    let posix = Local::create_with(
        env,
        root,
        "wal-posix",
        0,
        o.scale,
        &serde_json::json!({
            "repository": {"type": "posix", "path": repo_dir},
            "binary": o.binary,
        }),
    )
    .await?;
    posix.cluster.prepare_archiving(true, false).await?;
    let basic_run = archive_under_load(env, &basic, "basic_archive", o).await?;
    let posix_run = archive_under_load(env, &posix, "archive-push (posix)", o).await?;
    let mut t = Table::new(&[
        "archiving",
        "pgbench tps",
        "WAL written",
        "segments archived",
        "archived MB/s (run + drain)",
        "lag max (segments)",
        "lag mean (segments)",
        "lag max (MiB)",
        "drain after the run",
        "failed",
    ]);
    for (label, r) in [
        ("basic_archive into a folder", &basic_run),
        ("archive-push, posix repository, zstd-1", &posix_run),
    ] {
        t.row(vec![
            label.into(),
            format!("{:.0}", r.tps),
            format!(
                "{:.0} MiB in {:.0} s ({:.1} MiB/s)",
                r.wal_bytes as f64 / 1048576.0,
                r.run.as_secs_f64(),
                r.wal_bytes as f64 / 1048576.0 / r.run.as_secs_f64()
            ),
            r.archived.to_string(),
            format!(
                "{:.1}",
                r.archived as f64 * 16.0 * 1.048576 / (r.run + r.drain).as_secs_f64()
            ),
            r.lag_max.to_string(),
            format!("{:.2}", r.lag_mean),
            format!("{:.1}", r.lag_bytes_max as f64 / 1048576.0),
            secs(r.drain.as_secs_f64()),
            r.failed.to_string(),
        ]);
    }
    out.push_str(&format!(
        "Archiving under `pgbench -n -c {} -j 2 -T {}` with `synchronous_commit=off` (scale {}, one node each, the methods one after the other). \
         Lag: completed segments not yet archived (and bytes written past the end of the last archived segment), \
         sampled every 0.5 s; drain: from `pg_switch_wal()` after the run until that segment is archived.\n\n{t}\n",
        o.clients, o.pgbench_seconds, o.scale
    ));

    // Real segments of the run, for the single-file timings.
    let segments = real_segments(&basic, o.get_segments)?;
    progress(&format!(
        "wal: {} real segments for archive-push/get",
        segments.len()
    ));

    // 2. archive-push of those segments, one process at a time as the archiver runs it.
    let mut t = Table::new(&["archive-push, one segment at a time", "per segment", "MB/s"]);
    let push_dir = root.join("wal-push");
    std::fs::create_dir_all(&push_dir)?;
    let posix_cfg = cli_config(
        &basic,
        &push_dir,
        "posix-push",
        serde_json::json!({"type": "posix", "path": push_dir.join("repo")}),
        0,
        o,
    )?;
    std::fs::create_dir_all(push_dir.join("repo"))?;
    let took = push_all(&posix_cfg, &segments, &[]).await?;
    t.row(per_segment_row(
        "posix repository, zstd-1",
        took,
        segments.len(),
    ));

    let moto = match Moto::start(o).await {
        Ok(m) => Some(m),
        Err(e) => {
            progress(&format!("wal: S3 rows left out: {e}"));
            out.push_str(&format!("S3 rows left out: {e}\n\n"));
            None
        }
    };
    let mut gets = Table::new(&[
        "archive-get from S3 (moto), one segment at a time",
        "per segment (median)",
        "min",
        "max",
        "total",
    ]);
    if let Some(moto) = &moto {
        let s3 = serde_json::json!({"type": "s3", "bucket": "wal", "prefix": "bench",
            "region": "us-east-1", "endpoint": moto.endpoint(), "allowHttp": true});
        let push_cfg = cli_config(&basic, &push_dir, "s3-push", s3.clone(), 0, o)?;
        let took = push_all(&push_cfg, &segments, &moto.env()).await?;
        t.row(per_segment_row(
            "S3 repository (moto), zstd-1",
            took,
            segments.len(),
        ));

        // 3. archive-get per segment, prefetch off and on, taking turns; straight to moto and
        // through a proxy that holds every request for the --s3-delay-ms (a round trip to a
        // real object store, which loopback lacks).
        let delayed = DelayProxy::start(moto.port, Duration::from_millis(o.s3_delay_ms)).await?;
        let mut configs = Vec::new();
        for (via, endpoint) in [
            ("loopback".to_string(), moto.endpoint()),
            (
                format!("+{} ms per request", o.s3_delay_ms),
                delayed.endpoint(),
            ),
        ] {
            let s3 = serde_json::json!({"type": "s3", "bucket": "wal", "prefix": "bench",
                "region": "us-east-1", "endpoint": endpoint, "allowHttp": true});
            for queue in [0, o.queue] {
                let name = format!("s3-get-{}-{queue}", configs.len());
                let cfg = cli_config(&basic, &push_dir, &name, s3.clone(), queue, o)?;
                configs.push((via.clone(), queue, cfg, moto.env(), Samples::default()));
            }
        }
        // 4. The same, one process per segment, over TLS as a real S3 endpoint is reached:
        // every process opens its own TLS connection and seeds its random generator. Its
        // archive-get row takes turns with the others.
        let tls_moto = crate::repo::start_moto(&push_dir).await;
        match &tls_moto {
            Ok(tls) => {
                let mut tls_env = moto.env();
                tls_env.push(("SSL_CERT_FILE", tls.ca.display().to_string()));
                let s3 = serde_json::json!({"type": "s3", "bucket": crate::repo::LIB_BUCKET,
                    "prefix": "wal-tls", "region": "us-east-1",
                    "endpoint": tls.url("")});
                let cfg = cli_config(&basic, &push_dir, "s3-tls", s3, 0, o)?;
                let took = push_all(&cfg, &segments, &tls_env).await?;
                t.row(per_segment_row(
                    "S3 repository (moto behind TLS), zstd-1",
                    took,
                    segments.len(),
                ));
                configs.push(("loopback, TLS".into(), 0, cfg, tls_env, Samples::default()));
            }
            Err(e) => {
                progress(&format!("wal: S3 rows over TLS left out: {e}"));
                out.push_str(&format!("S3 rows over TLS left out: {e}\n\n"));
            }
        }
        for r in 0..o.reps {
            progress(&format!("wal: archive-get round {}/{}", r + 1, o.reps));
            for (i, (_, _, cfg, env, samples)) in configs.iter_mut().enumerate() {
                let pg_wal = push_dir.join(format!("pg_wal-{i}"));
                samples.push(get_all(cfg, &segments, &pg_wal, env).await?);
            }
        }
        let n = segments.len() as f64;
        for (via, queue, _, _, s) in &configs {
            let label = match queue {
                0 => format!("{via}, prefetch off (archiveGetQueue 0)"),
                q => format!("{via}, prefetch on (archiveGetQueue {q})"),
            };
            gets.row(vec![
                label,
                millis(s.median() / n),
                millis(s.min() / n),
                millis(s.max() / n),
                secs(s.median()),
            ]);
        }
    }
    out.push_str(&format!(
        "archive-push and archive-get run as the servers run them: one process per segment, \
         {} real segments of the pgbench run.\n\n{t}\n{gets}\n",
        segments.len()
    ));
    basic.stop().await?;
    posix.stop().await?;
    remove(&root.join("wal-basic"))?;
    remove(&root.join("wal-posix"))?;
    remove(&push_dir)?;

    // 4. verify and list at 20 and 400 archived segments (posix repository).
    out.push_str(&verify_and_list(env, root, o).await?);
    Ok(out)
}

/// A config file for the command-line tool: `local`'s nodes, with `repository`.
fn cli_config(
    local: &Local,
    dir: &Path,
    name: &str,
    repository: serde_json::Value,
    queue: usize,
    o: &WalOptions,
) -> Result<PathBuf> {
    let c = local.config();
    let node = |n: &citus_recovery::NodeConfig| {
        serde_json::json!({"name": n.name, "hostname": n.hostname, "port": n.port,
                           "username": n.username, "dbname": n.dbname})
    };
    let json = serde_json::json!({
        "clusterName": c.cluster_name,
        "workerCount": c.workers.len(),
        "coordinatorNode": node(&c.coordinator),
        "workerNodes": c.workers.iter().map(node).collect::<Vec<_>>(),
        "clusterBaseFolder": c.cluster_base_folder,
        "archiveBaseFolder": dir.join(format!("{name}-archive")),
        "backupBaseFolder": dir.join(format!("{name}-backup")),
        "repository": repository,
        "archiveGetQueue": queue,
        "binary": o.binary,
    });
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, json.to_string())?;
    Ok(file)
}

/// Runs pgbench on `local`'s one node while sampling the archiver.
async fn archive_under_load(
    env: &Env,
    local: &Local,
    label: &str,
    o: &WalOptions,
) -> Result<ArchiveRun> {
    let node = local.config().coordinator.clone();
    let client = local.connect(&node).await?;
    client
        .batch_execute(
            "CHECKPOINT; SELECT pg_switch_wal(); SELECT pg_stat_reset_shared('archiver')",
        )
        .await?;
    // The switch above is archived before the run starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sample = || async {
        let row = client
            .query_one(
                "SELECT pg_current_wal_lsn()::text, last_archived_wal, archived_count, failed_count \
                 FROM pg_stat_archiver",
                &[],
            )
            .await?;
        let lsn = parse_lsn(&row.get::<_, String>(0));
        let last: Option<String> = row.get(1);
        Result::Ok((lsn, last, row.get::<_, i64>(2), row.get::<_, i64>(3)))
    };
    let (start_lsn, _, start_archived, _) = sample().await?;
    progress(&format!(
        "wal: {label}: pgbench for {} s",
        o.pgbench_seconds
    ));
    let mut cmd = Command::new(env.bin.join("pgbench"));
    cmd.args(["-n", "-c", &o.clients.to_string(), "-j", "2", "-T"])
        .arg(o.pgbench_seconds.to_string())
        .args(["-h", &node.hostname, "-p", &node.port.to_string()])
        .args(["-U", &node.username, &node.dbname])
        // As much WAL as pgbench can write on this machine: commits do not wait for the flush.
        .env("PGOPTIONS", "-c synchronous_commit=off")
        .kill_on_drop(true);
    let started = Instant::now();
    let bench =
        tokio::spawn(async move { run(&mut cmd, "pgbench").await.map_err(|e| e.to_string()) });
    let (mut lags, mut lag_bytes_max) = (Vec::new(), 0u64);
    while !bench.is_finished() {
        let (lsn, last, _, _) = sample().await?;
        let current = lsn / SEG;
        let archived_end = last
            .as_deref()
            .and_then(segment_number)
            .map_or(start_lsn / SEG, |s| s + 1);
        lags.push(current.saturating_sub(archived_end));
        lag_bytes_max = lag_bytes_max.max(lsn.saturating_sub(archived_end * SEG));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let output = bench.await.map_err(|e| e.to_string())??;
    let run_time = started.elapsed();
    let tps = output
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(f64::NAN);
    let (end_lsn, _, _, _) = sample().await?;
    let switched: String = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await?
        .get(0);
    let drain_start = Instant::now();
    let target = segment_number(&switched).unwrap_or(0);
    loop {
        let (_, last, _, _) = sample().await?;
        if last
            .as_deref()
            .and_then(segment_number)
            .is_some_and(|s| s >= target)
        {
            break;
        }
        if drain_start.elapsed() > Duration::from_secs(600) {
            return Err(format!("{label}: archive did not catch up in 10 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = drain_start.elapsed();
    let (_, _, archived, failed) = sample().await?;
    let r = ArchiveRun {
        tps,
        wal_bytes: end_lsn - start_lsn,
        run: run_time,
        archived: archived - start_archived,
        failed,
        lag_max: lags.iter().copied().max().unwrap_or(0),
        lag_mean: lags.iter().sum::<u64>() as f64 / lags.len().max(1) as f64,
        lag_bytes_max,
        drain,
    };
    progress(&format!("wal: {label}: {r:?}"));
    Ok(r)
}

/// `X/Y` as a number.
fn parse_lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap_or(("0", "0"));
    (u64::from_str_radix(hi, 16).unwrap_or(0) << 32) | u64::from_str_radix(lo, 16).unwrap_or(0)
}

/// The segment number of a 24-digit WAL file name (16 MiB segments).
fn segment_number(name: &str) -> Option<u64> {
    if name.len() != 24 {
        return None;
    }
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    Some(log * 256 + seg)
}

/// Up to `n` consecutive segments from `local`'s basic_archive folder, copied out in order.
fn real_segments(local: &Local, n: usize) -> Result<Vec<PathBuf>> {
    let dir = local.config().archive_dir(&local.config().coordinator);
    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| segment_number(n).is_some())
        .collect();
    names.sort();
    // The last n: the pgbench run's, then the data load's when the run wrote fewer.
    let skip = names.len().saturating_sub(n);
    let out = dir.parent().unwrap().join("segments");
    std::fs::create_dir_all(&out)?;
    names[skip..]
        .iter()
        .map(|name| {
            let to = out.join(name);
            std::fs::copy(dir.join(name), &to)?;
            Ok(to)
        })
        .collect()
}

/// A row of time per segment and MB/s.
fn per_segment_row(label: &str, took: Duration, n: usize) -> Vec<String> {
    let s = took.as_secs_f64();
    vec![
        label.into(),
        millis(s / n as f64),
        format!("{:.0}", n as f64 * SEG as f64 / 1e6 / s),
    ]
}

/// archive-push of every segment, one process after another.
async fn push_all(config: &Path, segments: &[PathBuf], env: &[(&str, String)]) -> Result<Duration> {
    let started = Instant::now();
    for seg in segments {
        let mut cmd = Command::new(binary_of(config)?);
        cmd.arg("--config")
            .arg(config)
            .args(["archive-push", "--node", "coordinator"])
            .arg(seg)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        run(&mut cmd, "archive-push").await?;
    }
    Ok(started.elapsed())
}

/// archive-get of every segment into `pg_wal` (made empty first), one process after another,
/// each restored file removed as PostgreSQL moves it away.
async fn get_all(
    config: &Path,
    segments: &[PathBuf],
    pg_wal: &Path,
    env: &[(&str, String)],
) -> Result<Duration> {
    remove(pg_wal)?;
    std::fs::create_dir_all(pg_wal)?;
    let dest = pg_wal.join("RECOVERYXLOG");
    let bin = binary_of(config)?;
    let started = Instant::now();
    for seg in segments {
        let name = seg.file_name().unwrap().to_string_lossy().to_string();
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(config)
            .args(["archive-get", "--node", "coordinator", &name])
            .arg(&dest)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        run(&mut cmd, "archive-get").await?;
        std::fs::remove_file(&dest)?;
    }
    Ok(started.elapsed())
}

/// The `binary` a config file names.
fn binary_of(config: &Path) -> Result<PathBuf> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(config)?)?;
    Ok(PathBuf::from(json["binary"].as_str().ok_or("no binary")?))
}

/// verify and list timings with each of `o.verify_segments` (20 and 400 by default) segments
/// archived after the backup.
async fn verify_and_list(env: &Env, root: &Path, o: &WalOptions) -> Result<String> {
    let repo_dir = root.join("wal-verify").join("repo");
    let local = Local::create_with(
        env,
        root,
        "wal-verify",
        0,
        1,
        &serde_json::json!({
            "repository": {"type": "posix", "path": repo_dir},
            "binary": o.binary,
        }),
    )
    .await?;
    let c = &local.cluster;
    c.prepare_archiving(true, false).await?;
    c.basebackup(Some("v")).await?;
    let client = local.connect(&local.config().coordinator).await?;
    client.batch_execute("CREATE TABLE w(i int)").await?;
    let mut t = Table::new(&[
        "segments after the backup",
        "verify (median)",
        "min",
        "max",
        "list (median)",
        "min",
        "max",
    ]);
    let mut made = 0;
    for &target in &o.verify_segments {
        progress(&format!("wal: writing {} segments", target - made));
        while made < target {
            client
                .batch_execute("INSERT INTO w VALUES (1); SELECT pg_switch_wal()")
                .await?;
            made += 1;
        }
        let point = format!("rp{target}");
        c.create_restore_point(Some(&point)).await?;
        let (mut verify, mut list) = (Samples::default(), Samples::default());
        for _ in 0..o.reps {
            let started = Instant::now();
            let report = c.verify(Some("v"), Some(&point)).await?;
            verify.push(started.elapsed());
            if !report.ok() {
                return Err(format!("verify at {target} segments failed:\n{report}").into());
            }
            let started = Instant::now();
            let points = c.archived_restore_points().await?;
            list.push(started.elapsed());
            if !points.iter().any(|p| p.name == point) {
                return Err(format!("list at {target} segments misses {point}").into());
            }
        }
        progress(&format!(
            "wal: {target} segments: verify {:.2} s, list {:.2} s",
            verify.median(),
            list.median()
        ));
        t.row(vec![
            target.to_string(),
            secs(verify.median()),
            secs(verify.min()),
            secs(verify.max()),
            secs(list.median()),
            secs(list.min()),
            secs(list.max()),
        ]);
    }
    local.stop().await?;
    remove(&root.join("wal-verify"))?;
    Ok(format!(
        "verify (backup to restore point) and list (every restore point in the archive) with the \
         WAL in a posix repository (zstd-1), one node, segments ended by `pg_switch_wal()`; \
         {} runs each.\n\n{t}\n",
        o.reps
    ))
}

/// moto's S3 server on 127.0.0.1, stopped when dropped.
struct Moto {
    _child: Child,
    port: u16,
}

impl Moto {
    async fn start(o: &WalOptions) -> Result<Moto> {
        if !o.moto_python.is_file() {
            return Err(format!(
                "{} is missing (bash scripts/setup.sh --tests installs moto)",
                o.moto_python.display()
            )
            .into());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new(&o.moto_python)
            .arg(&o.moto_script)
            .args(["--port", &port.to_string(), "--bucket", "wal"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut line = String::new();
        tokio::io::BufReader::new(child.stdout.take().ok_or("no stdout")?)
            .read_line(&mut line)
            .await?;
        if !line.contains("accessKeyId") {
            return Err(format!("moto did not start: {line:?}").into());
        }
        Ok(Moto {
            _child: child,
            port,
        })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The variables the tool reads (moto without `--auth` takes any credentials).
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ]
    }
}

/// A TCP forwarder to `127.0.0.1:<target>` that holds every chunk a client sends for `delay`
/// before passing it on: each request (one chunk for a GET) costs one more round trip.
struct DelayProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    async fn start(target: u16, delay: Duration) -> Result<DelayProxy> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = cr.read(&mut buf).await {
                            tokio::time::sleep(delay).await;
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Ok(DelayProxy { port, task })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
