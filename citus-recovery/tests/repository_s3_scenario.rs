//! The whole cycle with the WAL archive in S3 (moto on loopback): the servers' archive_command
//! and restore_command reach it with the AWS_* variables they inherit from the tool through
//! `pg_ctl start`. Its own test binary: it sets those variables for the whole process.

mod common;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;
#[path = "common/s3.rs"]
mod s3;

use citus_recovery::repository::{Key, Repository};
use common::TestCluster;
use repository_cycle::cycle;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_repository_backup_restore_point_verify_restore() {
    skip_unless_postgres!();
    // With signatures checked: the servers can only push with the right credentials.
    let moto = moto_or_skip!(&["wal-bucket"], true);
    // The only test of this binary, so the process-wide variables race with nothing.
    std::env::set_var("AWS_ACCESS_KEY_ID", &moto.access_key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &moto.secret_access_key);
    std::env::remove_var("AWS_SESSION_TOKEN");
    let mut t = TestCluster::new(1);
    let settings = serde_json::json!({
        "type": "s3", "bucket": "wal-bucket", "prefix": "cluster-a",
        "region": "us-east-1", "endpoint": moto.endpoint(), "allowHttp": true
    });
    let names = cycle(&mut t, settings).await;
    let repo = moto.repository("wal-bucket", "cluster-a");
    for node in &names {
        let objects = repo
            .list(&Key::new("wal").unwrap().join(node).unwrap())
            .await
            .unwrap();
        let zst = objects
            .iter()
            .filter(|o| o.key.as_str().ends_with(".zst"))
            .count();
        assert!(zst >= 3, "{node}: {objects:?}");
    }
}
