//! `drill` on a real Citus cluster: the newest restore point forked onto free ports, the
//! config's SQL checks run there, the fork torn down; exit code 0 when every check passes, 2
//! when one fails; the result recorded where `check` reports it.
//!
//! Needs the Citus extension: skipped with a printed reason where it is missing, a failure when
//! `CITUS_RECOVERY_REQUIRE_CITUS=1`.

mod common;

use std::sync::Arc;

use citus_recovery::check::Status;
use citus_recovery::config::{DrillCheck, DrillConfig};
use citus_recovery::{Cluster, LocalBackend};
use common::TestCluster;

/// The drill folders of this process left in the temporary folder.
fn drill_folders() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("citus-recovery-drill-")
                && n.ends_with(&format!("-{}", std::process::id()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_passes_with_a_true_check_fails_with_a_false_one_and_leaves_nothing() {
    skip_unless_postgres!();
    let t = TestCluster::new(2);
    skip_unless_citus!(t);
    let c = &t.cluster;
    c.create(false).await.expect("cluster create with Citus");
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    c.basebackup(Some("base")).await.expect("base backup");
    for sql in [
        "CREATE TABLE t(id bigint PRIMARY KEY)",
        "SELECT create_distributed_table('t', 'id', shard_count := 4)",
        "INSERT INTO t SELECT g FROM generate_series(1, 42) g",
    ] {
        t.sql("coordinator", sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    c.create_restore_point(Some("p"))
        .await
        .expect("restore point");
    t.sql("coordinator", "INSERT INTO t VALUES (1000)")
        .await
        .unwrap();

    let with_checks = |expect: &str| {
        let mut config = t.config().clone();
        config.drill = DrillConfig {
            checks: vec![
                DrillCheck {
                    node: "coordinator".into(),
                    sql: "SELECT count(*) FROM t".into(),
                    expect: Some(expect.into()),
                },
                DrillCheck {
                    node: "worker1".into(),
                    sql: "SELECT 1".into(),
                    expect: None,
                },
            ],
        };
        Cluster::with_backend(Arc::new(LocalBackend::new(config).unwrap())).unwrap()
    };

    let passed = with_checks("42").drill().await.expect("the drill runs");
    assert_eq!(passed.exit_code(), 0, "{passed}");
    assert!(passed.reached && passed.torn_down, "{passed}");
    assert_eq!(passed.restore_point, "p");
    assert_eq!(passed.backup.as_deref(), Some("base"));
    assert!(passed.seconds_to_recover.unwrap() > 0.0);
    assert!(passed.checks.iter().all(|c| c.passed), "{passed}");
    assert_eq!(passed.checks[0].got.as_deref(), Some("42"));
    assert!(drill_folders().is_empty(), "{:?}", drill_folders());
    let report = c.check(false).await.unwrap();
    let drill = report
        .findings
        .iter()
        .find(|f| f.check == "drill")
        .expect("check reports the drill");
    assert_eq!(drill.status, Status::Ok, "{}", drill.message);
    assert!(drill.message.contains("passed"), "{}", drill.message);

    // The live cluster has 43 rows; the point has 42: a check expecting 43 fails the drill.
    let failed = with_checks("43").drill().await.expect("the drill runs");
    assert_eq!(failed.exit_code(), 2, "{failed}");
    assert!(failed.reached && failed.torn_down, "{failed}");
    assert!(
        !failed.checks[0].passed && failed.checks[1].passed,
        "{failed}"
    );
    assert!(failed.to_string().contains("expected \"43\""), "{failed}");
    assert!(drill_folders().is_empty(), "{:?}", drill_folders());
    let report = c.check(false).await.unwrap();
    let drill = report.findings.iter().find(|f| f.check == "drill").unwrap();
    assert_eq!(drill.status, Status::Warning, "{}", drill.message);
    // Two records, the live cluster untouched.
    assert_eq!(
        std::fs::read_dir(t.config().backup_base_folder.join("drills"))
            .unwrap()
            .count(),
        2
    );
    assert_eq!(t.count("coordinator", "t").await, 43);
    // The command-line tool: exit 0 passed, 2 failed, the report as JSON on stdout.
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.config_file()).unwrap()).unwrap();
    for (expect, code) in [("42", 0), ("43", 2)] {
        let mut v = base.clone();
        v["drill"] = serde_json::json!({"checks": [
            {"node": "coordinator", "sql": "SELECT count(*) FROM t", "expect": expect}
        ]});
        let path = t.dir().join(format!("drill-{expect}.json"));
        std::fs::write(&path, v.to_string()).unwrap();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
                .args(["--quiet", "--json", "--config"])
                .arg(&path)
                .arg("drill")
                .env_remove("CITUS_RECOVERY_CONFIG")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "expect {expect}: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("JSON on stdout ({e}): {stderr}"));
        assert_eq!(report["checks"][0]["got"], "42");
        assert_eq!(report["torn_down"], true);
    }
}
