//! Faults injected into real clusters. Each test asserts both the error and that nothing was lost
//! or changed. `docs/reliability.md` lists them.

mod common;

use std::time::{Duration, Instant};

use citus_recovery::Error;
use common::{TestCluster, FIRST, SECOND};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_restore_point_or_backup_changes_nothing() {
    skip_unless_postgres!();
    let t = TestCluster::prepared(1).await;
    let c = &t.cluster;
    let before = t.snapshot();
    match c.restore_start(Some("base"), Some("no such point")).await {
        Err(Error::UnknownRestorePoint { name, hint }) => {
            assert_eq!(name, "no such point");
            assert!(
                hint.contains("\"rp\""),
                "the known points are listed: {hint}"
            );
        }
        other => panic!("expected UnknownRestorePoint, got {other:?}"),
    }
    match c.restore_start(Some("no-such-backup"), Some("rp")).await {
        Err(Error::UnknownBackup { name, hint, .. }) => {
            assert_eq!(name, "no-such-backup");
            assert!(
                hint.contains("base"),
                "the complete backups are listed: {hint}"
            );
        }
        other => panic!("expected UnknownBackup, got {other:?}"),
    }
    match c.restore_start(None, None).await {
        Err(Error::UnknownRestorePoint { hint, .. }) => {
            assert!(hint.contains("--restore-point"), "{hint}")
        }
        other => panic!("expected UnknownRestorePoint, got {other:?}"),
    }
    assert_eq!(t.snapshot(), before, "no folder was touched");
    assert_eq!(
        t.counts().await,
        vec![FIRST + SECOND; 2],
        "servers still run with their data"
    );
    assert!(c.restore_state().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_point_names_with_quotes_semicolons_and_too_long() {
    skip_unless_postgres!();
    let t = TestCluster::prepared(1).await;
    let c = &t.cluster;
    let long = "ü".repeat(32); // 64 bytes in 32 characters
    match c.create_restore_point(Some(&long)).await {
        Err(Error::InvalidArgument { problem, .. }) => {
            assert!(problem.contains("64 bytes"), "{problem}")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(
        c.list_restore_points().await.unwrap().len(),
        1,
        "nothing recorded for the refused name"
    );
    for name in [
        "'; DROP TABLE xx; --",
        "semi;colon \"double\" \\back",
        &"x".repeat(63),
    ] {
        let rp = c.create_restore_point(Some(name)).await.expect(name);
        assert_eq!(rp.name, name);
    }
    assert_eq!(
        t.counts().await,
        vec![FIRST + SECOND; 2],
        "the names ran as data, not SQL"
    );
    t.insert_everywhere(5, false).await;
    c.restore_start(Some("base"), Some("'; DROP TABLE xx; --"))
        .await
        .expect("restore to the quoted name");
    assert_eq!(t.counts().await, vec![FIRST + SECOND; 2]);
    c.restore_finish().await.unwrap();
    c.restore_start(Some("base"), Some("semi;colon \"double\" \\back"))
        .await
        .expect("backslash and double quotes");
    assert_eq!(t.counts().await, vec![FIRST + SECOND; 2]);
    c.restore_finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_abort_puts_the_old_data_directories_back() {
    skip_unless_postgres!();
    let t = TestCluster::prepared(1).await;
    let c = &t.cluster;
    let report = c.restore_start(Some("base"), Some("rp")).await.unwrap();
    assert_eq!(t.counts().await, vec![FIRST; 2], "paused at the point");
    let aborted = c.restore_abort().await.expect("restore-abort");
    assert_eq!(
        t.counts().await,
        vec![FIRST + SECOND; 2],
        "the data from before restore-start"
    );
    for (n, before) in aborted.nodes.iter().zip(&report.nodes) {
        assert!(n.restored_old_data_dir, "{n:?}");
        let kept = n
            .failed_restore_kept_at
            .as_ref()
            .expect("restored copy kept");
        assert!(kept.join("PG_VERSION").is_file());
        assert!(
            !before.moved_aside_to.as_ref().unwrap().exists(),
            "moved back, not copied"
        );
    }
    for node in t.node_names() {
        let r = t
            .sql(&node, "SELECT pg_is_in_recovery()::text")
            .await
            .unwrap();
        assert_eq!(r, ["false"], "{node} is a primary again");
    }
    assert!(c.restore_state().unwrap().is_none());
    assert!(
        matches!(
            c.restore_abort().await,
            Err(Error::NoRestoreUnderWay { .. })
        ),
        "nothing left to abort"
    );
    // And a restore still works afterwards.
    c.restore_start(Some("base"), Some("rp")).await.unwrap();
    c.restore_finish().await.unwrap();
    assert_eq!(t.counts().await, vec![FIRST; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_will_not_start_rolls_every_node_back() {
    skip_unless_postgres!();
    let t = TestCluster::new(2);
    let c = &t.cluster;
    c.create(true).await.unwrap();
    c.prepare_archiving(true, false).await.unwrap();
    // The setting lands in worker2's postgresql.auto.conf and so in the backup, but takes effect
    // only at the next start: the restored worker2 cannot start, the live one can.
    t.sql(
        "worker2",
        "ALTER SYSTEM SET shared_preload_libraries = 'no_such_library'",
    )
    .await
    .unwrap();
    c.basebackup(Some("base")).await.unwrap();
    t.sql("worker2", "ALTER SYSTEM RESET shared_preload_libraries")
        .await
        .unwrap();
    t.insert_everywhere(FIRST, true).await;
    c.create_restore_point(Some("rp")).await.unwrap();
    t.insert_everywhere(SECOND, false).await;
    let before = t.data_dirs();

    match c.restore_start(Some("base"), Some("rp")).await {
        Err(Error::RestoreFailed { failure, rollback }) => {
            let text = failure.to_string();
            assert!(text.contains("worker2"), "{text}");
            assert!(
                text.contains("no_such_library"),
                "the server log is quoted: {text}"
            );
            assert!(
                rollback.contains("every node was rolled back"),
                "{rollback}"
            );
        }
        other => panic!("expected RestoreFailed, got {other:?}"),
    }
    assert_eq!(
        t.counts().await,
        vec![FIRST + SECOND; 3],
        "every node has its data from before"
    );
    for dir in before {
        assert!(dir.join("PG_VERSION").is_file());
        assert!(!dir.join("recovery.signal").exists(), "{}", dir.display());
    }
    assert!(
        c.restore_state().unwrap().is_none(),
        "the rollback closed the restore"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_twice_across_timelines() {
    skip_unless_postgres!();
    let t = TestCluster::prepared(1).await;
    let c = &t.cluster;
    // Timeline 1 -> restore to rp, promote: timeline 2.
    c.restore_start(Some("base"), Some("rp")).await.unwrap();
    let finished = c.restore_finish().await.unwrap();
    assert!(
        finished.nodes.iter().all(|n| n.timeline == Some(2)),
        "{finished:?}"
    );
    t.insert_everywhere(100, false).await;
    let rp2 = c.create_restore_point(Some("rp2")).await.unwrap();
    assert!(rp2.nodes.iter().all(|n| n.timeline == 2), "{rp2:?}");
    t.insert_everywhere(50, false).await;

    // The timeline 1 backup reaches a point on timeline 2 through the history file.
    c.restore_start(Some("base"), Some("rp2"))
        .await
        .expect("restore to a point on timeline 2");
    assert_eq!(t.counts().await, vec![FIRST + 100; 2]);
    let finished = c.restore_finish().await.unwrap();
    assert!(
        finished.nodes.iter().all(|n| n.timeline == Some(3)),
        "{finished:?}"
    );

    // And back to the point on the older timeline 1: the new timeline is above every history file.
    // The folders an attempt creates are taken for the next 40 seconds' stamps, as two restores
    // in one second would leave them: the attempt takes a stamp of its own and leaves them be.
    let base = c.config().cluster_base_folder.clone();
    let now = chrono::Utc::now();
    let mut decoys = Vec::new();
    for second in 0..40 {
        let stamp = citus_recovery::names::default_name(now + chrono::Duration::seconds(second));
        for name in [
            format!("coordinator.before-restore-{stamp}"),
            format!("worker1.failed-restore-{stamp}"),
            format!("worker1.tablespaces-{stamp}"),
        ] {
            let decoy = base.join(name);
            // The restore just before may have begun in this very second: its own folder
            // is taken already, and stays as it is.
            match std::fs::create_dir(&decoy) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("{}: {e}", decoy.display()),
            }
            std::fs::write(decoy.join("mark"), "kept").unwrap();
            decoys.push(decoy);
        }
    }
    c.restore_start(Some("base"), Some("rp"))
        .await
        .expect("restore back to timeline 1");
    let stamp = c.restore_state().unwrap().unwrap().stamp;
    assert!(
        decoys
            .iter()
            .all(|d| !d.to_string_lossy().ends_with(&stamp)),
        "the attempt took a stamp whose folders existed: {stamp}"
    );
    for d in &decoys {
        assert_eq!(std::fs::read_to_string(d.join("mark")).unwrap(), "kept");
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 1, "{}", d.display());
    }
    assert_eq!(t.counts().await, vec![FIRST; 2]);
    let finished = c.restore_finish().await.unwrap();
    assert!(
        finished.nodes.iter().all(|n| n.timeline == Some(4)),
        "{finished:?}"
    );
    t.insert_everywhere(1, false).await;
    assert_eq!(t.counts().await, vec![FIRST + 1; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_backup_killed_half_way_is_never_offered() {
    skip_unless_postgres!();
    let t = TestCluster::new(1);
    let c = &t.cluster;
    c.create(true).await.unwrap();
    c.prepare_archiving(true, false).await.unwrap();
    // Enough data that the backup takes a moment.
    t.sql("coordinator", "CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 1500000) g")
        .await
        .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(t.config_file())
        .args(["--quiet", "basebackup", "--name", "killed"])
        .spawn()
        .unwrap();
    let tar = t.dir().join("backup/killed/coordinator/base.tar");
    let started = Instant::now();
    while std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0) < 1 << 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the backup never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    // pg_basebackup (and its WAL streaming child) die with their parent rather than go on as
    // orphans writing into the backup folder. (Dead children may linger as zombies where nothing
    // reaps orphans, as in some containers: those write nothing.)
    let started = Instant::now();
    loop {
        let ps = std::process::Command::new("ps")
            .args(["-eo", "pid,stat,args"])
            .output()
            .unwrap();
        let alive: Vec<String> = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains("backup/killed"))
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|stat| !stat.starts_with('Z'))
            })
            .map(str::to_string)
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pg_basebackup outlived its parent: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    assert!(
        c.list_backups().await.unwrap().is_empty(),
        "a killed backup is never listed"
    );
    match c.catalog().backup("killed").await {
        Err(Error::UnknownBackup { hint, .. }) => {
            assert!(hint.contains("did not complete"), "{hint}")
        }
        other => panic!("expected UnknownBackup, got {other:?}"),
    }
    // The lock died with the process; the next backup works.
    let next = c.basebackup(Some("next")).await.expect("the next backup");
    assert_eq!(c.list_backups().await.unwrap(), vec![next]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_accepts_a_segment_again_only_with_identical_content() {
    skip_unless_postgres!();
    let t = TestCluster::new(0);
    let c = &t.cluster;
    c.create(true).await.unwrap();
    c.prepare_archiving(true, false).await.unwrap();
    let node = t.config().coordinator.clone();
    let data = t.config().data_dir(&node);
    let archive = t.config().archive_dir(&node);
    let seg = t
        .sql("coordinator", "SELECT pg_walfile_name(pg_switch_wal())")
        .await
        .unwrap()[0]
        .clone();
    wait_for(|| archive.join(&seg).is_file());
    let archived = std::fs::read(archive.join(&seg)).unwrap();
    let failures = || async {
        t.sql("coordinator", "SELECT failed_count FROM pg_stat_archiver")
            .await
            .unwrap()[0]
            .clone()
    };
    assert_eq!(failures().await, "0");

    // The same segment again, identical: accepted.
    let status = data.join("pg_wal/archive_status");
    std::fs::rename(
        status.join(format!("{seg}.done")),
        status.join(format!("{seg}.ready")),
    )
    .unwrap();
    // The archiver looks at archive_status when woken: a new segment to archive wakes it.
    t.sql("coordinator", "CREATE TABLE wake(); SELECT pg_switch_wal()")
        .await
        .unwrap();
    wait_for(|| status.join(format!("{seg}.done")).exists());
    assert_eq!(failures().await, "0", "an identical copy is success");

    // A different file under the next segment's name: refused, and kept as it was.
    let next = t
        .sql(
            "coordinator",
            "SELECT pg_walfile_name(pg_current_wal_lsn())",
        )
        .await
        .unwrap()[0]
        .clone();
    std::fs::write(archive.join(&next), b"not this segment").unwrap();
    t.sql("coordinator", "SELECT pg_switch_wal()")
        .await
        .unwrap();
    let started = Instant::now();
    while failures().await == "0" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a different file was not refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        std::fs::read(archive.join(&next)).unwrap(),
        b"not this segment",
        "never overwritten"
    );
    assert_eq!(std::fs::read(archive.join(&seg)).unwrap(), archived);
    // Make room for the real segment so the server can stop cleanly.
    std::fs::remove_file(archive.join(&next)).unwrap();
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_wal_segment_stops_restore_before_anything_changes() {
    skip_unless_postgres!();
    let t = TestCluster::new(1);
    let c = &t.cluster;
    c.create(true).await.unwrap();
    c.prepare_archiving(true, false).await.unwrap();
    c.basebackup(Some("base")).await.unwrap();
    t.insert_everywhere(FIRST, true).await;
    // A segment of its own between the backup and the restore point, on worker1.
    let seg = t
        .sql("worker1", "SELECT pg_walfile_name(pg_switch_wal())")
        .await
        .unwrap()[0]
        .clone();
    t.insert_everywhere(SECOND, false).await;
    c.create_restore_point(Some("rp")).await.unwrap();
    let archived = t
        .config()
        .archive_dir(t.config().node("worker1").unwrap())
        .join(&seg);
    assert!(archived.is_file(), "{} was archived", archived.display());
    let kept = t.dir().join("kept-segment");
    std::fs::rename(&archived, &kept).unwrap();
    let before = t.snapshot();

    match c.restore_start(Some("base"), Some("rp")).await {
        Err(Error::PreflightFailed { failures, .. }) => {
            let text = failures.join("\n");
            assert!(text.contains("node worker1: WAL continuity"), "{text}");
            assert!(text.contains(&seg), "the segment is named: {text}");
            assert!(
                !text.contains("node coordinator"),
                "the coordinator is fine: {text}"
            );
        }
        other => panic!("expected PreflightFailed, got {other:?}"),
    }
    assert_eq!(t.snapshot(), before, "nothing on disk changed");
    assert_eq!(t.counts().await, vec![FIRST + SECOND; 2]);
    assert!(c.restore_state().unwrap().is_none());

    // With the segment back, the same checks pass.
    std::fs::rename(&kept, &archived).unwrap();
    let report = c.verify(Some("base"), Some("rp")).await.unwrap();
    assert!(report.ok(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_backup_file_stops_restore_before_anything_changes() {
    skip_unless_postgres!();
    let t = TestCluster::prepared(1).await;
    let c = &t.cluster;
    let tar_path = t.dir().join("backup/base/worker1/base.tar");
    let offset = {
        let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
        let entry = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap().to_str() == Some("PG_VERSION"))
            .expect("PG_VERSION in the backup");
        entry.raw_file_position()
    };
    let mut bytes = std::fs::read(&tar_path).unwrap();
    bytes[offset as usize] ^= 0x01;
    std::fs::write(&tar_path, bytes).unwrap();
    let before = t.snapshot();

    match c.restore_start(Some("base"), Some("rp")).await {
        Err(Error::PreflightFailed { failures, .. }) => {
            let text = failures.join("\n");
            assert!(
                text.contains("node worker1: backup files: PG_VERSION has checksum"),
                "{text}"
            );
        }
        other => panic!("expected PreflightFailed, got {other:?}"),
    }
    assert_eq!(t.snapshot(), before, "nothing on disk changed");
    assert_eq!(t.counts().await, vec![FIRST + SECOND; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_is_chosen_by_lsn_and_never_the_newest_by_default() {
    skip_unless_postgres!();
    let t = TestCluster::new(1);
    let c = &t.cluster;
    c.create(true).await.unwrap();
    c.prepare_archiving(true, false).await.unwrap();
    t.insert_everywhere(10, true).await;
    c.create_restore_point(Some("early")).await.unwrap();
    c.basebackup(Some("b1")).await.unwrap();
    t.insert_everywhere(FIRST, false).await;
    c.create_restore_point(Some("mid")).await.unwrap();
    c.basebackup(Some("b2")).await.unwrap();
    t.insert_everywhere(SECOND, false).await;
    c.create_restore_point(Some("late")).await.unwrap();

    // A point older than every backup: no fallback to the newest; the node is named.
    match c.restore_start(None, Some("early")).await {
        Err(Error::UnknownBackup { hint, .. }) => {
            assert!(hint.contains("b2: node coordinator"), "{hint}");
            assert!(hint.contains("b1: node coordinator"), "{hint}");
        }
        other => panic!("expected UnknownBackup, got {other:?}"),
    }
    let mid = c.plan_restore_start(None, Some("mid")).await.unwrap();
    assert_eq!(mid.state.backup, "b1", "b2 ends after mid");
    assert!(
        mid.notes[0].contains("backup b1 is the newest"),
        "{:?}",
        mid.notes
    );
    assert_eq!(
        c.plan_restore_start(None, Some("late"))
            .await
            .unwrap()
            .state
            .backup,
        "b2"
    );

    c.restore_start(None, Some("mid"))
        .await
        .expect("restore with the chosen backup");
    assert_eq!(t.counts().await, vec![10 + FIRST; 2]);
    c.restore_finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citus_worker_missing_from_the_config_is_refused() {
    skip_unless_postgres!();
    let t = TestCluster::new(2);
    skip_unless_citus!(t);
    t.cluster.create(false).await.unwrap();
    t.cluster.prepare_archiving(true, false).await.unwrap();
    // The same cluster seen through a config that lacks worker2.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.config_file()).unwrap()).unwrap();
    let worker2_port = json["workerNodes"][1]["port"].clone();
    json["workerNodes"].as_array_mut().unwrap().pop();
    json["workerCount"] = 1.into();
    let partial = citus_recovery::Cluster::new(
        citus_recovery::ClusterConfig::from_json_str(&json.to_string(), None).unwrap(),
    )
    .unwrap();
    for err in [
        partial.basebackup(Some("partial")).await.unwrap_err(),
        partial
            .create_restore_point(Some("partial"))
            .await
            .unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            text.contains(&format!(":{worker2_port} in pg_dist_node")),
            "{text}"
        );
    }
    assert!(
        partial.list_backups().await.unwrap().is_empty(),
        "no backup was taken"
    );
    assert!(
        partial.list_restore_points().await.unwrap().is_empty(),
        "no restore point was made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_archive_is_reported_not_waited_on_forever() {
    skip_unless_postgres!();
    let t = TestCluster::new(0);
    let c = &t.cluster;
    c.create(true).await.unwrap();
    c.prepare_archiving(true, false).await.unwrap();
    // The server's user can no longer write into its archive folder.
    let archive = t.config().archive_dir(&t.config().coordinator);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o500)).unwrap();
    let started = Instant::now();
    let err = c.create_restore_point(Some("blocked")).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("node coordinator: archive WAL segment"),
        "{text}"
    );
    assert!(text.contains("failure(s)"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        c.list_restore_points().await.unwrap().is_empty(),
        "an unarchived point is not recorded"
    );
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o700)).unwrap();
}
