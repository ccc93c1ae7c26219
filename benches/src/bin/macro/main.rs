//! `citus-recovery-bench`: the whole-cluster macro benchmark.
//!
//! It builds local clusters of generated data (pgbench tables on every node) in a temporary
//! folder and measures, in the same run and on the same data:
//!
//! - whole-cluster base backup: the library (all nodes at once), the library one node after
//!   another (concurrency 1, the old scripts' way), raw `pg_basebackup` of every node at once (the
//!   floor), pgBackRest (one stanza per node, all at once, compression off, on a second cluster of
//!   the same data), and `dd` writing as many bytes with `fdatasync` (the disk's limit);
//! - restore until paused at a restore point: the library, one node after another, the floor
//!   (GNU tar extraction + PostgreSQL's own replay, every node at once), pgBackRest;
//! - restore point and restore-finish against the same SQL done by hand;
//! - scaling at several worker counts with equal data per node, and the library's own overhead per
//!   command (its wall time minus the PostgreSQL work it waits on, measured as the floor);
//! - with `--ssh` only, nodes on the namespace topology reached over SSH against local access
//!   (`ssh.rs`).
//!
//! It prints a markdown report (medians over `--reps` runs, ratios, targets) on stdout; progress
//! goes to stderr. Run it with `bash scripts/bench.sh`.

mod local;
mod pgbackrest;
mod raw;
mod repo;
mod ssh;
mod under_load;
mod wal;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use citus_recovery_benches::stats::{millis, paired_difference, ratio, secs, Samples, Table};
use clap::Parser;

use local::{progress, remove, run, Env, Local, Result};
use pgbackrest::PgBackRest;

/// Whole-cluster backup and restore, against pg_basebackup, pgBackRest and dd.
#[derive(Debug, Parser)]
#[command(name = "citus-recovery-bench")]
struct Args {
    /// Workers of the main comparison (besides the coordinator).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// pgbench scale of every node in the main comparison (1 = about 15 MiB).
    #[arg(long, default_value_t = 20)]
    scale: u32,
    /// Repetitions of every measurement; the report shows medians.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Share of each node's accounts updated between backup and restore point (the WAL to replay).
    #[arg(long, default_value_t = 10)]
    update_percent: u32,
    /// Worker counts of the scaling runs (equal data per node).
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    scaling: Vec<usize>,
    /// pgbench scale of every node in the scaling runs.
    #[arg(long, default_value_t = 5)]
    scaling_scale: u32,
    /// Repetitions in the scaling runs (more than in the main comparison: the overheads they
    /// measure are small differences of larger times).
    #[arg(long, default_value_t = 5)]
    scaling_reps: usize,
    /// Skip the scaling runs.
    #[arg(long)]
    no_scaling: bool,
    /// Skip pgBackRest.
    #[arg(long)]
    no_pgbackrest: bool,
    /// Where the temporary folder goes (default: the system's temporary folder).
    #[arg(long)]
    folder: Option<PathBuf>,
    /// Keep the temporary folder.
    #[arg(long)]
    keep: bool,
    /// Also log every step the library runs.
    #[arg(long)]
    verbose: bool,
    /// Also measure WAL through the tool: archiving under pgbench (basic_archive against
    /// archive-push), archive-push/archive-get per segment (posix, S3 with and without
    /// prefetch), verify and list at 20 and 400 segments.
    #[arg(long)]
    wal: bool,
    /// Only the WAL measurements (implies --wal).
    #[arg(long)]
    wal_only: bool,
    /// The citus-recovery tool the servers run (default: beside this program).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// pgbench duration of each archiving run, in seconds.
    #[arg(long, default_value_t = 25)]
    pgbench_seconds: u64,
    /// pgbench clients of the archiving runs.
    #[arg(long, default_value_t = 4)]
    wal_clients: u32,
    /// pgbench scale of the archiving runs.
    #[arg(long, default_value_t = 10)]
    wal_scale: u32,
    /// Segments in each archive-push/archive-get timing.
    #[arg(long, default_value_t = 20)]
    get_segments: usize,
    /// Segments archived after the backup in the verify and list rows.
    #[arg(long, value_delimiter = ',', default_value = "20,400")]
    verify_segments: Vec<usize>,
    /// Delay the second pair of archive-get rows adds to every S3 request (a round trip to a
    /// real object store), in ms.
    #[arg(long, default_value_t = 25)]
    s3_delay_ms: u64,
    /// archiveGetQueue of the prefetching archive-get row.
    #[arg(long, default_value_t = 8)]
    archive_get_queue: usize,
    /// Python with moto for the S3 rows (default: .venv-moto/bin/python).
    #[arg(long)]
    moto_python: Option<PathBuf>,
    /// Only the restore-points-under-load run: distributed 2PC writes on a Citus cluster of
    /// --workers workers, without and with a restore point every --every seconds.
    #[arg(long)]
    under_load: bool,
    /// Seconds of each under-load run.
    #[arg(long, default_value_t = 25)]
    load_seconds: u64,
    /// Seconds between restore points in the under-load run.
    #[arg(long, default_value_t = 3)]
    every: u64,
    /// Concurrent writers in the under-load run.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Run only the repository comparison (issue 10): backups into a posix repository (zstd-1,
    /// lz4, none) against `pg_basebackup --compress=server-zstd:1` and pgBackRest's zst size,
    /// restores from S3 (moto with TLS) against tar + replay and pgBackRest from the same server.
    #[arg(long)]
    repository: bool,
    /// Run only the remote-nodes comparison (issue 11): whole-cluster backup and restore over
    /// SSH on the namespace topology (scripts/netns.sh) against the same over local access,
    /// SSH's cost per command and per byte, and scaling (--ssh-scaling) against the slowest
    /// node. Needs root and openssh-server; uses 10.231.x.0/24 only, torn down after.
    #[arg(long)]
    ssh: bool,
    /// Worker counts of the SSH scaling runs (--scaling-scale, --scaling-reps apply).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    ssh_scaling: Vec<usize>,
    /// Also restore in the SSH scaling runs.
    #[arg(long)]
    ssh_scaling_restore: bool,
    /// Repetitions of each per-command timing of the SSH comparison.
    #[arg(long, default_value_t = 20)]
    command_reps: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = if args.verbose {
        "citus_recovery=info"
    } else {
        "citus_recovery=warn"
    };
    tracing_subscriber::fmt()
        // CITUS_RECOVERY_LOG, as for the tool, e.g. `citus_recovery::repository=debug` for
        // every object store request with its time.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CITUS_RECOVERY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(bench(&args)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up the folder, runs everything, and always stops every server it started.
async fn bench(args: &Args) -> Result<String> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("citus-recovery-bench-");
    let folder = match &args.folder {
        Some(dir) => builder.tempdir_in(dir)?,
        None => builder.tempdir()?,
    };
    // The servers run as `postgres`, which must be able to enter the folder.
    std::fs::set_permissions(folder.path(), std::fs::Permissions::from_mode(0o755))?;
    progress(&format!("benchmark folder: {}", folder.path().display()));
    let env = Env::new(folder.path())?;
    let work = async {
        if args.under_load {
            under_load::measure(
                folder.path(),
                args.workers,
                args.writers,
                args.load_seconds,
                args.every.max(1),
            )
            .await
        } else {
            measure_all(args, &env, folder.path()).await
        }
    };
    // On Ctrl-C the work is dropped, and with it what it holds (the SSH run's topology, which
    // its Drop tears down); the local servers are stopped below either way.
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted (Ctrl-C)".into()),
    };
    stop_every_server(&env, folder.path()).await;
    if args.keep || result.is_err() {
        eprintln!("kept: {}", folder.keep().display());
    }
    result
}

/// The main comparison, then the scaling runs; returns the report.
async fn measure_all(args: &Args, env: &Env, root: &Path) -> Result<String> {
    if args.repository {
        let binary = match &args.binary {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("citus-recovery"),
        };
        let repo_args = repo::RepoArgs {
            workers: args.workers,
            scale: args.scale,
            reps: args.reps,
            update_percent: args.update_percent,
            binary,
        };
        return repo::run_all(&repo_args, env, root).await;
    }
    if args.ssh {
        let binary = match &args.binary {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("citus-recovery"),
        };
        let ssh_args = ssh::SshArgs {
            workers: args.workers,
            scale: args.scale,
            reps: args.reps,
            update_percent: args.update_percent,
            binary,
            scaling: if args.no_scaling {
                Vec::new()
            } else {
                args.ssh_scaling.clone()
            },
            scaling_scale: args.scaling_scale,
            scaling_reps: args.scaling_reps,
            scaling_restore: args.ssh_scaling_restore,
            command_reps: args.command_reps,
        };
        return ssh::run_all(&ssh_args, env, root).await;
    }
    let started = Instant::now();
    let load_before = load_average();
    let wal_section = || async {
        let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("no workspace")?
            .to_path_buf();
        let binary = match &args.binary {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("citus-recovery"),
        };
        let o = wal::WalOptions {
            binary: std::path::absolute(binary)?,
            pgbench_seconds: args.pgbench_seconds,
            clients: args.wal_clients,
            scale: args.wal_scale,
            reps: args.reps.max(1),
            get_segments: args.get_segments,
            queue: args.archive_get_queue,
            s3_delay_ms: args.s3_delay_ms,
            verify_segments: args.verify_segments.clone(),
            moto_python: args
                .moto_python
                .clone()
                .unwrap_or_else(|| repo_root.join(".venv-moto/bin/python")),
            moto_script: repo_root.join("scripts/moto-s3.py"),
        };
        wal::measure(env, root, &o).await
    };
    if args.wal_only {
        let section = wal_section().await?;
        let command: Vec<String> = std::env::args().skip(1).collect();
        let mut out = format!(
            "## Run\n\n- command: `bash scripts/bench.sh {}` (took {:.0} s)\n",
            command.join(" "),
            started.elapsed().as_secs_f64()
        );
        for line in machine().await {
            out.push_str(&format!("- {line}\n"));
        }
        out.push_str(&format!(
            "- load average (1, 5, 15 min) at the start: {load_before}; at the end: {}\n\n{section}",
            load_average()
        ));
        return Ok(out);
    }
    let pgbackrest_missing = if args.no_pgbackrest {
        Some("skipped (--no-pgbackrest)".to_string())
    } else {
        pgbackrest::unavailable().await
    };
    let opts = Options {
        reps: args.reps.max(1),
        update_percent: args.update_percent,
        full: true,
    };

    let lib = Local::create(env, root, "library", args.workers, args.scale).await?;
    lib.cluster.prepare_archiving(true, false).await?;
    let pgbr = match pgbackrest_missing {
        None => {
            let local = Local::create(env, root, "pgbackrest", args.workers, args.scale).await?;
            Some(PgBackRest::setup(env, local, root).await?)
        }
        Some(ref why) => {
            progress(&format!("pgBackRest rows left out: {why}"));
            None
        }
    };
    let main = measure(env, root, &lib, pgbr.as_ref(), &opts).await?;
    lib.stop().await?;
    remove(&root.join("library"))?;
    if let Some(p) = &pgbr {
        p.local.stop().await?;
        remove(&root.join("pgbackrest"))?;
    }

    let mut scaling = Vec::new();
    if !args.no_scaling {
        for &workers in &args.scaling {
            let name = format!("scaling-{workers}");
            let local = Local::create(env, root, &name, workers, args.scaling_scale).await?;
            local.cluster.prepare_archiving(true, false).await?;
            let opts = Options {
                full: false,
                reps: args.scaling_reps.max(1),
                ..opts
            };
            let m = measure(env, root, &local, None, &opts).await?;
            local.stop().await?;
            remove(&root.join(&name))?;
            scaling.push((workers, m));
        }
    }

    let mut machine = machine().await;
    machine.push(format!(
        "load average (1, 5, 15 min) at the start: {load_before}; at the end: {} (other work on the machine shows here)",
        load_average()
    ));
    let pgbr_version = if pgbr.is_some() {
        pgbackrest::version().await
    } else {
        String::new()
    };
    let mut out = report(
        args,
        &machine,
        &pgbr_version,
        pgbackrest_missing.as_deref(),
        &main,
        &scaling,
        started.elapsed(),
    );
    if args.wal {
        out.push('\n');
        out.push_str(&wal_section().await?);
    }
    Ok(out)
}

/// What to measure on one cluster.
#[derive(Debug, Clone, Copy)]
struct Options {
    reps: usize,
    update_percent: u32,
    /// Also one node after another and `dd` (the main comparison); the scaling runs skip them.
    full: bool,
}

/// The library's ways of restoring that are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// All nodes at once (the default).
    All,
    /// One node after another.
    Serial,
    /// All nodes at once, polling every 10 ms.
    FastPoll,
}

/// Every timing of one cluster.
#[derive(Debug, Default)]
struct Measured {
    nodes: usize,
    bytes: u64,
    backup_lib: Samples,
    backup_serial: Samples,
    backup_fast_poll: Samples,
    backup_raw_files: Samples,
    backup_raw_archived: Samples,
    backup_pgbr: Samples,
    dd: Samples,
    workload: Duration,
    plan_lib: Samples,
    point_lib: Samples,
    point_raw: Samples,
    restore_lib: Samples,
    restore_serial: Samples,
    restore_fast_poll: Samples,
    extract_lib: Samples,
    extract_tar: Samples,
    restore_raw: Samples,
    restore_pgbr: Samples,
    finish_lib: Samples,
    finish_raw: Samples,
}

/// Times `work`, adds the timing to `samples`, prints a progress line.
async fn timed<T>(
    samples: &mut Samples,
    label: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    settle().await?;
    let started = Instant::now();
    let out = work.await?;
    let took = started.elapsed();
    samples.push(took);
    progress(&format!("  {label}: {:.2} s", took.as_secs_f64()));
    Ok(out)
}

/// Writes dirty pages out before a measurement (`sync`), so that one measurement's writes and
/// the cleanup after it are not paid for by the next.
async fn settle() -> Result<()> {
    run(&mut tokio::process::Command::new("sync"), "sync").await?;
    Ok(())
}

/// Backups, then a workload and restore points, then restores, `reps` times each, the methods
/// taking turns so drifts in the machine's speed hit them alike.
async fn measure(
    env: &Env,
    root: &Path,
    lib: &Local,
    pgbr: Option<&PgBackRest>,
    opts: &Options,
) -> Result<Measured> {
    let mut m = Measured {
        nodes: lib.nodes().count(),
        ..Measured::default()
    };
    let reps = opts.reps;
    lib.on_every_node("CHECKPOINT").await?;
    if let Some(p) = pgbr {
        p.local.on_every_node("CHECKPOINT").await?;
    }
    let raw_dir = root.join(&lib.name).join("raw-backup");
    for r in 0..reps {
        progress(&format!(
            "{}: base backup, round {}/{reps}",
            lib.name,
            r + 1
        ));
        let name = format!("all-{r}");
        timed(&mut m.plan_lib, "library basebackup --dry-run", async {
            Ok(lib.cluster.plan_basebackup(Some(&name)).await?)
        })
        .await?;
        let backup = timed(&mut m.backup_lib, "library, all nodes at once", async {
            Ok(lib.cluster.basebackup(Some(&name)).await?)
        })
        .await?;
        m.bytes = backup.bytes();
        if r > 0 {
            // Only the last backup is restored; the others only take space.
            remove(&lib.config().backup_dir(&format!("all-{}", r - 1)))?;
        }
        if opts.full {
            let name = format!("fast-{r}");
            timed(
                &mut m.backup_fast_poll,
                "library, all nodes at once, polling every 10 ms",
                async { Ok(lib.fast_poll.basebackup(Some(&name)).await?) },
            )
            .await?;
            remove(&lib.config().backup_dir(&name))?;
            let name = format!("serial-{r}");
            timed(
                &mut m.backup_serial,
                "library, one node after another",
                async { Ok(lib.serial.basebackup(Some(&name)).await?) },
            )
            .await?;
            remove(&lib.config().backup_dir(&name))?;
        }
        settle().await?;
        let raw = raw::basebackup(env, lib, &raw_dir).await?;
        remove(&raw_dir)?;
        m.backup_raw_files.push(raw.files);
        m.backup_raw_archived.push(raw.archived);
        progress(&format!(
            "  raw pg_basebackup, all nodes at once: {:.2} s ({:.2} s with the last segment archived)",
            raw.files.as_secs_f64(),
            raw.archived.as_secs_f64()
        ));
        if let Some(p) = pgbr {
            timed(
                &mut m.backup_pgbr,
                "pgBackRest, all stanzas at once",
                p.backup(env),
            )
            .await?;
        }
        if opts.full {
            timed(
                &mut m.dd,
                &format!("dd of {} MiB with fdatasync", m.bytes >> 20),
                raw::dd(root, m.bytes),
            )
            .await?;
        }
    }

    progress(&format!(
        "{}: updating {}% of every node's accounts",
        lib.name, opts.update_percent
    ));
    let started = Instant::now();
    let rows = lib.update_workload(opts.update_percent).await?;
    m.workload = started.elapsed();
    if let Some(p) = pgbr {
        p.local.update_workload(opts.update_percent).await?;
        p.restore_point("bench-rp").await?;
    }
    for r in 0..reps {
        progress(&format!(
            "{}: restore point, round {}/{reps}",
            lib.name,
            r + 1
        ));
        let name = format!("rp-{r}");
        timed(&mut m.point_lib, "library", async {
            Ok(lib.cluster.create_restore_point(Some(&name)).await?)
        })
        .await?;
        timed(
            &mut m.point_raw,
            "by hand",
            raw::restore_point(lib, &format!("raw-rp-{r}")),
        )
        .await?;
    }

    let backup = format!("all-{}", reps - 1);
    let target = format!("rp-{}", reps - 1);
    let timeline = lib.cluster.catalog().restore_point(&target).await?.nodes[0].timeline;
    for r in 0..reps {
        progress(&format!(
            "{}: restore until paused, round {}/{reps}",
            lib.name,
            r + 1
        ));
        let variants: &[Variant] = if opts.full {
            &[Variant::All, Variant::Serial, Variant::FastPoll]
        } else {
            &[Variant::All]
        };
        for &variant in variants {
            let (cluster, samples, label) = match variant {
                Variant::All => (
                    &lib.cluster,
                    &mut m.restore_lib,
                    "library, all nodes at once",
                ),
                Variant::Serial => (
                    &lib.serial,
                    &mut m.restore_serial,
                    "library, one node after another",
                ),
                Variant::FastPoll => (
                    &lib.fast_poll,
                    &mut m.restore_fast_poll,
                    "library, all nodes at once, polling every 10 ms",
                ),
            };
            let report = timed(samples, label, async {
                Ok(cluster.restore_start(Some(&backup), Some(&target)).await?)
            })
            .await?;
            lib.check_restored(rows, label).await?;
            let mut unused = Samples::default();
            let finish = if variant == Variant::All {
                &mut m.finish_lib
            } else {
                &mut unused
            };
            timed(finish, "library restore-finish", async {
                Ok(lib.cluster.restore_finish().await?)
            })
            .await?;
            for node in report.nodes {
                if let Some(dir) = node.moved_aside_to {
                    remove(&dir)?;
                }
            }
        }
        if opts.full {
            let dest = root.join(&lib.name).join("extract-test");
            timed(
                &mut m.extract_lib,
                "extraction only, library",
                raw::extract_library(env, lib, &backup, &dest),
            )
            .await?;
            remove(&dest)?;
            timed(
                &mut m.extract_tar,
                "extraction only, GNU tar",
                raw::extract_tar(env, lib, &backup, &dest),
            )
            .await?;
            remove(&dest)?;
        }
        timed(
            &mut m.restore_raw,
            "by hand: tar, then PostgreSQL's replay, all nodes at once",
            raw::restore(env, lib, &backup, &target, timeline),
        )
        .await?;
        lib.check_restored(rows, "restore by hand").await?;
        timed(
            &mut m.finish_raw,
            "restore-finish by hand",
            raw::finish(lib),
        )
        .await?;
        for node in lib.nodes() {
            remove(&lib.config().data_dir(node).with_extension("raw-aside"))?;
        }
        if let Some(p) = pgbr {
            let aside = timed(
                &mut m.restore_pgbr,
                "pgBackRest, all stanzas at once",
                p.restore(env, "bench-rp"),
            )
            .await?;
            p.local.check_restored(rows, "pgBackRest restore").await?;
            aside.iter().try_for_each(|dir| remove(dir))?;
        }
    }
    Ok(m)
}

/// Stops every server under `root` that still runs (after an error, or as a last resort).
async fn stop_every_server(env: &Env, root: &Path) {
    let Ok(clusters) = std::fs::read_dir(root) else {
        return;
    };
    for cluster in clusters.flatten() {
        let Ok(nodes) = std::fs::read_dir(cluster.path().join("cluster")) else {
            continue;
        };
        for node in nodes.flatten() {
            if node.path().join("postmaster.pid").exists() {
                let mut cmd = env.pg("pg_ctl");
                cmd.arg("stop")
                    .arg("-D")
                    .arg(node.path())
                    .args(["-m", "fast"]);
                if let Err(e) = run(&mut cmd, "pg_ctl stop").await {
                    eprintln!("warning: {e}");
                }
            }
        }
    }
}

/// `/proc/loadavg`'s first three figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The machine, in one line each.
async fn machine() -> Vec<String> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kib| format!("{:.0} GiB", kib as f64 / (1 << 20) as f64))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let output = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let pg = output("pg_config", &["--version"]);
    let kernel = output("uname", &["-r"]);
    let disk = output("df", &["-h", "--output=source,fstype,size,avail", "/tmp"]);
    vec![
        format!("CPU: {cpu}, {cores} cores; memory {mem}; kernel {kernel}"),
        format!("PostgreSQL: {pg}"),
        format!(
            "disk (temporary folder): {}",
            disk.lines()
                .nth(1)
                .unwrap_or("?")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ]
}

/// A ratio target: what it says, the slower and the faster samples, and the test of the ratio.
type RatioTarget<'a> = (String, &'a Samples, &'a Samples, fn(f64) -> bool);

/// A row of median, min and max, and the ratio to a reference median.
fn row(label: &str, s: &Samples, reference: f64) -> Vec<String> {
    vec![
        label.to_string(),
        secs(s.median()),
        secs(s.min()),
        secs(s.max()),
        ratio(s.median(), reference),
    ]
}

/// The library's overhead per command: the median over rounds of its time minus the floor's
/// time in the same round (the two run back to back).
fn overheads(m: &Measured) -> [(&'static str, f64); 4] {
    [
        (
            "basebackup",
            paired_difference(&m.backup_lib, &m.backup_raw_archived),
        ),
        (
            "restore-point",
            paired_difference(&m.point_lib, &m.point_raw),
        ),
        (
            "restore-start",
            paired_difference(&m.restore_lib, &m.restore_raw),
        ),
        (
            "restore-finish",
            paired_difference(&m.finish_lib, &m.finish_raw),
        ),
    ]
}

fn report(
    args: &Args,
    machine: &[String],
    pgbr_version: &str,
    pgbr_missing: Option<&str>,
    m: &Measured,
    scaling: &[(usize, Measured)],
    took: Duration,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let command: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(out, "## Run\n");
    let _ = writeln!(
        out,
        "- command: `{}` (took {:.0} s)",
        std::iter::once("bash scripts/bench.sh".to_string())
            .chain(command)
            .collect::<Vec<_>>()
            .join(" "),
        took.as_secs_f64()
    );
    for line in machine {
        let _ = writeln!(out, "- {line}");
    }
    let _ = match pgbr_missing {
        None => writeln!(out, "- pgBackRest: {pgbr_version}"),
        Some(why) => writeln!(out, "- pgBackRest: left out: {why}"),
    };
    let _ = writeln!(
        out,
        "- data: {} nodes (coordinator + {} workers), plain PostgreSQL, pgbench scale {} on every node; backup {} MiB in total; between backup and restore point {}% of every node's accounts updated (took {:.1} s)",
        m.nodes,
        args.workers,
        args.scale,
        m.bytes >> 20,
        args.update_percent,
        m.workload.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- every figure: median of {} runs, in seconds (min and max beside it)\n",
        args.reps
    );

    let floor = m.backup_raw_files.median();
    let mut t = Table::new(&[
        "whole-cluster base backup",
        "median",
        "min",
        "max",
        "vs floor",
    ]);
    t.row(row("library, all nodes at once", &m.backup_lib, floor));
    t.row(row(
        "library, all nodes at once, polling every 10 ms",
        &m.backup_fast_poll,
        floor,
    ));
    t.row(row(
        "library, one node after another",
        &m.backup_serial,
        floor,
    ));
    t.row(row(
        "raw pg_basebackup, all nodes at once (floor)",
        &m.backup_raw_files,
        floor,
    ));
    t.row(row(
        "raw pg_basebackup + last WAL segment archived",
        &m.backup_raw_archived,
        floor,
    ));
    if pgbr_missing.is_none() {
        t.row(row(
            "pgBackRest, all stanzas at once",
            &m.backup_pgbr,
            floor,
        ));
    }
    t.row(row(
        &format!("dd of the same {} MiB, fdatasync", m.bytes >> 20),
        &m.dd,
        floor,
    ));
    let _ = writeln!(out, "{t}");

    let floor = m.restore_raw.median();
    let mut t = Table::new(&["restore until paused", "median", "min", "max", "vs floor"]);
    t.row(row("library, all nodes at once", &m.restore_lib, floor));
    t.row(row(
        "library, all nodes at once, polling every 10 ms",
        &m.restore_fast_poll,
        floor,
    ));
    t.row(row(
        "library, one node after another",
        &m.restore_serial,
        floor,
    ));
    t.row(row(
        "tar + PostgreSQL's replay, all nodes at once (floor)",
        &m.restore_raw,
        floor,
    ));
    if pgbr_missing.is_none() {
        t.row(row(
            "pgBackRest, all stanzas at once",
            &m.restore_pgbr,
            floor,
        ));
    }
    let _ = writeln!(out, "{t}");

    let mut t = Table::new(&[
        "extraction only, all nodes at once",
        "median",
        "min",
        "max",
        "vs GNU tar",
    ]);
    let tar = m.extract_tar.median();
    t.row(row(
        "library (tar crate, owner set per entry)",
        &m.extract_lib,
        tar,
    ));
    t.row(row("GNU tar as the servers' user", &m.extract_tar, tar));
    let _ = writeln!(out, "{t}");

    let mut t = Table::new(&["small commands", "median", "min", "max", "vs by hand"]);
    t.row(row(
        "library basebackup --dry-run (observe every node, plan)",
        &m.plan_lib,
        f64::NAN,
    ));
    t.row(row(
        "library restore-point",
        &m.point_lib,
        m.point_raw.median(),
    ));
    t.row(row(
        "by hand: pg_create_restore_point + switch + archived",
        &m.point_raw,
        m.point_raw.median(),
    ));
    t.row(row(
        "library restore-finish",
        &m.finish_lib,
        m.finish_raw.median(),
    ));
    t.row(row(
        "by hand: pg_wal_replay_resume + out of recovery",
        &m.finish_raw,
        m.finish_raw.median(),
    ));
    let _ = writeln!(out, "{t}");
    let _ = writeln!(
        out,
        "Library overhead per command on this cluster (its time minus the floor's in the same round, median): {}.\n",
        overheads(m)
            .iter()
            .map(|(cmd, o)| format!("{cmd} {}", millis(*o)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    if !scaling.is_empty() {
        let _ = writeln!(
            out,
            "Scaling, pgbench scale {} on every node, {} runs; overhead = the library's time minus the floor's in the same round (run back to back), median over rounds; the floor is the PostgreSQL work the library waits on: pg_basebackup with its last segment archived, tar + replay, the SQL by hand.\n",
            args.scaling_scale, args.scaling_reps
        );
        let mut t = Table::new(&[
            "workers",
            "nodes",
            "MiB",
            "backup",
            "floor",
            "overhead",
            "restore",
            "floor",
            "overhead",
            "restore-point overhead",
            "restore-finish overhead",
        ]);
        for (workers, s) in scaling {
            let o = overheads(s);
            t.row(vec![
                workers.to_string(),
                s.nodes.to_string(),
                (s.bytes >> 20).to_string(),
                secs(s.backup_lib.median()),
                secs(s.backup_raw_archived.median()),
                millis(o[0].1),
                secs(s.restore_lib.median()),
                secs(s.restore_raw.median()),
                millis(o[2].1),
                millis(o[1].1),
                millis(o[3].1),
            ]);
        }
        let _ = writeln!(out, "{t}");
    }

    let mut t = Table::new(&["target", "medians", "best runs (minimums)", "verdict"]);
    let verdict = |value: f64, ok: bool| {
        if !value.is_finite() {
            "n/a"
        } else if ok {
            "met"
        } else {
            "MISSED"
        }
        .to_string()
    };
    // Ratio targets: slow / fast, judged on medians; the minimums show what the machine's
    // quiet moments allow (other load only ever adds time).
    let ratios: [RatioTarget; 6] = [
        (
            "backup within 1.1x of raw parallel pg_basebackup".into(),
            &m.backup_lib,
            &m.backup_raw_files,
            |r| r <= 1.1,
        ),
        (
            format!(
                "backup at least 1.4x faster than one node after another ({} nodes)",
                m.nodes
            ),
            &m.backup_serial,
            &m.backup_lib,
            |r| r >= 1.4,
        ),
        (
            "backup faster than pgBackRest (pgBackRest's time / the library's)".into(),
            &m.backup_pgbr,
            &m.backup_lib,
            |r| r > 1.0,
        ),
        (
            "restore within 1.15x of parallel extraction + replay".into(),
            &m.restore_lib,
            &m.restore_raw,
            |r| r <= 1.15,
        ),
        (
            "restore at least 2x faster than one node after another".into(),
            &m.restore_serial,
            &m.restore_lib,
            |r| r >= 2.0,
        ),
        (
            "restore faster than pgBackRest (pgBackRest's time / the library's)".into(),
            &m.restore_pgbr,
            &m.restore_lib,
            |r| r > 1.0,
        ),
    ];
    for (what, a, b, ok) in ratios {
        let r = a.median() / b.median();
        t.row(vec![
            what,
            ratio(a.median(), b.median()),
            ratio(a.min(), b.min()),
            verdict(r, ok(r)),
        ]);
    }
    for (workers, limit) in [(2, 0.2), (8, 0.5)] {
        if let Some((_, s)) = scaling.iter().find(|(w, _)| *w == workers) {
            let (cmd, worst) = overheads(s)
                .into_iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("four commands");
            let best = [
                s.backup_lib.min() - s.backup_raw_archived.min(),
                s.point_lib.min() - s.point_raw.min(),
                s.restore_lib.min() - s.restore_raw.min(),
                s.finish_lib.min() - s.finish_raw.min(),
            ]
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max);
            t.row(vec![
                format!(
                    "overhead per command under {:.0} ms at {workers} workers (worst command)",
                    limit * 1000.0
                ),
                format!("{} ({cmd})", millis(worst)),
                millis(best),
                verdict(worst, worst < limit),
            ]);
        }
    }
    let _ = writeln!(out, "{t}");
    out
}
