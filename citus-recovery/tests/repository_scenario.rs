//! The WAL archive in a repository, on real PostgreSQL servers: archive_command runs
//! `citus-recovery archive-push`, restore_command `archive-get`, and verify, list and the
//! restore point's location read the repository. The archive folder is never used.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use citus_recovery::plan::RunOptions;
use citus_recovery::{Cluster, ClusterConfig, LocalBackend};
use common::TestCluster;

const FIRST: i64 = 3000;
const SECOND: i64 = 2000;
const BIN: &str = env!("CARGO_BIN_EXE_citus-recovery");

/// Adds `repository` (and the binary) to the test cluster's config file, and makes its cluster
/// read that file.
fn with_repository(t: &mut TestCluster, repository: serde_json::Value) -> PathBuf {
    let file = t.config_file();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    json["repository"] = repository;
    json["binary"] = BIN.into();
    std::fs::write(&file, json.to_string()).unwrap();
    let config = ClusterConfig::from_file(&file).expect("valid config");
    let backend = LocalBackend::new(config).expect("backend");
    t.cluster = Cluster::with_backend(Arc::new(backend))
        .expect("cluster")
        .with_options(RunOptions {
            wait_timeout: Duration::from_secs(300),
            ..RunOptions::default()
        });
    file
}

/// Every file below `dir`, relative to it.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posix_repository_backup_restore_point_verify_restore() {
    skip_unless_postgres!();
    let mut t = TestCluster::new(1);
    let repo = t.dir().join("repo");
    let config_file = with_repository(&mut t, serde_json::json!({"type": "posix", "path": repo}));
    let c = t.cluster.clone();
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    let again = c.plan_prepare_archiving(true, false).await.unwrap();
    assert!(
        again.notes.iter().any(|n| n.contains("already prepared")),
        "{again}"
    );
    let command = t
        .sql("worker1", "SELECT current_setting('archive_command')")
        .await
        .unwrap();
    assert!(
        command[0].contains("archive-push --node 'worker1' %p")
            && command[0].contains(&config_file.to_string_lossy().to_string()),
        "{command:?}"
    );

    c.basebackup(Some("first")).await.expect("base backup");
    let names: Vec<String> = t.config().nodes().map(|n| n.name.clone()).collect();
    for (i, node) in names.iter().enumerate() {
        let lo = i as i64 * 1_000_000;
        t.sql(node, &format!("CREATE TABLE xx(id int); INSERT INTO xx SELECT g FROM generate_series({lo} + 1, {lo} + {FIRST}) g"))
            .await
            .unwrap();
    }
    let point = c
        .create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    assert!(
        point.nodes.iter().all(|n| n.lsn.is_some()),
        "located in the repository: {point:?}"
    );
    for node in &names {
        t.sql(
            node,
            &format!("INSERT INTO xx SELECT g FROM generate_series(1, {SECOND}) g"),
        )
        .await
        .unwrap();
    }

    let report = c.verify(Some("first"), Some("rp")).await.expect("verify");
    assert!(report.ok(), "{report}");
    let listed = c.archived_restore_points().await.unwrap();
    let rp = listed.iter().find(|p| p.name == "rp").expect("listed");
    assert_eq!(rp.copies.len(), names.len(), "{listed:?}");

    c.restore_start(Some("first"), Some("rp"))
        .await
        .expect("restore-start");
    for (node, dir) in names.iter().zip(t.data_dirs()) {
        assert_eq!(t.count(node, "xx").await, FIRST, "node {node} while paused");
        let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap();
        assert!(
            auto.contains("archive-get --node") && auto.contains("%f %p"),
            "{auto}"
        );
    }
    c.restore_finish().await.expect("restore-finish");
    for node in &names {
        t.sql(node, "INSERT INTO xx VALUES (42)")
            .await
            .expect("writable after finish");
        assert_eq!(t.count(node, "xx").await, FIRST + 1);
    }

    assert!(
        files_below(&t.dir().join("archive")).is_empty(),
        "nothing in archiveBaseFolder: {:?}",
        files_below(&t.dir().join("archive"))
    );
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
