//! Faults of a base backup into S3 (moto on loopback). Its own test binary: it sets the AWS_*
//! variables for the whole process.

mod common;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;
#[path = "common/s3.rs"]
mod s3;

use std::time::{Duration, Instant};

use common::TestCluster;
use repository_cycle::with_repository;

/// The S3 server stopped while a base backup streams into it: the backup fails, and it is
/// neither listed nor offered for restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_during_a_backup_leaves_no_backup() {
    skip_unless_postgres!();
    // Without signature checks, so the credentials still work after the restart below.
    let mut moto = moto_or_skip!(&["fault-bucket"], false);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test-key");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-s3cr3t-sentinel");
    std::env::remove_var("AWS_SESSION_TOKEN");
    let mut t = TestCluster::new(1);
    with_repository(
        &mut t,
        serde_json::json!({
            "type": "s3", "bucket": "fault-bucket", "prefix": "c",
            "region": "us-east-1", "endpoint": moto.endpoint(), "allowHttp": true
        }),
    );
    let c = t.cluster.clone();
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false).await.expect("archiving");
    // Enough data that the stream lasts a while.
    t.sql(
        "coordinator",
        "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t \
         FROM generate_series(1, 1500000) g",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (result, ()) = tokio::join!(c.basebackup(Some("doomed")), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        moto.stop();
    });
    let elapsed = started.elapsed();
    let e = result.expect_err("the backup fails without its repository");
    let text = e.to_string();
    eprintln!("after {elapsed:?}: {text}");
    assert!(!text.contains("test-s3cr3t-sentinel"), "{text}");
    assert!(
        c.list_backups().unwrap().iter().all(|b| b.name != "doomed"),
        "never listed"
    );
    assert!(c.catalog().backup("doomed").is_err(), "never offered");
    // Back (empty): archiving catches up, and the servers stop cleanly.
    moto.restart().unwrap();
    c.stop().await.unwrap();
}
