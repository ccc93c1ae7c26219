//! The command-line tool as a user meets it: exit codes, errors on stderr, JSON on stdout.

mod common;

use std::process::{Command, Output};

fn tool(args: &[&str], config: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CITUS_RECOVERY_CONFIG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Broken configs, table-driven: each fails with exit code 1 and an error naming the field.
#[test]
fn broken_configs_fail_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good: serde_json::Value =
        serde_json::from_str(&common::config_json(dir.path(), 2)).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "worker count",
            |v| v["workerCount"] = 5.into(),
            "workerCount",
        ),
        (
            "missing field",
            |v| {
                v.as_object_mut().unwrap().remove("clusterBaseFolder");
            },
            "missing field `clusterBaseFolder`",
        ),
        (
            "wrong type",
            |v| v["workerNodes"][0]["port"] = "x".into(),
            "workerNodes[0].port",
        ),
        (
            "unknown field",
            |v| v["archiveFolder"] = "/x".into(),
            "unknown field `archiveFolder`",
        ),
        (
            "duplicate port",
            |v| v["workerNodes"][1]["port"] = v["workerNodes"][0]["port"].clone(),
            "workerNodes[1].port",
        ),
        (
            "relative path",
            |v| v["backupBaseFolder"] = "backups".into(),
            "backupBaseFolder",
        ),
        (
            "no such OS user",
            |v| v["osUser"] = "no-such-user-here".into(),
            "osUser",
        ),
        (
            "no PostgreSQL there",
            |v| v["pgBinDir"] = "/nonexistent/bin".into(),
            "pgBinDir",
        ),
    ];
    for (what, edit, needle) in cases {
        let mut v = good.clone();
        edit(&mut v);
        let path = dir.path().join("broken.json");
        std::fs::write(&path, v.to_string()).unwrap();
        let out = tool(&["cluster", "status"], &path);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
        assert!(err.contains("fix: "), "{what}: no fix in {err:?}");
    }
    std::fs::write(dir.path().join("bad.json"), "{ \"clusterName\": ").unwrap();
    let out = tool(&["list"], &dir.path().join("bad.json"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 1"), "{}", stderr(&out));
    let out = tool(&["list"], &dir.path().join("missing.json"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.json"), "{}", stderr(&out));
}

#[test]
fn the_config_comes_from_the_environment_and_list_speaks_json() {
    skip_unless_postgres!();
    let t = common::TestCluster::new(1);
    let out = Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
        .args(["--json", "list"])
        .env("CITUS_RECOVERY_CONFIG", t.config_file())
        .current_dir(t.dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["backups"], serde_json::json!([]));
    assert_eq!(json["restore_points"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_print_the_plan_and_change_nothing() {
    skip_unless_postgres!();
    let t = common::TestCluster::new(1);
    t.cluster.create(true).await.unwrap();
    let out = tool(
        &["--dry-run", "--json", "prepare-archiving"],
        &t.config_file(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = plan["phases"][0]["nodes"][0]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["action"], "create_folder");
    assert_eq!(steps.last().unwrap()["action"], "restart");
    let text = tool(&["--dry-run", "prepare-archiving"], &t.config_file());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("  coordinator:\n    1. create folder"),
        "{text}"
    );
    assert!(
        !t.dir().join("archive").exists(),
        "the dry run created nothing"
    );
    let mode = t.sql("coordinator", "SHOW archive_mode").await.unwrap();
    assert_eq!(mode, ["off"], "the dry run changed no setting");

    let out = tool(&["--dry-run", "cluster", "stop"], &t.config_file());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("would stop 2 node(s)"));
    assert_eq!(
        t.sql("worker1", "SELECT 1").await.unwrap(),
        ["1"],
        "still running"
    );

    // A name PostgreSQL cannot hold is refused before any node is asked.
    let long = "x".repeat(64);
    let out = tool(&["restore-point", "--name", &long], &t.config_file());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("at most 63 bytes"),
        "{}",
        stderr(&out)
    );
    t.cluster.stop().await.unwrap();
}

#[test]
fn completions_man_page_and_help_come_from_the_command_definition() {
    let nowhere = std::path::Path::new("/nonexistent/cluster-config.json");
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef"),
        ("fish", "complete -c"),
    ] {
        let out = tool(&["completions", shell], nowhere);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}");
        assert!(
            text.contains("restore-start"),
            "{shell}: every command is completed"
        );
    }
    let out = tool(&["man"], nowhere);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH citus-recovery 1"), "{page}");
    assert!(page.contains("restore\\-start"), "{page}");
    let out = tool(&["--help"], nowhere);
    let help = String::from_utf8_lossy(&out.stdout);
    for step in [
        "prepare-archiving",
        "basebackup",
        "restore-point --name",
        "restore-start --restore-point",
        "restore-finish",
    ] {
        assert!(help.contains(&format!("citus-recovery {step}")), "{help}");
    }
}
