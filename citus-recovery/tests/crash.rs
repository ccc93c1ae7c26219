//! restore-start killed (SIGKILL) at many moments, on a backup large enough to take seconds.
//!
//! After each kill, as after a power loss: the servers are started the way an init system would
//! (straight through `pg_ctl`, bypassing the library) and through `cluster start`; no node may
//! then run out of recovery with the data of the backup's end. Then restore-abort, or
//! restore-start run again (it resumes), must bring every row back or reach the restore point.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use citus_recovery::Error;
use common::{TestCluster, FIRST, PG_BIN, SECOND};

/// Rows of padding per node, so extraction and sync take seconds.
const BIG_ROWS: i64 = 1_500_000;

/// Starts a server straight through `pg_ctl` as `postgres`, as an init system would after a
/// crash; `Ok(false)` when PostgreSQL refuses to start that directory.
fn start_directly(data_dir: &Path, log: &Path) -> bool {
    if !data_dir.join("PG_VERSION").exists() || data_dir.join("postmaster.pid").exists() {
        return false;
    }
    let mut cmd = if nix::unistd::Uid::effective().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("pg_ctl"));
        c
    } else {
        Command::new(Path::new(PG_BIN).join("pg_ctl"))
    };
    cmd.arg("start")
        .arg("-D")
        .arg(data_dir)
        .arg("-l")
        .arg(log)
        .args(["-w", "-t", "120"])
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// After a kill: whatever starts must be either the untouched old data or a server still in
/// recovery (it heads for the restore point); never a primary with the backup's data. A server
/// still shutting down (the killed command had asked it to) is waited for, then started.
async fn assert_no_primary_from_the_backup(t: &TestCluster, moment: &str) {
    for node in t.node_names() {
        let n = t.config().node(&node).unwrap().clone();
        let data_dir = t.config().data_dir(&n);
        let mut client = None;
        for _ in 0..120 {
            if let Ok(c) = t.cluster.backend().connect(&n).await {
                client = Some(c);
                break;
            }
            if !data_dir.join("postmaster.pid").exists()
                && !start_directly(&data_dir, &t.config().log_file(&n))
            {
                break; // PostgreSQL refuses to start this directory: safe
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let Some(client) = client else {
            continue;
        };
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            continue; // recovering towards the point: safe
        }
        // At the backup's end the table did not exist yet.
        let count: i64 = match client.query_one("SELECT count(*) FROM xx", &[]).await {
            Ok(row) => row.get(0),
            Err(_) => -1,
        };
        assert_eq!(
            count,
            FIRST + SECOND,
            "{moment}: node {node} runs out of recovery with {count} rows: the backup's data, not the live data"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_start_killed_at_any_moment_never_leaves_a_wrong_primary() {
    skip_unless_postgres!();
    let t = TestCluster::new(1);
    let c = &t.cluster;
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    for node in t.node_names() {
        t.sql(
            &node,
            &format!(
                "CREATE TABLE big(id int, pad text); INSERT INTO big SELECT g, repeat('x', 300) FROM generate_series(1, {BIG_ROWS}) g"
            ),
        )
        .await
        .expect("padding");
    }
    c.basebackup(Some("base")).await.expect("base backup");
    t.insert_everywhere(FIRST, true).await;
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    t.insert_everywhere(SECOND, false).await;

    let bin = env!("CARGO_BIN_EXE_citus-recovery");
    let run = |kill_after: Option<Duration>| {
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(t.config_file())
            .args(["restore-start", "--backup", "base", "--restore-point", "rp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run citus-recovery");
        let started = Instant::now();
        match kill_after {
            Some(d) => {
                std::thread::sleep(d);
                let finished = child.try_wait().unwrap().is_some();
                let _ = child.kill(); // SIGKILL
                let _ = child.wait();
                (started.elapsed(), finished)
            }
            None => {
                let status = child.wait().unwrap();
                assert!(status.success(), "an uninterrupted restore-start succeeds");
                (started.elapsed(), true)
            }
        }
    };

    // How long an uninterrupted restore takes, to spread the kills over it.
    let (full, _) = run(None);
    assert_eq!(t.counts().await, vec![FIRST; 2], "paused at the point");
    c.restore_abort().await.expect("abort the measuring run");
    assert_eq!(t.counts().await, vec![FIRST + SECOND; 2]);
    remove_kept_copies(&t);
    eprintln!("an uninterrupted restore-start takes {full:?}");

    let kills = 8;
    let mut resumed = 0;
    for i in 1..=kills {
        let at = full.mul_f64(i as f64 / (kills + 1) as f64);
        let (_, finished) = run(Some(at));
        let moment = format!("killed after {at:?} of {full:?}");
        eprintln!(
            "{moment}{}",
            if finished { " (it had finished)" } else { "" }
        );
        // A server the killed command had just asked to start may still be coming up: then
        // `cluster start` finds its lock file; what runs is checked just below either way.
        tokio::time::sleep(Duration::from_secs(1)).await;
        match c.start().await {
            Ok(()) | Err(Error::RestoreInProgress { .. }) => {}
            Err(Error::Node { detail, .. }) if detail.contains("postmaster.pid") => {}
            Err(e) => panic!("{moment}: cluster start: {e}"),
        }
        assert_no_primary_from_the_backup(&t, &moment).await;
        if c.restore_state().expect("state readable").is_none() {
            // Killed before the state was written: nothing was touched.
            assert_eq!(t.counts().await, vec![FIRST + SECOND; 2], "{moment}");
            continue;
        }
        if i % 2 == 0 {
            // Run again: it resumes and reaches the point.
            c.restore_start(Some("base"), Some("rp"))
                .await
                .unwrap_or_else(|e| panic!("{moment}: restore-start again: {e}"));
            assert_eq!(
                t.counts().await,
                vec![FIRST; 2],
                "{moment}: resumed to the point"
            );
            resumed += 1;
        }
        c.restore_abort()
            .await
            .unwrap_or_else(|e| panic!("{moment}: restore-abort: {e}"));
        assert_eq!(
            t.counts().await,
            vec![FIRST + SECOND; 2],
            "{moment}: restore-abort brings every row back"
        );
        assert!(c.restore_state().unwrap().is_none());
        remove_kept_copies(&t);
    }
    assert!(resumed > 0, "at least one kill left a restore to resume");
}

/// Removes the restored copies restore-abort kept (`<node>.failed-restore-<time>`) once the
/// test has checked the rows: a copy of every node per kill would otherwise pile up (16 GB at
/// the end, in memory where the tests' folders are on /dev/shm).
fn remove_kept_copies(t: &TestCluster) {
    let base = &t.cluster.config().cluster_base_folder;
    for entry in std::fs::read_dir(base).unwrap() {
        let entry = entry.unwrap();
        if entry
            .file_name()
            .to_string_lossy()
            .contains(".failed-restore-")
        {
            std::fs::remove_dir_all(entry.path()).unwrap();
        }
    }
}
