//! Faults of a base backup into S3 (moto on loopback). Its own test binary: it sets the AWS_*
//! variables for the whole process.

mod common;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;
#[path = "common/s3.rs"]
mod s3;

use std::time::{Duration, Instant};

use common::TestCluster;
use proxy::Proxy;
use repository_cycle::with_repository;

/// The S3 server stopped while a base backup streams into it: the backup fails, and it is
/// neither listed nor offered for restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_during_a_backup_leaves_no_backup() {
    skip_unless_postgres!();
    let moto = moto_or_skip!(&["fault-bucket"], false);
    // S3 is taken down and back through a forwarder, so moto keeps its objects.
    let mut proxy = Proxy::start(moto.port());
    std::env::set_var("AWS_ACCESS_KEY_ID", "test-key");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-s3cr3t-sentinel");
    std::env::remove_var("AWS_SESSION_TOKEN");
    let mut t = TestCluster::new(1);
    with_repository(
        &mut t,
        serde_json::json!({
            "type": "s3", "bucket": "fault-bucket", "prefix": "c",
            "region": "us-east-1", "endpoint": proxy.endpoint(), "allowHttp": true
        }),
    );
    let c = t.cluster.clone();
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false).await.expect("archiving");
    // Enough data on every node that each stream lasts a while: a node's backup ends without
    // waiting a second for its archive (`-X fetch`), and a node done before S3 went away keeps
    // its completed objects (the backup is still never offered: no cluster manifest).
    for node in ["coordinator", "worker1"] {
        t.sql(
            node,
            "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t \
             FROM generate_series(1, 1500000) g",
        )
        .await
        .unwrap();
    }
    let started = Instant::now();
    let (result, ()) = tokio::join!(c.basebackup(Some("doomed")), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.down();
    });
    let elapsed = started.elapsed();
    let e = result.expect_err("the backup fails without its repository");
    let text = e.to_string();
    eprintln!("after {elapsed:?}: {text}");
    assert!(!text.contains("test-s3cr3t-sentinel"), "{text}");
    // Back: the catalog in S3 never got the backup.
    proxy.up();
    assert!(
        c.list_backups()
            .await
            .unwrap()
            .iter()
            .all(|b| b.name != "doomed"),
        "never listed"
    );
    assert!(c.catalog().backup("doomed").await.is_err(), "never offered");
    let objects = c
        .repository()
        .unwrap()
        .list(&citus_recovery::repository::Key::new("backups/doomed").unwrap())
        .await
        .unwrap();
    assert!(objects.is_empty(), "no object visible: {objects:?}");
    // The lock could not be deleted while S3 was down: it stays, held by this (live)
    // process, until an operator breaks it; it is never taken over silently.
    if let Some(holder) = c.lock_holder().await.unwrap() {
        assert_eq!(holder.command, "basebackup");
        c.break_lock().await.unwrap();
    }
    // Archiving catches up, and the servers stop cleanly.
    c.stop().await.unwrap();
}

/// A byte flipped in a base backup object in S3: verify names the object; restore-start finds it
/// while extracting (its pre-flight checks only that the objects are there) and rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_object_in_s3_is_named_and_nothing_changes() {
    use citus_recovery::repository::{Key, Repository};
    skip_unless_postgres!();
    let moto = moto_or_skip!(&["corrupt-bucket"], false);
    // The same values as the other test of this binary: the process-wide variables agree.
    std::env::set_var("AWS_ACCESS_KEY_ID", "test-key");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-s3cr3t-sentinel");
    std::env::remove_var("AWS_SESSION_TOKEN");
    let mut t = TestCluster::new(1);
    with_repository(
        &mut t,
        serde_json::json!({
            "type": "s3", "bucket": "corrupt-bucket", "prefix": "c",
            "region": "us-east-1", "endpoint": moto.endpoint(), "allowHttp": true
        }),
    );
    let c = t.cluster.clone();
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false).await.expect("archiving");
    c.basebackup(Some("first")).await.expect("base backup");
    t.sql(
        "worker1",
        "CREATE TABLE xx AS SELECT g FROM generate_series(1, 700) g",
    )
    .await
    .unwrap();
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");

    let repo = moto.repository("corrupt-bucket", "c");
    let key = Key::new("backups/first/worker1/base.tar.zst").unwrap();
    let mut bytes = repo.get(&key).await.unwrap().to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x08;
    repo.delete(&key).await.unwrap();
    repo.put_create(&key, bytes.into()).await.unwrap();

    let report = c.verify(Some("first"), Some("rp")).await.expect("verify");
    assert!(!report.ok(), "{report}");
    assert!(report.to_string().contains(key.as_str()), "{report}");
    let e = c
        .restore_start(Some("first"), Some("rp"))
        .await
        .expect_err("a damaged backup is not restored");
    assert!(e.to_string().contains(key.as_str()), "{e}");
    assert!(
        matches!(e, citus_recovery::Error::RestoreFailed { .. }),
        "found while extracting, then rolled back: {e}"
    );
    assert!(
        c.restore_state().unwrap().is_none(),
        "rolled back completely"
    );
    assert_eq!(t.count("worker1", "xx").await, 700, "the cluster runs on");
    c.stop().await.unwrap();
}
