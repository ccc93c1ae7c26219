//! The repository comparison (`--repository`, issue 10's speed targets), side by side in one run:
//!
//! - base backup into a posix repository with zstd-1, lz4 and none, against
//!   `pg_basebackup --compress=server-zstd:1` of the same nodes into a folder (time), and against
//!   pgBackRest with `compress-type=zst` (stored size);
//! - restore until paused from an S3 repository (moto on 127.0.0.1 with TLS) against the posix
//!   floor (GNU tar + PostgreSQL's replay, `cp` as `restore_command`), the library from the posix
//!   repository, and pgBackRest restoring from the same moto server.
//!
//! Four clusters of the same generated data: `posix` and `s3` (the library, each with its
//! repository), `floor` (plain folders, for tar + replay), `pgbr-s3` (pgBackRest's archiving).
//! Backups: the floor and the library's rows take turns at going first, each after a checkpoint
//! and a `sync`;
//! restores: each round starts one method further along.
//!
//! `--workers 0` (one node) gives the server and the tool a core each on a 2-core machine, as
//! hosts of their own would: the shape that shows the cost of the tool's checks apart from
//! that of sharing two cores among three servers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use citus_recovery::Cluster;
use citus_recovery_benches::stats::{ratio, secs, Samples, Table};
use futures::future::try_join_all;

use crate::local::{progress, remove, run, Env, Leftovers, Local, Result};
use crate::pgbackrest::PgBackRest;
use crate::{raw, settle, timed};

/// The bucket of the library's S3 repository.
pub(crate) const LIB_BUCKET: &str = "citus-recovery";
/// The bucket of pgBackRest's S3 repository.
const PGBR_BUCKET: &str = "pgbackrest";
/// The fake credentials moto accepts (no real secret).
const KEY: &str = "testing";

/// What the comparison needs from the command line.
#[derive(Debug, Clone)]
pub struct RepoArgs {
    /// Workers besides the coordinator.
    pub workers: usize,
    /// pgbench scale of every node.
    pub scale: u32,
    /// Rounds.
    pub reps: usize,
    /// Share of accounts updated between backup and restore point.
    pub update_percent: u32,
    /// The citus-recovery program the servers run as `archive_command`/`restore_command`.
    pub binary: PathBuf,
}

/// A moto S3 server with TLS on 127.0.0.1, stopped when dropped.
pub(crate) struct Moto {
    _child: tokio::process::Child,
    /// The TLS port.
    port: u16,
    /// The CA that signed the server's certificate.
    pub(crate) ca: PathBuf,
}

/// moto's S3 server on a plain port and a TLS proxy in front of it (asyncio), in one process:
/// `store.py TLS_PORT PLAIN_PORT CERT KEY`.
const STORE_PY: &str = r#"import asyncio, logging, ssl, sys
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

tls_port, plain_port, cert, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
logging.getLogger("werkzeug").setLevel(logging.ERROR)
ThreadedMotoServer(ip_address="127.0.0.1", port=plain_port, verbose=False).start()


async def pipe(reader, writer):
    try:
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
    except Exception:
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", plain_port)
    except Exception:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", tls_port, ssl=ctx)
    async with server:
        await server.serve_forever()


asyncio.run(main())
"#;

/// Makes a CA and a server certificate for 127.0.0.1 signed by it (rustls refuses a
/// self-signed CA certificate as the server's own; the address is both an IP name, which rustls
/// checks, and a DNS name, the only kind pgBackRest 2.45 compares its host with), starts `moto_server` with it and creates
/// the buckets.
pub(crate) async fn start_moto(root: &Path) -> Result<Moto> {
    let dir = root.join("objstore");
    std::fs::create_dir_all(&dir)?;
    let script = "set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext.cnf 2>/dev/null
chmod 644 ca.crt";
    let mut cmd = tokio::process::Command::new("sh");
    cmd.args(["-c", script]).current_dir(&dir);
    run(&mut cmd, "openssl (moto's certificate)").await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(dir.join("store.log"))?;
    // moto over plain HTTP behind a TLS terminator in the same Python process: moto's own
    // `--ssl` (werkzeug) served pgBackRest's PUTs 20 s apart and then vanished in three runs,
    // so both clients reach moto through this proxy instead. The file and folder names keep
    // "moto" out of the command line (cleanups elsewhere on the shared machine end test
    // servers by name).
    std::fs::write(dir.join("store.py"), STORE_PY)?;
    let plain = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = tokio::process::Command::new("python3")
        .arg(dir.join("store.py"))
        .args([port.to_string(), plain.to_string()])
        .arg(dir.join("server.crt"))
        .arg(dir.join("server.key"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "python3 (moto's S3 server): cannot start it ({e}); install moto[server] with pip"
            )
        })?;
    let moto = Moto {
        _child: child,
        port,
        ca: dir.join("ca.crt"),
    };
    let started = Instant::now();
    loop {
        let mut curl = moto.curl(&["-o", "/dev/null", &moto.url("")]);
        if run(&mut curl, "moto").await.is_ok() {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "moto did not answer in 30 s; see {}",
                dir.join("store.log").display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for bucket in [LIB_BUCKET, PGBR_BUCKET] {
        run(
            &mut moto.curl(&["-X", "PUT", &moto.url(bucket)]),
            "create bucket",
        )
        .await?;
    }
    progress(&format!("moto with TLS on 127.0.0.1:{port}"));
    Ok(moto)
}

impl Moto {
    /// `https://127.0.0.1:<port>/<path>`; with `""`, the endpoint.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{path}", self.port)
    }

    fn curl(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sSf", "--cacert"]).arg(&self.ca).args(args);
        cmd
    }
}

/// Bytes of every file under `path`.
fn tree_bytes(path: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            tree_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// `pg_basebackup -Ft -X stream -c fast --compress=server-zstd:1` of every node at once into
/// `<dest>/<node>`: its time (until the slowest exits) and the bytes written.
async fn basebackup_zstd(env: &Env, local: &Local, dest: &Path) -> Result<(Duration, u64)> {
    env.mkdir(dest, 0o700)?;
    let started = Instant::now();
    try_join_all(local.nodes().map(|node| async move {
        let mut cmd = env.pg("pg_basebackup");
        cmd.args(["-h", &node.hostname, "-p", &node.port.to_string()])
            .args(["-U", &node.username, "-Ft", "-X", "stream", "-c", "fast"])
            .args([
                "--compress=server-zstd:1",
                "-l",
                "raw",
                "--no-password",
                "-D",
            ])
            .arg(dest.join(&node.name));
        run(&mut cmd, &format!("pg_basebackup zstd of {}", node.name)).await
    }))
    .await?;
    let took = started.elapsed();
    Ok((took, tree_bytes(dest)?))
}

/// Before a timed backup: a checkpoint on every node of `local` (the backup's own fast
/// checkpoint then has nothing left over to write) and a `sync` (no other method's writeback
/// runs into the timed window).
async fn quiesce(local: &Local) -> Result<()> {
    local.checkpoint().await?;
    settle().await
}

/// The floor's backup of `posix` ([`basebackup_zstd`]), after [`quiesce`], into `m`.
async fn floor_backup(env: &Env, posix: &Local, dest: &Path, m: &mut Measured) -> Result<()> {
    quiesce(posix).await?;
    let (took, bytes) = basebackup_zstd(env, posix, dest).await?;
    remove(dest)?;
    m.raw_zstd.push(took);
    m.raw_zstd_bytes = bytes;
    progress(&format!(
        "  pg_basebackup --compress=server-zstd:1: {:.2} s",
        took.as_secs_f64()
    ));
    Ok(())
}

/// Every timing and size of the comparison.
#[derive(Debug, Default)]
struct Measured {
    nodes: usize,
    /// Uncompressed bytes of one backup of all nodes.
    bytes: u64,
    backup: [Samples; 3],
    stored: [u64; 3],
    raw_zstd: Samples,
    raw_zstd_bytes: u64,
    backup_s3: Samples,
    backup_pgbr: Samples,
    pgbr_bytes: u64,
    restore_s3: Samples,
    restore_posix: Samples,
    restore_floor: Samples,
    restore_pgbr: Samples,
}

/// The compressions measured, in the order of `Measured::backup`.
const CODECS: [&str; 3] = ["zstd", "lz4", "none"];

/// Runs the comparison; returns its report (markdown).
pub async fn run_all(args: &RepoArgs, env: &Env, root: &Path) -> Result<String> {
    let started = Instant::now();
    let moto = start_moto(root).await?;
    // Read by the library and inherited by the servers it starts (archive-push/-get). Set
    // before anything else runs on the runtime's threads.
    std::env::set_var("SSL_CERT_FILE", &moto.ca);
    std::env::set_var("AWS_ACCESS_KEY_ID", KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", KEY);
    let binary = args.binary.display().to_string();
    let posix = Local::create_with(
        env,
        root,
        "posix",
        args.workers,
        args.scale,
        &serde_json::json!({
            "repository": {"type": "posix", "path": root.join("posix").join("repo")},
            "compression": "zstd", "binary": binary}),
    )
    .await?;
    let s3 = Local::create_with(
        env,
        root,
        "s3",
        args.workers,
        args.scale,
        &serde_json::json!({
            "repository": {"type": "s3", "bucket": LIB_BUCKET, "prefix": "bench",
                           "region": "us-east-1", "endpoint": moto.url("")},
            "compression": "zstd", "binary": binary}),
    )
    .await?;
    let floor = Local::create(env, root, "floor", args.workers, args.scale).await?;
    for c in [&posix, &s3, &floor] {
        c.cluster.prepare_archiving(true, false).await?;
    }
    let pgbr_local = Local::create(env, root, "pgbr-s3", args.workers, args.scale).await?;
    let pgbr_repo = format!(
        "repo1-type=s3\nrepo1-path=/bench\nrepo1-s3-bucket={PGBR_BUCKET}\nrepo1-s3-endpoint=127.0.0.1\n\
         repo1-storage-port={}\nrepo1-storage-ca-file={}\nrepo1-s3-key={KEY}\nrepo1-s3-key-secret={KEY}\n\
         repo1-s3-region=us-east-1\nrepo1-s3-uri-style=path\ncompress-type=zst\n",
        moto.port,
        moto.ca.display()
    );
    let pgbr = PgBackRest::setup_with(env, pgbr_local, root, &pgbr_repo).await?;

    let views: Vec<Cluster> = CODECS
        .iter()
        .map(|c| {
            let mut config = posix.config().clone();
            config.compression = c.parse().expect("a known compression");
            Ok(Cluster::new(config)?)
        })
        .collect::<Result<_>>()?;
    let mut m = Measured {
        nodes: posix.nodes().count(),
        ..Measured::default()
    };
    for c in [&posix, &s3, &floor, &pgbr.local] {
        c.on_every_node("CHECKPOINT").await?;
    }
    let reps = args.reps.max(1);
    let repo_dir = root.join("posix").join("repo").join("backups");
    let dest = root.join("posix").join("raw-zstd");
    for r in 0..reps {
        progress(&format!("repository: base backup, round {}/{reps}", r + 1));
        // The floor and the library's zstd row take turns at going first, and every backup
        // starts from the same state (see `quiesce`): in a fixed order the first backup of each
        // round paid for what the round before left to write (0.1-0.3 s, whichever went first).
        let floor_first = r % 2 == 1;
        if floor_first {
            floor_backup(env, &posix, &dest, &mut m).await?;
        }
        for (i, codec) in CODECS.iter().enumerate() {
            let name = format!("{codec}-{r}");
            quiesce(&posix).await?;
            let backup = timed(
                &mut m.backup[i],
                &format!("library {codec} into posix"),
                async { Ok(views[i].basebackup(Some(&name)).await?) },
            )
            .await?;
            m.bytes = backup.bytes();
            m.stored[i] = tree_bytes(&repo_dir.join(&name))?;
        }
        if !floor_first {
            floor_backup(env, &posix, &dest, &mut m).await?;
        }
        let name = format!("s3-{r}");
        timed(&mut m.backup_s3, "library zstd into S3", async {
            Ok(s3.cluster.basebackup(Some(&name)).await?)
        })
        .await?;
        timed(
            &mut m.backup_pgbr,
            "pgBackRest zst into S3",
            pgbr.backup(env),
        )
        .await?;
        m.pgbr_bytes = pgbr.stored_bytes(env).await?;
    }
    floor.cluster.basebackup(Some("floor")).await?;

    progress("repository: workload and restore points");
    let mut rows = 0;
    for c in [&posix, &s3, &floor] {
        rows = c.update_workload(args.update_percent).await?;
        c.cluster.create_restore_point(Some("rp")).await?;
    }
    pgbr.local.update_workload(args.update_percent).await?;
    pgbr.restore_point("bench-rp").await?;
    // Every restore starts from servers with nothing left to write (see Local::checkpoint):
    // the first round's too, after the workload.
    for c in [&posix, &s3, &floor, &pgbr.local] {
        c.checkpoint().await?;
    }

    let timeline = floor.cluster.catalog().restore_point("rp").await?.nodes[0].timeline;
    let s3_backup = format!("s3-{}", reps - 1);
    let posix_backup = format!("zstd-{}", reps - 1);
    let mut leftovers = Leftovers::default();
    for r in 0..reps {
        progress(&format!(
            "repository: restore until paused, round {}/{reps}",
            r + 1
        ));
        // Each round starts with the next method, so that no method always runs first after
        // the last round's pgBackRest restore, or always last (what the machine's memory and
        // page cache hold then moves a restore's time by more than the differences measured).
        for i in 0..RESTORE_ORDER.len() {
            match RESTORE_ORDER[(r + i) % RESTORE_ORDER.len()] {
                Restore::S3 => {
                    let (samples, label) = (&mut m.restore_s3, "library from S3");
                    library_restore(&s3, &s3_backup, samples, label, rows, &mut leftovers).await?
                }
                Restore::Posix => {
                    let (samples, label) = (&mut m.restore_posix, "library from posix");
                    library_restore(&posix, &posix_backup, samples, label, rows, &mut leftovers)
                        .await?
                }
                Restore::Floor => {
                    timed(
                        &mut m.restore_floor,
                        "tar + replay (posix floor)",
                        raw::restore(env, &floor, "floor", "rp", timeline),
                    )
                    .await?;
                    floor.check_restored(rows, "restore by hand").await?;
                    raw::finish(&floor).await?;
                    floor.checkpoint().await?;
                    for node in floor.nodes() {
                        leftovers
                            .keep(&floor.config().data_dir(node).with_extension("raw-aside"))?;
                    }
                }
            }
        }
        let aside = timed(
            &mut m.restore_pgbr,
            "pgBackRest from S3",
            pgbr.restore(env, "bench-rp"),
        )
        .await?;
        pgbr.local
            .check_restored(rows, "pgBackRest restore")
            .await?;
        pgbr.local.checkpoint().await?;
        aside.iter().try_for_each(|dir| leftovers.keep(dir))?;
    }
    leftovers.remove_all()?;
    for c in [&posix, &s3, &floor, &pgbr.local] {
        c.stop().await?;
    }
    Ok(report(
        args,
        &m,
        started.elapsed(),
        &crate::pgbackrest::version().await,
    ))
}

/// The restores compared in each round, in the first round's order; each later round starts
/// one further along.
#[derive(Debug, Clone, Copy)]
enum Restore {
    /// The library from the S3 repository.
    S3,
    /// The library from the posix repository.
    Posix,
    /// GNU tar + PostgreSQL's replay.
    Floor,
}

/// The order of the first round.
const RESTORE_ORDER: [Restore; 3] = [Restore::S3, Restore::Posix, Restore::Floor];

/// One timed restore-start of `local` from `backup` to `rp`, checked, then finished; the data
/// directories it moved aside are kept in `leftovers` until the last round.
async fn library_restore(
    local: &Local,
    backup: &str,
    samples: &mut Samples,
    label: &str,
    rows: i64,
    leftovers: &mut Leftovers,
) -> Result<()> {
    let report = timed(samples, label, async {
        Ok(local
            .cluster
            .restore_start(Some(backup), Some("rp"))
            .await?)
    })
    .await?;
    local.check_restored(rows, label).await?;
    local.cluster.restore_finish().await?;
    local.checkpoint().await?;
    for node in report.nodes {
        if let Some(dir) = node.moved_aside_to {
            leftovers.keep(&dir)?;
        }
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / f64::from(1 << 20))
}

fn report(args: &RepoArgs, m: &Measured, took: Duration, pgbr_version: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let command: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(
        out,
        "## Repository comparison\n\n- command: `bash scripts/bench.sh {}` (took {:.0} s)",
        command.join(" "),
        took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- data: {} nodes (coordinator + {} workers), pgbench scale {} on every node; one backup of all nodes is {} MiB uncompressed; {}% of accounts updated before the restore point\n- {pgbr_version}; S3: moto on 127.0.0.1 behind a TLS proxy (asyncio, same process); the library and pgBackRest both go through it\n- every figure: median of {} runs, in seconds (min and max beside it)\n",
        m.nodes, args.workers, args.scale, mib(m.bytes), args.update_percent, args.reps
    );
    let floor = m.raw_zstd.median();
    let mb_s = |s: &Samples| format!("{:.0}", m.bytes as f64 / 1e6 / s.median());
    let mut t = Table::new(&[
        "base backup, all nodes at once",
        "median",
        "min",
        "max",
        "MB/s (uncompressed)",
        "vs pg_basebackup zstd-1",
        "stored MiB",
    ]);
    for (i, label) in [
        "library, zstd-1 into a posix repository",
        "library, lz4 into a posix repository",
        "library, none into a posix repository",
    ]
    .iter()
    .enumerate()
    {
        let s = &m.backup[i];
        t.row(vec![
            label.to_string(),
            secs(s.median()),
            secs(s.min()),
            secs(s.max()),
            mb_s(s),
            ratio(s.median(), floor),
            mib(m.stored[i]),
        ]);
    }
    for (label, s, bytes) in [
        (
            "pg_basebackup --compress=server-zstd:1 into a folder",
            &m.raw_zstd,
            mib(m.raw_zstd_bytes),
        ),
        (
            "library, zstd-1 into S3 (moto, TLS)",
            &m.backup_s3,
            String::new(),
        ),
        (
            "pgBackRest compress-type=zst into S3 (moto, TLS)",
            &m.backup_pgbr,
            mib(m.pgbr_bytes),
        ),
    ] {
        t.row(vec![
            label.to_string(),
            secs(s.median()),
            secs(s.min()),
            secs(s.max()),
            mb_s(s),
            ratio(s.median(), floor),
            bytes,
        ]);
    }
    let _ = writeln!(out, "{t}");
    let floor = m.restore_floor.median();
    let mut t = Table::new(&["restore until paused", "median", "min", "max", "vs floor"]);
    for (label, s) in [
        ("library from the S3 repository (moto, TLS)", &m.restore_s3),
        (
            "library from the posix repository (zstd-1)",
            &m.restore_posix,
        ),
        (
            "tar + PostgreSQL's replay, cp as restore_command (floor)",
            &m.restore_floor,
        ),
        ("pgBackRest from S3 (moto, TLS)", &m.restore_pgbr),
    ] {
        t.row(vec![
            label.to_string(),
            secs(s.median()),
            secs(s.min()),
            secs(s.max()),
            ratio(s.median(), floor),
        ]);
    }
    let _ = writeln!(out, "{t}");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" }.to_string();
    let mut t = Table::new(&["target", "medians", "verdict"]);
    let r = m.raw_zstd.median() / m.backup[0].median();
    t.row(vec![
        "zstd-1 backup throughput at least 0.9x pg_basebackup server-zstd:1".into(),
        format!("{r:.2}x"),
        verdict(r >= 0.9),
    ]);
    let r = m.stored[0] as f64 / m.pgbr_bytes as f64;
    t.row(vec![
        "zstd-1 stored size no larger than pgBackRest zst".into(),
        format!("{r:.2}x"),
        verdict(r <= 1.0),
    ]);
    let r = m.restore_s3.median() / m.restore_floor.median();
    t.row(vec![
        "restore from S3 within 1.3x of tar + replay".into(),
        format!("{r:.2}x"),
        verdict(r <= 1.3),
    ]);
    let r = m.restore_pgbr.median() / m.restore_s3.median();
    t.row(vec![
        "restore from S3 faster than pgBackRest from S3 (its time / the library's)".into(),
        format!("{r:.2}x"),
        verdict(r > 1.0),
    ]);
    let _ = writeln!(out, "{t}");
    out
}
