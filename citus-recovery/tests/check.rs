//! `check` on real servers: a healthy cluster is OK (exit 0), no backup is critical or a
//! warning as the thresholds say, broken archiving is critical naming the node.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use citus_recovery::check::Status;
use citus_recovery::{Cluster, ClusterConfig, LocalBackend, RunOptions};
use common::TestCluster;

/// The test cluster's config file with `check` set to `thresholds`, and a cluster reading it.
/// Free space tests are off by default here: the test host's disk may be nearly full.
fn with_thresholds(t: &TestCluster, thresholds: serde_json::Value) -> Cluster {
    let file = t.config_file();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut check = serde_json::json!({
        "freeSpaceWarningPercent": null, "freeSpaceCriticalPercent": null
    });
    for (k, v) in thresholds.as_object().unwrap() {
        check[k] = v.clone();
    }
    json["check"] = check;
    std::fs::write(&file, json.to_string()).unwrap();
    let config = ClusterConfig::from_file(&file).expect("valid config");
    Cluster::with_backend(Arc::new(LocalBackend::new(config).unwrap()))
        .unwrap()
        .with_options(RunOptions {
            wait_timeout: Duration::from_secs(300),
            ..RunOptions::default()
        })
}

fn tool(t: &TestCluster, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(t.config_file())
        .args(args)
        .env_remove("CITUS_RECOVERY_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_backups_archiving_and_exit_codes() {
    skip_unless_postgres!();
    let t = TestCluster::new(1);
    let c = with_thresholds(&t, serde_json::json!({}));
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false).await.expect("archiving");

    // No backup, no restore point: critical by default.
    let report = c.check(false).await.unwrap();
    assert_eq!(report.status, Status::Critical, "{report}");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == "backup_age" && f.status == Status::Critical),
        "{report}"
    );
    // With the backup's critical threshold off, only a warning.
    let lenient = with_thresholds(&t, serde_json::json!({"backupAgeCriticalHours": null}));
    let report = lenient.check(false).await.unwrap();
    assert_eq!(report.status, Status::Warning, "{report}");
    assert_eq!(report.exit_code(), 1);
    let (code, _) = tool(&t, &["check"]);
    assert_eq!(code, 1, "the CLI exits with the status");

    // Healthy: a backup and a restore point just made, archiving into this config's archive.
    let c = with_thresholds(&t, serde_json::json!({}));
    c.basebackup(Some("b1")).await.expect("backup");
    c.create_restore_point(Some("rp1")).await.expect("point");
    let report = c.check(true).await.unwrap();
    assert_eq!(report.status, Status::Ok, "{report}");
    assert_eq!(report.newest_backup.as_ref().unwrap().name, "b1");
    assert_eq!(report.newest_restore_point.as_ref().unwrap().name, "rp1");
    for n in &report.nodes {
        assert!(n.up && n.archiving && n.archive_target_ok, "{n:?}");
        assert_eq!(n.lag_segments, Some(0), "{n:?}");
        assert!(n.last_archived_wal.is_some(), "{n:?}");
        assert!(n.round_trip_seconds.is_some(), "{n:?}");
        assert!(n.free_bytes.is_some() && n.server_version.is_some());
    }
    let (code, json) = tool(&t, &["check", "--json"]);
    assert_eq!(code, 0, "{json}");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["status"], "ok");
    let (code, prom) = tool(&t, &["check", "--prometheus"]);
    assert_eq!(code, 0, "{prom}");
    assert!(
        prom.contains("citus_recovery_check_status{cluster=\"test\"} 0"),
        "{prom}"
    );
    assert!(
        prom.contains("citus_recovery_archive_lag_segments{cluster=\"test\",node=\"worker1\"} 0"),
        "{prom}"
    );

    // A disk threshold no disk meets: critical, naming each node.
    let full = with_thresholds(&t, serde_json::json!({"freeSpaceCriticalPercent": 100}));
    let report = full.check(false).await.unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == "free_space" && f.node.as_deref() == Some("worker1")),
        "{report}"
    );

    // Archiving broken on worker1: critical, naming it.
    for sql in [
        "ALTER SYSTEM SET archive_library = ''",
        "ALTER SYSTEM SET archive_command = 'false'",
        "SELECT pg_reload_conf()",
    ] {
        t.sql("worker1", sql).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.sql(
        "worker1",
        "CREATE TABLE filler AS SELECT generate_series(1, 1000) g; SELECT pg_switch_wal()",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        let failed = t
            .sql("worker1", "SELECT failed_count FROM pg_stat_archiver")
            .await
            .unwrap();
        if failed[0] != "0" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the archiver never tried"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = c.check(false).await.unwrap();
    assert_eq!(report.status, Status::Critical, "{report}");
    let worker = report.nodes.iter().find(|n| n.node == "worker1").unwrap();
    assert_eq!(worker.status, Status::Critical);
    assert!(
        worker.archiver_failing && !worker.archive_target_ok,
        "{worker:?}"
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.node.as_deref() == Some("worker1")
                && f.check == "archiver"
                && f.message.contains("failing")),
        "{report}"
    );
    let coordinator = report
        .nodes
        .iter()
        .find(|n| n.node == "coordinator")
        .unwrap();
    assert_eq!(coordinator.status, Status::Ok, "{report}");
    let (code, text) = tool(&t, &["check"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("CRITICAL: node worker1"), "{text}");

    // Stopped nodes: critical, each named.
    c.stop().await.unwrap();
    let report = c.check(false).await.unwrap();
    for node in t.node_names() {
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.node.as_deref() == Some(&node) && f.check == "up"),
            "{report}"
        );
    }
    assert!(report
        .nodes
        .iter()
        .all(|n| !n.up && n.status == Status::Critical));
    let (code, _) = tool(&t, &["check", "--prometheus"]);
    assert_eq!(code, 2);
}

/// The command-line tool's answer when the check itself cannot run: 3 (unknown).
#[test]
fn check_without_a_config_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(dir.path().join("missing.json"))
        .arg("check")
        .env_remove("CITUS_RECOVERY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}
