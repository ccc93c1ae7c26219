//! The catalog and the lock in a repository, on real PostgreSQL servers: backups and restore
//! points recorded under `catalog/`, listed without a WAL scan, deleted by name; a second
//! command refused while one holds the lock; in a posix repository, entries and a lock the
//! servers' user wrote are refused. The same over S3 (moto on loopback).

mod common;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;
#[path = "common/s3.rs"]
mod s3;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use citus_recovery::lock::ClusterLock;
use citus_recovery::repository::{Key, Repository};
use citus_recovery::{Cluster, Error};
use common::{backup_names, TestCluster};
use repository_cycle::{with_repository, BIN};

fn tool(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Backup, two restore points, list (library and CLI), delete (dry run, then for real), an
/// unknown name, and a second command while a base backup holds the lock. Leaves the servers
/// running.
async fn catalog_cycle(t: &mut TestCluster, repository: serde_json::Value) -> Cluster {
    let config_file = with_repository(t, repository);
    let c = t.cluster.clone();
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false).await.expect("archiving");
    c.basebackup(Some("b1")).await.expect("base backup");
    c.create_restore_point(Some("rp1")).await.expect("rp1");
    c.create_restore_point(Some("rp 2")).await.expect("rp 2");

    let backups = c.list_backups().await.unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].name, "b1");
    let points = c.list_restore_points().await.unwrap();
    let names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["rp1", "rp 2"]);
    for p in &points {
        assert_eq!(p.nodes.len(), t.config().nodes().count());
        assert!(
            p.nodes
                .iter()
                .all(|n| n.lsn.is_some() && n.timeline == 1 && n.segment.len() == 24),
            "{p:?}"
        );
    }
    // Nothing of the catalog beside the backups: it is in the repository.
    let backup_dir = t.dir().join("backup");
    assert!(!backup_dir.join("restore-points.json").exists());
    assert!(!backup_dir.join("b1/citus-recovery-backup.json").exists());
    assert!(!backup_dir.join("citus-recovery.lock").exists());

    let out = tool(&config_file, &["--json", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["backups"][0]["name"], "b1");
    assert_eq!(json["restore_points"][1]["name"], "rp 2");
    assert!(json["restore_points"][1]["nodes"][0]["lsn"].is_string());

    let out = tool(
        &config_file,
        &["--dry-run", "restore-point", "delete", "rp1"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("would remove"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(c.list_restore_points().await.unwrap().len(), 2);
    let out = tool(&config_file, &["restore-point", "delete", "rp1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("stays in every node's WAL"),
        "{}",
        text(&out.stdout)
    );
    let names: Vec<String> = c
        .list_restore_points()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["rp 2"]);
    // The WAL record stays: the scan still finds it, now as not made by the library.
    let scanned = c.archived_restore_points().await.unwrap();
    let rp1 = scanned
        .iter()
        .find(|p| p.name == "rp1")
        .expect("in the WAL");
    assert!(!rp1.recorded && rp1.missing_on.is_empty(), "{rp1:?}");
    match c.delete_restore_point("rp1").await {
        Err(Error::UnknownRestorePoint { name, hint }) => {
            assert_eq!(name, "rp1");
            assert!(hint.contains("\"rp 2\""), "{hint}");
        }
        other => panic!("expected UnknownRestorePoint, got {other:?}"),
    }
    let out = tool(&config_file, &["restore-point", "delete", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"rp 2\""),
        "{}",
        text(&out.stderr)
    );
    let report = c.verify(Some("b1"), Some("rp 2")).await.expect("verify");
    assert!(report.ok(), "{report}");

    // Two commands at once: the second is refused, naming the first.
    let probe = async {
        let holder = loop {
            if let Some(h) = c.lock_holder().await.unwrap() {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        (holder, c.create_restore_point(Some("rp3")).await)
    };
    let (backup, (holder, second)) = tokio::join!(c.basebackup(Some("b2")), probe);
    backup.expect("the first command goes on");
    assert_eq!(holder.command, "basebackup");
    assert_eq!(holder.pid, std::process::id());
    match second {
        Err(e @ Error::RepositoryLocked { stale: None, .. }) => {
            assert!(e.to_string().contains("`basebackup`"), "{e}")
        }
        other => panic!("expected RepositoryLocked, got {other:?}"),
    }
    assert_eq!(c.lock_holder().await.unwrap(), None, "released at the end");
    // Another process (another admin host would be the same) while this one holds the lock.
    let held = ClusterLock::acquire_in(t.config(), c.repository(), "restore-start")
        .await
        .unwrap();
    let out = tool(&config_file, &["restore-point", "--name", "rp4"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("locked by `restore-start`"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    let out = tool(&config_file, &["unlock"]);
    assert!(
        text(&out.stdout).contains("locked by `restore-start`"),
        "{}",
        text(&out.stdout)
    );
    held.release().await.unwrap();
    let out = tool(&config_file, &["unlock"]);
    assert!(
        text(&out.stdout).contains("not locked"),
        "{}",
        text(&out.stdout)
    );
    let names = backup_names(&c).await;
    assert_eq!(names, ["b1", "b2"]);
    // A name another admin host took (its folder is not on this host) is refused up front.
    std::fs::remove_dir_all(backup_dir.join("b2")).unwrap();
    match c.plan_basebackup(Some("b2")).await {
        Err(Error::InvalidArgument { problem, .. }) => {
            assert!(problem.contains("repository's catalog"), "{problem}")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    c
}

fn postgres_ids(t: &TestCluster) -> (u32, u32) {
    let user = t
        .config()
        .os_user
        .clone()
        .unwrap_or_else(|| "postgres".into());
    let u = nix::unistd::User::from_name(&user).unwrap().unwrap();
    (u.uid.as_raw(), u.gid.as_raw())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posix_repository_catalog_lock_and_forgeries() {
    skip_unless_postgres!();
    let mut t = TestCluster::new(1);
    let root = t.dir().join("repo");
    let c = catalog_cycle(&mut t, serde_json::json!({"type": "posix", "path": root})).await;
    c.stop().await.unwrap();
    let me = nix::unistd::Uid::effective().as_raw();
    let (pg_uid, pg_gid) = postgres_ids(&t);
    let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
    assert_eq!(
        meta(&root).uid(),
        me,
        "the repository's folder is the tool's"
    );
    assert_eq!(meta(&root).mode() & 0o7777, 0o755);
    assert_eq!(meta(&root.join("catalog")).mode() & 0o777, 0o700);
    assert_eq!(
        meta(&root.join("wal/worker1")).uid(),
        pg_uid,
        "wal/ is the servers'"
    );
    let entry = root.join("catalog/restore-points/rp%202.json");
    assert_eq!(meta(&entry).mode() & 0o777, 0o600);
    if me != 0 {
        eprintln!("the forgery half needs root (the servers' user differs from the tool's)");
        return;
    }

    // A restore point the servers' user wrote (archive-push runs as it) is refused.
    let forged = root.join("catalog/restore-points/forged.json");
    std::fs::copy(&entry, &forged).unwrap();
    std::os::unix::fs::chown(&forged, Some(pg_uid), Some(pg_gid)).unwrap();
    match c.list_restore_points().await {
        Err(e @ Error::UntrustedFile { .. }) => {
            assert!(e.to_string().contains(&format!("uid {pg_uid}")), "{e}")
        }
        other => panic!("expected UntrustedFile, got {other:?}"),
    }
    std::fs::remove_file(&forged).unwrap();

    // A backup entry of theirs is skipped in listings and refused by name.
    let evil = root.join("catalog/backups/evil.json");
    let mut b1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("catalog/backups/b1.json")).unwrap())
            .unwrap();
    b1["name"] = "evil".into();
    std::fs::write(&evil, b1.to_string()).unwrap();
    std::os::unix::fs::chown(&evil, Some(pg_uid), Some(pg_gid)).unwrap();
    let names = backup_names(&c).await;
    assert_eq!(names, ["b1", "b2"]);
    assert!(matches!(
        c.catalog().backup("evil").await,
        Err(Error::UntrustedFile { .. })
    ));
    std::fs::remove_file(&evil).unwrap();

    // A lock of theirs neither blocks as if real nor is believed: refused, naming the file.
    let lock = root.join("lock");
    std::fs::write(&lock, "{}").unwrap();
    std::os::unix::fs::chown(&lock, Some(pg_uid), Some(pg_gid)).unwrap();
    match c.create_restore_point(Some("rp5")).await {
        Err(Error::UntrustedFile { path, .. }) => assert_eq!(path, lock),
        other => panic!("expected UntrustedFile, got {other:?}"),
    }
    std::fs::remove_file(&lock).unwrap();

    // A repository folder in the servers' user's hands: nothing in it is believed.
    std::os::unix::fs::chown(&root, Some(pg_uid), Some(pg_gid)).unwrap();
    match c.list_restore_points().await {
        Err(e @ Error::UntrustedFile { .. }) => assert!(e.to_string().contains("chown"), "{e}"),
        other => panic!("expected UntrustedFile, got {other:?}"),
    }
    std::os::unix::fs::chown(&root, Some(me), Some(0)).unwrap();

    // A stale lock (a command killed on this host) is reported with the fix, and broken only
    // when asked.
    let config_file = t.config_file();
    let mut child = Command::new("sleep").arg("0").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let stale = serde_json::json!({
        "command": "restore-start", "host": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(),
        "pid": dead_pid, "uid": 0, "since": "2026-01-01T00:00:00Z", "token": "t"
    });
    std::fs::write(&lock, stale.to_string()).unwrap();
    std::fs::set_permissions(&lock, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = tool(&config_file, &["restore-point", "--name", "rp6"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("looks stale") && err.contains("unlock --force"),
        "{err}"
    );
    assert!(lock.exists(), "never taken over silently");
    let out = tool(&config_file, &["unlock", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("`restore-start`"),
        "{}",
        text(&out.stdout)
    );
    assert!(!lock.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_repository_catalog_and_lock() {
    skip_unless_postgres!();
    let moto = moto_or_skip!(&["catalog-bucket"], true);
    // The only S3 test of this binary; the posix one needs no credentials.
    std::env::set_var("AWS_ACCESS_KEY_ID", &moto.access_key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &moto.secret_access_key);
    std::env::remove_var("AWS_SESSION_TOKEN");
    let mut t = TestCluster::new(1);
    let settings = serde_json::json!({
        "type": "s3", "bucket": "catalog-bucket", "prefix": "cluster-c",
        "region": "us-east-1", "endpoint": moto.endpoint(), "allowHttp": true
    });
    let c = catalog_cycle(&mut t, settings).await;
    c.stop().await.unwrap();
    let repo = moto.repository("catalog-bucket", "cluster-c");
    let keys: Vec<String> = repo
        .list(&Key::new("catalog").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.as_str().to_string())
        .collect();
    assert!(
        keys.contains(&"catalog/backups/b1.json".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"catalog/backup-nodes/b2/worker1.json".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"catalog/restore-points/rp%202.json".to_string()),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("rp1")), "deleted: {keys:?}");
    assert!(repo
        .head(&Key::new("lock").unwrap())
        .await
        .unwrap()
        .is_none());
}
