//! Live progress as the command-line tool shows it: NDJSON events with `--json`, bars on a
//! terminal (run under `script`, which gives the tool a pseudo-terminal).

mod common;

use std::collections::HashMap;
use std::process::{Command, Output};

fn tool(args: &[&str], config: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CITUS_RECOVERY_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("CITUS_RECOVERY_LOG")
        .output()
        .unwrap()
}

/// The progress events of a `--json` run's stderr; every stderr line must be JSON.
fn events(out: &Output) -> Vec<serde_json::Value> {
    let text = String::from_utf8_lossy(&out.stderr);
    let mut events = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line {line:?} is not JSON: {e}"));
        if v["type"] == "progress" {
            events.push(v);
        }
    }
    events
}

/// Checks the rules every event stream keeps, and returns each node's phases in the order they
/// started.
fn check_stream(events: &[serde_json::Value]) -> HashMap<String, Vec<String>> {
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    let mut open: HashMap<String, String> = HashMap::new();
    for e in events {
        let node = e["node"].as_str().unwrap().to_string();
        let phase = e["phase"].as_str().unwrap().to_string();
        let done = e["done"].as_u64().unwrap();
        assert!(
            e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{e}"
        );
        if let Some(total) = e["total"].as_u64() {
            assert!(done <= total, "done above total: {e}");
        }
        match e["state"].as_str().unwrap() {
            "start" => {
                assert!(open.insert(node.clone(), phase.clone()).is_none(), "{e}");
                order.entry(node).or_default().push(phase);
            }
            "progress" => assert_eq!(open.get(&node), Some(&phase), "{e}"),
            "done" => {
                assert_eq!(open.remove(&node), Some(phase), "{e}");
                assert_eq!(e["total"].as_u64(), Some(done), "done is 100%: {e}");
            }
            other => panic!("unknown state {other}: {e}"),
        }
    }
    assert!(open.is_empty(), "steps never done: {open:?}");
    order
}

/// The `done` event of `phase` on `node`.
fn done_of<'a>(events: &'a [serde_json::Value], node: &str, phase: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["node"] == node && e["phase"] == phase && e["state"] == "done")
        .unwrap_or_else(|| panic!("no done event of {phase} on {node}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_progress_of_a_backup_and_a_restore() {
    skip_unless_postgres!();
    let t = common::TestCluster::new(1);
    t.cluster.create(true).await.unwrap();
    t.cluster.prepare_archiving(true, false).await.unwrap();
    t.insert_everywhere(200_000, true).await;

    let out = tool(&["--json", "basebackup", "--name", "b1"], &t.config_file());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["name"], "b1");
    let ev = events(&out);
    let order = check_stream(&ev);
    for node in t.node_names() {
        assert_eq!(order[&node], ["base_backup"], "{node}");
        let done = done_of(&ev, &node, "base_backup");
        assert_eq!(done["unit"], "bytes");
        // A database with 200 000 rows is megabytes, and the report says the same size.
        let bytes = done["done"].as_u64().unwrap();
        assert!(bytes > 5_000_000, "{done}");
        let part = report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == node.as_str())
            .unwrap();
        assert_eq!(part["bytes"].as_u64(), Some(bytes));
    }

    t.cluster.create_restore_point(Some("rp")).await.unwrap();
    let out = tool(
        &["--json", "restore-start", "--restore-point", "rp"],
        &t.config_file(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    let ev = events(&out);
    let order = check_stream(&ev);
    for node in t.node_names() {
        let phases = &order[&node];
        let at = |p: &str| {
            phases
                .iter()
                .position(|x| x == p)
                .unwrap_or_else(|| panic!("{node}: no {p} in {phases:?}"))
        };
        assert!(at("stop") < at("move_aside"), "{phases:?}");
        assert!(at("move_aside") < at("extract"), "{phases:?}");
        assert!(at("extract") < at("start"), "{phases:?}");
        assert_eq!(phases.last().unwrap(), "wait_paused", "{phases:?}");
        let extract = done_of(&ev, &node, "extract");
        assert_eq!(extract["unit"], "bytes");
        assert!(extract["done"].as_u64().unwrap() > 5_000_000, "{extract}");
        let replay = done_of(&ev, &node, "wait_paused");
        assert_eq!(replay["unit"], "wal_bytes", "{replay}");
    }
    assert_eq!(t.counts().await, vec![200_000; t.node_names().len()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_on_a_terminal_render_and_end_cleanly() {
    skip_unless_postgres!();
    let t = common::TestCluster::new(1);
    t.cluster.create(true).await.unwrap();
    t.cluster.prepare_archiving(true, false).await.unwrap();
    t.insert_everywhere(300_000, true).await;
    // `script` runs the tool on a pseudo-terminal and copies what it drew to our stdout.
    let command = format!(
        "{} --config {} basebackup --name tty",
        env!("CARGO_BIN_EXE_citus-recovery"),
        t.config_file().display()
    );
    let out = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .output()
        .expect("script (util-linux) runs");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // The bars were drawn: a node's line with a bar and byte counts, redrawn in place.
    assert!(screen.contains("base_backup"), "{screen}");
    assert!(
        screen.contains('\u{1b}'),
        "no terminal control sequences: {screen}"
    );
    assert!(screen.contains("] base_backup"), "no bar: {screen}");
    // It ends with the summary table and the report, and no bar after them.
    let table = screen.rfind("MB/s").expect("a summary table");
    let tail = &screen[table..];
    assert!(
        !tail.contains("base_backup"),
        "a bar after the table: {tail:?}"
    );
    let row = tail.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("coordinator"), "{tail:?}");
    assert!(tail.contains("tty"), "the report follows: {tail:?}");

    // Off a terminal: no bars and no colours, log lines with the figures, the table at the end.
    let out = tool(&["basebackup", "--name", "piped"], &t.config_file());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err:?}");
    let final_line = err
        .lines()
        .find(|l| l.contains("base_backup") && l.contains("(100%)"))
        .unwrap_or_else(|| panic!("no final figures: {err}"));
    assert!(final_line.contains("coordinator") || final_line.contains("worker1"));
    assert!(err.contains("MB/s"), "{err}");

    // JSON log lines for a collector: every stderr line is JSON, the summary included.
    let out = tool(
        &["--log-format", "json", "basebackup", "--name", "collected"],
        &t.config_file(),
    );
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let summary: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["message"] == "summary").collect();
    assert_eq!(summary.len(), t.node_names().len(), "{lines:?}");
    assert!(summary
        .iter()
        .all(|l| l["bytes"].as_u64() > Some(1_000_000)));
    // The node is on every line logged during a node's steps.
    let steps: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("pg_basebackup"))
        })
        .collect();
    assert_eq!(steps.len(), t.node_names().len());
    assert!(
        steps.iter().all(|l| l["span"]["node"].is_string()),
        "{steps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_a_time_picks_the_newest_point_made_before_it() {
    skip_unless_postgres!();
    let t = common::TestCluster::new(1);
    t.cluster.create(true).await.unwrap();
    t.cluster.prepare_archiving(true, false).await.unwrap();
    t.cluster.basebackup(Some("b")).await.unwrap();
    t.cluster.create_restore_point(Some("early")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    t.cluster.create_restore_point(Some("late")).await.unwrap();
    let time = between.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string();

    let out = tool(&["--json", "verify", "--before", &time], &t.config_file());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["restore_point"], "early");
    // The log and the report say which point and how far before the time.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("restore point \\\"early\\\" chosen"), "{log}");
    assert_eq!(report["before"]["name"], "early", "{report}");
    let note = report["before"]["note"].as_str().unwrap_or_default();
    assert!(note.contains("before it"), "{report}");
    let out = tool(&["verify", "--before", &time], &t.config_file());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("chosen: {note}")), "{text}");
    // A named point: no choice to report.
    let out = tool(
        &["--json", "verify", "--restore-point", "early"],
        &t.config_file(),
    );
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["before"].is_null(), "{report}");

    let out = tool(
        &["--json", "--dry-run", "restore-start", "--before", &time],
        &t.config_file(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = plan["notes"].to_string();
    assert!(notes.contains("before it"), "{notes}");
    assert_eq!(plan["state"]["restore_point"], "early", "{plan}");

    // Before every point: an error naming the time, exit code 1.
    let out = tool(
        &["verify", "--before", "2000-01-01 00:00:00+00"],
        &t.config_file(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("before 2000-01-01 00:00:00 UTC"), "{err}");
    // Local times in the listing carry their offset.
    let out = tool(&["list", "--tz", "local"], &t.config_file());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"early\"") && !text.contains(" UTC  "),
        "{text}"
    );
}
