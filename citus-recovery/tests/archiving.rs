//! prepare-archiving and archiving that belongs to someone else, on real PostgreSQL servers.

mod common;

use citus_recovery::{Error, Plan};
use common::TestCluster;

/// The archiving settings of a node as configured (archive_command is shown as "(disabled)"
/// through SHOW while archive_mode is off, so they are read from pg_settings' reset_val).
async fn settings(t: &TestCluster, node: &str) -> Vec<String> {
    t.sql(
        node,
        "SELECT name || '=' || reset_val FROM pg_settings WHERE name IN ('archive_command', 'archive_library', 'archive_mode') ORDER BY name",
    )
    .await
    .expect("read settings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tools_archive_command_is_refused_then_replaced_when_asked() {
    skip_unless_postgres!();
    let t = TestCluster::new(1);
    let c = &t.cluster;
    c.create(true).await.expect("create");
    for sql in [
        "ALTER SYSTEM SET archive_command = '/bin/true'",
        "SELECT pg_reload_conf()",
    ] {
        t.sql("worker1", sql)
            .await
            .expect("set another tool's archive_command");
    }
    // The reload reaches new sessions a moment later.
    for _ in 0..50 {
        if settings(&t, "worker1")
            .await
            .contains(&"archive_command=/bin/true".to_string())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let before = (
        settings(&t, "coordinator").await,
        settings(&t, "worker1").await,
    );
    assert!(
        before.1.contains(&"archive_command=/bin/true".to_string()),
        "{before:?}"
    );

    for err in [
        c.plan_prepare_archiving(true, false).await.unwrap_err(),
        c.prepare_archiving(true, false).await.unwrap_err(),
    ] {
        match &err {
            Error::ArchivingInUse {
                node,
                setting,
                current,
            } => {
                assert_eq!(
                    (node.as_str(), setting.as_str(), current.as_str()),
                    ("worker1", "archive_command", "/bin/true")
                );
                assert!(err.to_string().contains("--replace-existing"), "{err}");
            }
            other => panic!("expected ArchivingInUse, got {other:?}"),
        }
    }
    // Refused before anything changed, on every node.
    let after = (
        settings(&t, "coordinator").await,
        settings(&t, "worker1").await,
    );
    assert_eq!(before, after);
    assert!(
        !t.dir().join("archive").exists(),
        "no archive folder was created"
    );

    // The command-line tool: refused with the fix, and the plan with --replace-existing.
    let tool = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
            .arg("--config")
            .arg(t.config_file())
            .args(args)
            .env_remove("CITUS_RECOVERY_CONFIG")
            .output()
            .unwrap()
    };
    let refused = tool(&["prepare-archiving", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("node worker1: archive_command is set to '/bin/true'")
            && stderr.contains("--replace-existing"),
        "{stderr}"
    );
    let dry = tool(&["prepare-archiving", "--dry-run", "--replace-existing"]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );

    let plan = c.plan_prepare_archiving(true, true).await.unwrap();
    let sentence = "replaces archive_command '/bin/true' (another tool's WAL stream stops)";
    assert!(
        plan.step_lines()
            .iter()
            .any(|l| l.starts_with("worker1: ALTER SYSTEM SET") && l.contains(sentence)),
        "{plan}"
    );
    assert!(plan.notes.iter().any(|n| n.contains(sentence)), "{plan}");
    assert!(
        stdout.contains(&format!("archive_command = ''; {sentence}")),
        "{stdout}"
    );
    c.prepare_archiving(true, true).await.expect("replace");
    assert_eq!(
        settings(&t, "worker1").await,
        [
            "archive_command=",
            "archive_library=basic_archive",
            "archive_mode=on"
        ]
    );
    // Ours now: nothing left to do, and no replace needed.
    let again = c.plan_prepare_archiving(true, false).await.unwrap();
    assert!(
        again.notes.iter().any(|n| n.contains("already prepared")),
        "{again}"
    );
    // And archiving works: a backup waits for its WAL in the archive.
    c.basebackup(Some("b")).await.expect("base backup");
}
