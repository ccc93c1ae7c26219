//! The backup-and-restore cycle with the WAL archive in a repository, shared by the posix and
//! S3 scenarios.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use citus_recovery::plan::RunOptions;
use citus_recovery::repository::Key;
use citus_recovery::{Cluster, ClusterConfig, LocalBackend};

use crate::common::TestCluster;

const FIRST: i64 = 3000;
const SECOND: i64 = 2000;
/// The command-line tool the servers run as archive_command and restore_command.
pub const BIN: &str = env!("CARGO_BIN_EXE_citus-recovery");

/// Adds `repository` (and the binary) to the test cluster's config file, and makes its cluster
/// read that file.
pub fn with_repository(t: &mut TestCluster, repository: serde_json::Value) -> PathBuf {
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
pub fn files_below(dir: &Path) -> Vec<String> {
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

/// The whole cycle with the WAL archive in `repository`: prepare-archiving, base backup, rows,
/// restore point, more rows, verify, list, restore-start (counts at the point), restore-finish;
/// the archive folder stays empty. Returns the node names; the servers are stopped.
pub async fn cycle(t: &mut TestCluster, repository: serde_json::Value) -> Vec<String> {
    let config_file = with_repository(t, repository);
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

    let plan = c.plan_basebackup(Some("first")).await.unwrap().to_string();
    assert!(
        plan.contains("into the repository as backups/first/")
            && plan.contains("compressed by the server (zstd:1")
            && plan.contains("stored as it comes"),
        "{plan}"
    );
    let backup = c.basebackup(Some("first")).await.expect("base backup");
    let names: Vec<String> = t.config().nodes().map(|n| n.name.clone()).collect();
    // The base backups are in the repository, and nothing of them on the local disk.
    let repo = c.repository().expect("a repository").clone();
    for node in &names {
        let listed = repo
            .list(&Key::new(&format!("backups/first/{node}")).unwrap())
            .await
            .unwrap();
        let objects: Vec<(&str, u64)> = listed.iter().map(|m| (m.key.name(), m.size)).collect();
        assert!(
            objects.iter().any(|(n, _)| *n == "backup_manifest"),
            "{node}: {objects:?}"
        );
        let base: Vec<u64> = objects
            .iter()
            .filter(|(n, _)| *n == "base.tar.zst")
            .map(|(_, size)| *size)
            .collect();
        assert_eq!(base.len(), 1, "{node}: {objects:?}");
        let part = backup.node(node).expect("a part per node");
        assert_eq!(part.bytes, base[0], "{node}: the stored size is recorded");
        assert!(part.start_lsn < part.end_lsn && part.system_identifier.is_some());
    }
    let local = files_below(&t.dir().join("backup"));
    assert!(
        !local
            .iter()
            .any(|f| f.ends_with(".tar") || f.ends_with("backup_manifest")),
        "no tar on the local disk: {local:?}"
    );
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
    c.stop().await.unwrap();
    names
}
