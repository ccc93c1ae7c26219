//! The WAL archive in S3 (moto on loopback) when things go wrong, with real servers: the S3
//! server gone while a node writes WAL, a damaged WAL object, wrong credentials; and restore
//! through archive-get's prefetch spool.
//!
//! Its own test binary: the servers inherit the AWS_* variables (moto without `--auth` takes
//! any) and `CITUS_RECOVERY_LOG` from this process, set once to the same values by every test.

mod common;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;
#[path = "common/s3.rs"]
mod s3;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use citus_recovery::repository::{Key, Repository};
use common::TestCluster;
use proxy::Proxy;
use repository_cycle::{with_repository, BIN};

/// Sets the variables the tool and the servers read, the same for every test.
fn environment() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_SESSION_TOKEN");
        // archive-get says at debug level when a segment came from the spool.
        std::env::set_var("CITUS_RECOVERY_LOG", "citus_recovery=debug");
    });
}

/// A one-node (coordinator only) cluster whose WAL goes to `endpoint`'s bucket `wal` under
/// `prefix`, prefetching `queue` segments; archiving on, backup `first` taken.
async fn archiving_cluster(endpoint: &str, prefix: &str, queue: usize) -> TestCluster {
    let repository = serde_json::json!({
        "type": "s3", "bucket": "wal", "prefix": prefix,
        "region": "us-east-1", "endpoint": endpoint, "allowHttp": true
    });
    archiving_cluster_on(|_| repository, queue).await
}

/// The same with the repository `repository` returns for the test's folder.
async fn archiving_cluster_on(
    repository: impl FnOnce(&Path) -> serde_json::Value,
    queue: usize,
) -> TestCluster {
    let mut t = TestCluster::new(0);
    let file = t.config_file();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    json["archiveGetQueue"] = queue.into();
    std::fs::write(&file, json.to_string()).unwrap();
    let repository = repository(t.dir());
    with_repository(&mut t, repository);
    let c = t.cluster.clone();
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    c.basebackup(Some("first")).await.expect("base backup");
    t.sql("coordinator", "CREATE TABLE xx(id int)")
        .await
        .unwrap();
    t
}

/// Inserts `rows` rows and ends the segment, `segments` times: that many WAL files to archive.
async fn write_segments(t: &TestCluster, segments: usize, rows: i64) {
    for _ in 0..segments {
        t.sql(
            "coordinator",
            &format!(
                "INSERT INTO xx SELECT g FROM generate_series(1, {rows}) g; SELECT pg_switch_wal()"
            ),
        )
        .await
        .unwrap();
    }
}

/// `pg_stat_archiver`'s failed_count.
async fn failed_count(t: &TestCluster) -> i64 {
    t.sql("coordinator", "SELECT failed_count FROM pg_stat_archiver")
        .await
        .unwrap()[0]
        .parse()
        .unwrap()
}

/// The segment numbers (log id * 256 + segment) of timeline 1 in the repository.
async fn archived_segments(repo: &dyn Repository) -> Vec<u64> {
    let listed = repo
        .list(&Key::new("wal/coordinator").unwrap())
        .await
        .unwrap();
    let mut segs: Vec<u64> = listed
        .iter()
        .filter_map(|o| {
            let name = o.key.as_str().rsplit('/').next()?.strip_suffix(".zst")?;
            (name.len() == 24 && name.starts_with("00000001")).then(|| {
                u64::from_str_radix(&name[8..16], 16).unwrap() * 256
                    + u64::from_str_radix(&name[16..24], 16).unwrap()
            })
        })
        .collect();
    segs.sort();
    segs
}

/// The segment number of the WAL file now being written.
async fn current_segment(t: &TestCluster) -> u64 {
    let name = &t
        .sql(
            "coordinator",
            "SELECT pg_walfile_name(pg_current_wal_lsn())",
        )
        .await
        .unwrap()[0];
    u64::from_str_radix(&name[8..16], 16).unwrap() * 256
        + u64::from_str_radix(&name[16..24], 16).unwrap()
}

fn seg_name(n: u64) -> String {
    format!("00000001{:08X}{:08X}", n / 256, n % 256)
}

/// Runs the tool's hidden archive-get; returns the exit code and stderr.
fn cli_archive_get(config: &Path, file: &str, dest: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(["archive-get", "--node", "coordinator", file])
        .arg(dest)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_while_a_node_writes_wal_loses_nothing_and_the_archive_catches_up() {
    skip_unless_postgres!();
    environment();
    let moto = moto_or_skip!(&["wal"], false);
    let mut proxy = Proxy::start(moto.port());
    let t = archiving_cluster(&proxy.endpoint(), "down", 8).await;
    let repo = moto.repository("wal", "down");
    write_segments(&t, 2, 1000).await;
    let c = t.cluster.clone();
    c.create_restore_point(Some("before"))
        .await
        .expect("restore point while S3 is up");

    proxy.down();
    let failed_before = failed_count(&t).await;
    write_segments(&t, 4, 1000).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while failed_count(&t).await < failed_before + 2 {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL never saw archive-push fail"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let waiting = t
        .sql(
            "coordinator",
            "SELECT count(*) FROM pg_ls_dir('pg_wal/archive_status') f WHERE f LIKE '%.ready'",
        )
        .await
        .unwrap()[0]
        .parse::<i64>()
        .unwrap();
    assert!(
        waiting >= 4,
        "segments wait in pg_wal while S3 is down: {waiting}"
    );
    let written_while_down = current_segment(&t).await - 1;
    eprintln!(
        "S3 down: failed_count {} -> {}, {waiting} segments waiting",
        failed_before,
        failed_count(&t).await
    );

    proxy.up();
    // The restore point waits until it is archived, so everything before it is too.
    c.create_restore_point(Some("after"))
        .await
        .expect("restore point once S3 is back");
    let segs = archived_segments(&repo).await;
    let (first, last) = (segs[0], *segs.last().unwrap());
    assert!(last >= written_while_down, "caught up: {segs:?}");
    assert_eq!(
        segs,
        (first..=last).collect::<Vec<_>>(),
        "every segment from the first on is in the repository, none skipped"
    );
    let report = c
        .verify(Some("first"), Some("after"))
        .await
        .expect("verify");
    assert!(report.ok(), "{report}");

    // And the WAL written while S3 was down replays: restore to the later point.
    c.restore_start(Some("first"), Some("after"))
        .await
        .expect("restore-start");
    assert_eq!(t.count("coordinator", "xx").await, 6000);
    c.restore_finish().await.expect("restore-finish");
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_s3_takes_prefetched_segments_from_the_spool() {
    skip_unless_postgres!();
    environment();
    let moto = moto_or_skip!(&["wal"], false);
    let t = archiving_cluster(&moto.endpoint(), "prefetch", 4).await;
    replay_through_the_spool(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_posix_takes_prefetched_segments_from_the_spool() {
    skip_unless_postgres!();
    environment();
    let t = archiving_cluster_on(
        |dir| serde_json::json!({"type": "posix", "path": dir.join("repo")}),
        4,
    )
    .await;
    replay_through_the_spool(&t).await;
}

/// Restores `t` (prefetch queue 4) over 10+ segments: PostgreSQL replays, most segments come
/// from the spool that the detached worker fills, the rows are exact, and promotion's request
/// for the next timeline's history file removes the spool.
async fn replay_through_the_spool(t: &TestCluster) {
    let c = t.cluster.clone();
    write_segments(t, 10, 500).await;
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    write_segments(t, 2, 7).await;

    let log = t.config().log_file(&t.config().coordinator);
    let spooled_before = count_in(&log, "from the prefetch spool");
    c.restore_start(Some("first"), Some("rp"))
        .await
        .expect("restore-start");
    assert_eq!(t.count("coordinator", "xx").await, 5000, "rows exact");
    let spooled = count_in(&log, "from the prefetch spool") - spooled_before;
    let fetched = count_in(&log, ": fetched");
    eprintln!("restore: {spooled} segments from the spool, {fetched} fetched directly");
    assert!(
        spooled >= 6,
        "at least 6 of the 10+ segments came from the spool: {spooled}"
    );
    assert!(fetched >= 1 && fetched < spooled, "{fetched} vs {spooled}");
    let spool = t.data_dirs()[0]
        .join("pg_wal")
        .join(citus_recovery::archiving::SPOOL_DIR);
    c.restore_finish().await.expect("restore-finish");
    assert_eq!(t.count("coordinator", "xx").await, 5000);
    // Promotion asks for the next timeline's history file, which is not there: spool removed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::symlink_metadata(&spool).is_ok() {
        assert!(
            Instant::now() < deadline,
            "spool left after restore-finish: {spool:?}: {:?}\n{}",
            names_in(&spool),
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("archive-get") || l.contains("restore"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.stop().await.unwrap();
}

/// The detached prefetch worker killed (SIGKILL) at several points: what it leaves is never
/// handed over (only checked segments, its window and `.tmp-*` files are there), every later
/// segment arrives intact, and the temporary files are gone once the lock is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_prefetch_worker_leaves_nothing_that_is_handed_over() {
    skip_unless_postgres!();
    environment();
    let t = archiving_cluster_on(
        |dir| serde_json::json!({"type": "posix", "path": dir.join("repo")}),
        8,
    )
    .await;
    write_segments(&t, 6, 20_000).await;
    t.cluster.stop().await.unwrap();
    let repo = t.cluster.repository().unwrap().clone();
    let segs = archived_segments(repo.as_ref()).await;
    assert!(segs.len() >= 6, "{segs:?}");
    let expected = tempfile::tempdir().unwrap();
    for n in &segs {
        let name = seg_name(*n);
        let got = citus_recovery::archiving::archive_get(
            repo.as_ref(),
            "coordinator",
            &name,
            &expected.path().join(&name),
            0,
        )
        .await
        .unwrap();
        assert_eq!(got, citus_recovery::archiving::GetOutcome::Restored);
    }
    let config = t.config_file();
    for delay in [0u64, 10, 40, 150] {
        let pg_wal = tempfile::tempdir().unwrap();
        let dest = pg_wal.path().join("RECOVERYXLOG");
        let spool = pg_wal.path().join(citus_recovery::archiving::SPOOL_DIR);
        let (code, err) = cli_archive_get(&config, &seg_name(segs[0]), &dest);
        assert_eq!(code, 0, "{err}");
        std::thread::sleep(Duration::from_millis(delay));
        let killed = kill_workers(&config);
        for name in names_in(&spool) {
            let segment = name.len() == 33 && name.as_bytes()[24] == b'.';
            assert!(
                segment || name == ".window" || name == ".last" || name.starts_with(".tmp-"),
                "after a kill at {delay} ms ({killed} killed): {name}"
            );
        }
        for n in &segs[1..] {
            let name = seg_name(*n);
            let _ = std::fs::remove_file(&dest);
            let (code, err) = cli_archive_get(&config, &name, &dest);
            assert_eq!(code, 0, "{name} after a kill at {delay} ms: {err}");
            assert!(
                std::fs::read(&dest).unwrap()
                    == std::fs::read(expected.path().join(&name)).unwrap(),
                "{name} after a kill at {delay} ms: not the archived bytes"
            );
        }
        // The last workers end on their own (the end of the archive); then nothing temporary.
        let deadline = Instant::now() + Duration::from_secs(30);
        while workers_of(&config) > 0 {
            assert!(Instant::now() < deadline, "a prefetch worker never ended");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(citus_recovery::archiving::SpoolLock::for_dest(&dest));
        let left: Vec<String> = names_in(&spool)
            .into_iter()
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "after a kill at {delay} ms: {left:?}");
    }
}

/// The names in folder `dir` (none when it is missing).
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pids of running `archive-get-worker` processes started with config `config`.
fn worker_pids(config: &Path) -> Vec<i32> {
    let config = std::path::absolute(config)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let ours = args.iter().any(|a| a == "archive-get-worker") && args.contains(&config);
            ours.then_some(pid)
        })
        .collect()
}

/// How many prefetch workers of `config` run.
fn workers_of(config: &Path) -> usize {
    worker_pids(config).len()
}

/// SIGKILLs the prefetch workers of `config`; returns how many.
fn kill_workers(config: &Path) -> usize {
    let pids = worker_pids(config);
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    pids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_wal_object_is_named_by_verify_and_refused_by_archive_get() {
    skip_unless_postgres!();
    environment();
    let moto = moto_or_skip!(&["wal"], false);
    let t = archiving_cluster(&moto.endpoint(), "damaged", 8).await;
    let c = t.cluster.clone();
    write_segments(&t, 3, 1000).await;
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    c.stop().await.unwrap();

    // Overwrite one segment between the backup and the point with changed bytes, through S3.
    let repo = moto.repository("wal", "damaged");
    let segs = archived_segments(&repo).await;
    let victim = seg_name(segs[segs.len() - 2]);
    let key = Key::new(&format!("wal/coordinator/{victim}.zst")).unwrap();
    let mut frame = repo.get(&key).await.unwrap().to_vec();
    let middle = 28 + (frame.len() - 28) / 2;
    frame[middle] ^= 0x5A;
    repo.delete(&key).await.unwrap();
    repo.put_create(&key, Bytes::from(frame)).await.unwrap();

    let text = match c.verify(Some("first"), Some("rp")).await {
        Ok(report) => {
            assert!(!report.ok(), "verify must fail: {report}");
            report.to_string()
        }
        Err(e) => e.to_string(),
    };
    eprintln!("{text}");
    assert!(
        text.contains("coordinator") && text.contains(&victim),
        "names the node and segment: {text}"
    );

    // archive-get, as PostgreSQL runs it, with the damaged segment asked for directly and
    // inside a prefetch window: never handed over, exit above 125.
    let pg_wal = tempfile::tempdir().unwrap();
    let dest = pg_wal.path().join("RECOVERYXLOG");
    let before = seg_name(segs[segs.len() - 3]);
    let (code, err) = cli_archive_get(&t.config_file(), &before, &dest);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_file(&dest).unwrap();
    let (code, err) = cli_archive_get(&t.config_file(), &victim, &dest);
    eprintln!("{err}");
    assert_eq!(code, 200, "{err}");
    assert!(err.contains(&victim) && err.contains("damaged"), "{err}");
    assert!(!dest.exists(), "PostgreSQL never gets the damaged bytes");
}

/// archive-push, archive-get and list with a wrong secret: a clear error naming the
/// repository and the fix, the secret nowhere, and archive-get never says "not found".
#[tokio::test]
async fn wrong_credentials_are_named_without_the_secret_by_the_wal_commands() {
    let moto = moto_or_skip!(&["wal"], true);
    let t = TestCluster::new(0);
    let file = t.config_file();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    json["repository"] = serde_json::json!({
        "type": "s3", "bucket": "wal", "prefix": "creds",
        "region": "us-east-1", "endpoint": moto.endpoint(), "allowHttp": true
    });
    json["binary"] = BIN.into();
    std::fs::write(&file, json.to_string()).unwrap();
    let wal = t.dir().join("000000010000000000000001");
    std::fs::write(&wal, vec![3u8; 1 << 20]).unwrap();
    const SENTINEL: &str = "SENTINEL-secret-Wq4e8r";
    let run = |args: &[&str], secret: &str| {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&file)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &moto.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("CITUS_RECOVERY_LOG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    };
    let wal_text = wal.to_string_lossy().to_string();
    let dest = t.dir().join("RECOVERYXLOG").to_string_lossy().to_string();
    // The right secret works, so the server really checks.
    let (code, text) = run(
        &["archive-push", "--node", "coordinator", &wal_text],
        &moto.secret_access_key,
    );
    assert_eq!(code, 0, "{text}");
    for (args, expected) in [
        (
            vec!["archive-push", "--node", "coordinator", wal_text.as_str()],
            1,
        ),
        (
            vec![
                "archive-get",
                "--node",
                "coordinator",
                "000000010000000000000001",
                dest.as_str(),
            ],
            200,
        ),
        (
            vec![
                "archive-get",
                "--node",
                "coordinator",
                "000000010000000000000009",
                dest.as_str(),
            ],
            200,
        ),
    ] {
        let (code, text) = run(&args, SENTINEL);
        eprintln!("{args:?}: exit {code}: {text}");
        assert_eq!(code, expected, "{args:?}: {text}");
        assert!(
            text.contains("s3://wal/creds"),
            "names the repository: {text}"
        );
        assert!(
            text.contains("access denied") && text.contains("AWS_SECRET_ACCESS_KEY"),
            "names the fix: {text}"
        );
        assert!(!text.contains(SENTINEL), "secret shown: {text}");
        assert!(!text.contains(&moto.secret_access_key), "{text}");
    }
    assert!(!Path::new(&dest).exists());
}

/// How many lines of `path` contain `needle`.
fn count_in(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}
