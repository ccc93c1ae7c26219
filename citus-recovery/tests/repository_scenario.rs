//! The WAL archive in a repository, on real PostgreSQL servers: archive_command runs
//! `citus-recovery archive-push`, restore_command `archive-get`, and verify, list and the
//! restore point's location read the repository. The archive folder is never used.

mod common;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use citus_recovery::Error;
use common::TestCluster;
use repository_cycle::{cycle, files_below, with_repository, BIN};

/// A new cluster of `workers` workers with a posix repository in its folder, running and
/// archiving into it: the test cluster, its config file and the repository's folder.
async fn archiving_into_posix(workers: usize) -> (TestCluster, PathBuf, PathBuf) {
    let mut t = TestCluster::new(workers);
    let repo = t.dir().join("repo");
    let file = with_repository(&mut t, serde_json::json!({"type": "posix", "path": repo}));
    let c = t.cluster.clone();
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false).await.expect("archiving");
    (t, file, repo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posix_repository_backup_restore_point_verify_restore() {
    skip_unless_postgres!();
    let mut t = TestCluster::new(1);
    let repo = t.dir().join("repo");
    let names = cycle(&mut t, serde_json::json!({"type": "posix", "path": repo})).await;
    for node in &names {
        let objects = files_below(&repo.join("wal").join(node));
        assert!(
            objects.iter().filter(|o| o.ends_with(".zst")).count() >= 3,
            "{node}: {objects:?}"
        );
        assert!(
            objects.iter().any(|o| o.ends_with(".history.zst")),
            "{node}: {objects:?}"
        );
    }
}

/// A byte flipped in a stored base backup object: verify (which reads every byte) names the
/// object; restore-start, whose pre-flight only checks the objects are there (extraction checks
/// every file as it writes it: one pass), fails on it while extracting and rolls every node
/// back, and the cluster runs on unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_backup_object_is_named_and_nothing_changes() {
    skip_unless_postgres!();
    let (t, _, repo) = archiving_into_posix(1).await;
    let c = t.cluster.clone();
    c.basebackup(Some("first")).await.expect("base backup");
    t.sql(
        "worker1",
        "CREATE TABLE xx AS SELECT g FROM generate_series(1, 500) g",
    )
    .await
    .unwrap();
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    let report = c.verify(Some("first"), Some("rp")).await.expect("verify");
    assert!(report.ok(), "intact first: {report}");

    let object = repo.join("backups/first/worker1/base.tar.zst");
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&object, &bytes).unwrap();

    let report = c.verify(Some("first"), Some("rp")).await.expect("verify");
    assert!(!report.ok(), "{report}");
    let text = report.to_string();
    assert!(
        text.contains("backups/first/worker1/base.tar.zst"),
        "names the object: {text}"
    );
    let data_dirs = t.data_dirs();
    let before: Vec<Vec<String>> = data_dirs.iter().map(|d| files_below(d)).collect();
    let e = c
        .restore_start(Some("first"), Some("rp"))
        .await
        .expect_err("a damaged backup is not restored");
    assert!(
        e.to_string().contains("backups/first/worker1/base.tar.zst"),
        "{e}"
    );
    assert!(
        matches!(e, citus_recovery::Error::RestoreFailed { .. }),
        "found while extracting, then rolled back: {e}"
    );
    assert!(
        c.restore_state().unwrap().is_none(),
        "rolled back completely"
    );
    assert_eq!(t.count("worker1", "xx").await, 500, "the cluster runs on");
    for (dir, was) in data_dirs.iter().zip(&before) {
        let now = files_below(dir);
        assert!(now.len() >= was.len() / 2 && dir.join("PG_VERSION").is_file());
    }
    c.stop().await.unwrap();
}

/// A slow archive_command: the backup streams with `-X fetch` (the server does not wait for
/// the archive), so the tool itself must wait until the backup's last WAL segment is in the
/// repository before it records the backup; the stored tar holds no WAL of its own, and the
/// backup restores to a later restore point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_waits_for_its_last_segment_behind_a_slow_archive_command() {
    skip_unless_postgres!();
    let (t, _, repo) = archiving_into_posix(0).await;
    let c = t.cluster.clone();
    t.sql(
        "coordinator",
        "CREATE TABLE yy AS SELECT g FROM generate_series(1, 300) g",
    )
    .await
    .unwrap();
    let command = t
        .sql("coordinator", "SELECT current_setting('archive_command')")
        .await
        .unwrap()
        .remove(0);
    let slow = format!("sleep 3 && {command}").replace('\'', "''");
    t.sql(
        "coordinator",
        &format!("ALTER SYSTEM SET archive_command = '{slow}'"),
    )
    .await
    .unwrap();
    t.sql("coordinator", "SELECT pg_reload_conf()")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let backup = c.basebackup(Some("slow")).await.expect("base backup");
    let took = started.elapsed();
    let part = backup.node("coordinator").expect("its part");
    let last = citus_recovery::wal::segment_file_name(
        part.timeline,
        citus_recovery::wal::Lsn(part.end_lsn.0 - 1),
        16 << 20,
    );
    let repository = c.repository().expect("a repository").clone();
    assert!(
        citus_recovery::archiving::is_archived(repository.as_ref(), "coordinator", &last)
            .await
            .unwrap(),
        "{last} is archived when the backup is recorded"
    );
    assert!(
        took >= std::time::Duration::from_secs(3),
        "waited: {took:?}"
    );
    // The server compressed it (PostgreSQL 15, zstd), and it is stored as it came.
    let stored = std::fs::read(repo.join("backups/slow/coordinator/base.tar.zst")).unwrap();
    assert_eq!(
        stored[5],
        citus_recovery::repository::codec::CARRIED_ZSTD,
        "the stored tar is the server's zstd stream"
    );
    // No WAL segment is stored in the backup: the archive has it.
    let mut tar = Vec::new();
    citus_recovery::repository::codec::StreamDecoder::new(stored.as_slice())
        .read_to_end(&mut tar)
        .unwrap();
    let mut paths = Vec::new();
    for entry in tar::Archive::new(tar.as_slice()).entries().unwrap() {
        let entry = entry.unwrap();
        paths.push((
            entry.path().unwrap().to_string_lossy().into_owned(),
            entry.header().entry_type(),
        ));
    }
    assert!(
        paths.iter().any(|(p, _)| p == "PG_VERSION")
            && paths.iter().any(|(p, _)| p == "backup_label"),
        "{} entries",
        paths.len()
    );
    // pg_basebackup -X stream keeps the WAL apart (in pg_wal.tar, not stored); at most the
    // listed `archive_status/*.done` of fetched segments would stay.
    let wal: Vec<&(String, tar::EntryType)> = paths
        .iter()
        .filter(|(p, kind)| p.contains("pg_wal/") && kind.is_file())
        .collect();
    assert!(
        wal.iter().all(|(p, _)| p.ends_with(".done")),
        "no WAL segment in the stored tar: {wal:?}"
    );
    // The folder pg_basebackup wrote the compressed tar into is gone.
    let staging = c.config().backup_staging_dir(&c.config().coordinator);
    assert!(!staging.exists(), "{} is left", staging.display());
    t.sql(
        "coordinator",
        &format!(
            "ALTER SYSTEM SET archive_command = '{}'",
            command.replace('\'', "''")
        ),
    )
    .await
    .unwrap();
    t.sql("coordinator", "SELECT pg_reload_conf()")
        .await
        .unwrap();
    t.sql(
        "coordinator",
        "INSERT INTO yy SELECT g FROM generate_series(1, 200) g",
    )
    .await
    .unwrap();
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    t.sql(
        "coordinator",
        "INSERT INTO yy SELECT g FROM generate_series(1, 50) g",
    )
    .await
    .unwrap();
    c.restore_start(Some("slow"), Some("rp"))
        .await
        .expect("restore");
    assert_eq!(
        t.count("coordinator", "yy").await,
        500,
        "the rows at the point"
    );
    c.stop().await.unwrap();
}

/// A node with a user tablespace cannot stream one tar: its backup is staged compressed in the
/// backup folder, uploaded as base.tar.zst and <oid>.tar.zst, and the staging removed; the
/// restore brings the rows of the tablespace's table back at the point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablespace_backup_goes_through_a_compressed_staging_into_the_repository() {
    skip_unless_postgres!();
    let (t, _, repo) = archiving_into_posix(0).await;
    let c = t.cluster.clone();
    let node = t.config().coordinator.clone();
    let live_ts = t.dir().join("ts-live");
    c.backend().create_dir(&node, &live_ts).await.unwrap();
    t.sql(
        "coordinator",
        &format!("CREATE TABLESPACE ts LOCATION '{}'", live_ts.display()),
    )
    .await
    .unwrap();
    t.sql(
        "coordinator",
        "CREATE TABLE xx(x int) TABLESPACE ts; INSERT INTO xx SELECT generate_series(1, 1000)",
    )
    .await
    .unwrap();
    let oid = t
        .sql(
            "coordinator",
            "SELECT oid FROM pg_tablespace WHERE spcname = 'ts'",
        )
        .await
        .unwrap()[0]
        .clone();
    let backup = c.basebackup(Some("first")).await.expect("base backup");
    assert_eq!(
        backup.nodes[0].tablespaces,
        vec![oid.parse::<u32>().unwrap()]
    );
    let stored = files_below(&repo.join("backups/first/coordinator"));
    assert_eq!(
        stored,
        vec![
            format!("{oid}.tar.zst"),
            "backup_manifest".to_string(),
            "base.tar.zst".to_string()
        ]
    );
    assert!(
        !t.dir().join("backup/first/coordinator").exists(),
        "staging removed: {:?}",
        files_below(&t.dir().join("backup"))
    );
    t.sql(
        "coordinator",
        "INSERT INTO xx SELECT generate_series(1, 200)",
    )
    .await
    .unwrap();
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    t.sql(
        "coordinator",
        "INSERT INTO xx SELECT generate_series(1, 300)",
    )
    .await
    .unwrap();
    let report = c.verify(Some("first"), Some("rp")).await.expect("verify");
    assert!(report.ok(), "{report}");
    c.restore_start(Some("first"), Some("rp"))
        .await
        .expect("restore-start");
    assert_eq!(t.count("coordinator", "xx").await, 1200, "at the point");
    c.restore_finish().await.expect("restore-finish");
    c.stop().await.unwrap();
}

/// The tool killed (SIGKILL) while a base backup streams into a posix repository: pg_basebackup
/// dies with it, the backup is never listed or offered, and no object of it is visible (the
/// temporary file left behind is not an object); the next backup clears its staging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_while_streaming_leaves_no_object_and_is_never_offered() {
    use citus_recovery::repository::Key;
    use std::time::{Duration, Instant};
    skip_unless_postgres!();
    let (t, file, repo) = archiving_into_posix(1).await;
    let c = t.cluster.clone();
    // Data on every node, so every node's stream is still running when the tool is killed
    // (a node's backup no longer waits a second for its archive).
    for node in ["coordinator", "worker1"] {
        t.sql(
            node,
            "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t \
             FROM generate_series(1, 1500000) g",
        )
        .await
        .unwrap();
    }
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .args(["--quiet", "basebackup", "--name", "killed"])
        .spawn()
        .unwrap();
    let folders = ["coordinator", "worker1"].map(|n| repo.join("backups/killed").join(n));
    let started = Instant::now();
    let growing = || {
        folders.iter().all(|folder| {
            std::fs::read_dir(folder)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                .any(|e| e.metadata().map(|m| m.len()).unwrap_or(0) > 1 << 20)
        })
    };
    while !growing() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never streamed"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let started = Instant::now();
    loop {
        let ps = Command::new("ps")
            .args(["-eo", "pid,stat,args"])
            .output()
            .unwrap();
        let alive: Vec<String> = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains("pg_basebackup") && l.contains("-l killed"))
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|s| !s.starts_with('Z'))
            })
            .map(str::to_string)
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pg_basebackup outlived its parent: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.list_backups().await.unwrap().is_empty(), "never listed");
    assert!(c.catalog().backup("killed").await.is_err(), "never offered");
    let objects = c
        .repository()
        .unwrap()
        .list(&Key::new("backups/killed").unwrap())
        .await
        .unwrap();
    assert!(objects.is_empty(), "no object visible: {objects:?}");
    // The killed command's lock stays, reported as stale (never taken over silently); the
    // operator breaks it, as the message says.
    match c.stop().await {
        Err(Error::RepositoryLocked {
            stale: Some(why), ..
        }) => assert!(why.contains("no longer runs"), "{why}"),
        other => panic!("expected the killed backup's stale lock, got {other:?}"),
    }
    let holder = c
        .break_lock()
        .await
        .unwrap()
        .expect("the killed backup's lock");
    assert_eq!(holder.command, "basebackup");
    // What the killed run left in the nodes' staging folders (pg_basebackup's
    // server-compressed tar, the part not yet read) is cleared by the next backup.
    let config = c.config().clone();
    let staging: Vec<_> = config
        .nodes()
        .map(|n| config.backup_staging_dir(n))
        .collect();
    assert!(staging.iter().any(|s| s.exists()), "the killed run staged");
    c.basebackup(Some("again")).await.expect("the next backup");
    for s in &staging {
        assert!(!s.exists(), "{} is left", s.display());
    }
    c.stop().await.unwrap();
}

/// archive-get's exit codes: 0 restored, 1 not in the repository, 200 on any other failure
/// (PostgreSQL must stop recovery then, not take it for the end of the WAL).
#[test]
fn archive_get_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    let config = |repository: serde_json::Value| -> PathBuf {
        let mut json: serde_json::Value =
            serde_json::from_str(&common::config_json(dir.path(), 1)).unwrap();
        json["repository"] = repository;
        let file = dir.path().join("cluster-config.json");
        std::fs::write(&file, json.to_string()).unwrap();
        file
    };
    let file = config(serde_json::json!({"type": "posix", "path": dir.path().join("repo")}));
    std::fs::create_dir(dir.path().join("repo")).unwrap();
    let run = |file: &Path, args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(file)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let segment = "000000010000000000000007";
    std::fs::write(wal.join(segment), vec![9u8; 16 * 1024 * 1024]).unwrap();
    let dest = dir.path().join("RECOVERYXLOG");
    let dest = dest.to_str().unwrap();

    let (code, err) = run(&file, &["archive-get", "--node", "worker1", segment, dest]);
    assert_eq!(code, Some(1), "not there yet: {err}");
    let pushed = wal.join(segment);
    let (code, err) = run(
        &file,
        &[
            "archive-push",
            "--node",
            "worker1",
            pushed.to_str().unwrap(),
        ],
    );
    assert_eq!((code, err.as_str()), (Some(0), ""), "pushed, quietly");
    let (code, err) = run(&file, &["archive-get", "--node", "worker1", segment, dest]);
    assert_eq!((code, err.as_str()), (Some(0), ""), "restored, quietly");
    assert_eq!(std::fs::read(dest).unwrap(), vec![9u8; 16 * 1024 * 1024]);
    let (code, err) = run(&file, &["archive-get", "--node", "nosuch", segment, dest]);
    assert_eq!(code, Some(200), "an unknown node is an error: {err}");

    // An S3 repository nobody answers at: an error (200), never "not there" (1).
    let port = common::free_ports(1)[0];
    let file = config(serde_json::json!({
        "type": "s3", "bucket": "b", "endpoint": format!("http://127.0.0.1:{port}"),
        "allowHttp": true, "region": "us-east-1"
    }));
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .args(["archive-get", "--node", "worker1", segment, dest])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(200), "unreachable: {err}");
    assert!(!err.contains("s3cr3t-value"), "{err}");
    // archive-push fails non-zero there too, so PostgreSQL keeps the file and retries.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .args([
            "archive-push",
            "--node",
            "worker1",
            pushed.to_str().unwrap(),
        ])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
}
