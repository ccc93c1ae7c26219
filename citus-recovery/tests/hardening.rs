//! The root/postgres boundary, pause at the real target, and node identity, on real servers.
//! `docs/reliability.md` lists each with the issue item it covers.

mod common;

use std::os::unix::fs::MetadataExt;

use citus_recovery::plan::RestoreState;
use citus_recovery::Error;
use common::{TestCluster, FIRST, SECOND};

fn postgres_ids() -> Option<(u32, u32)> {
    let u = nix::unistd::User::from_name("postgres").ok()??;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_state_the_servers_user_could_edit_is_never_acted_on() {
    skip_unless_postgres!();
    let t = TestCluster::prepared(1).await;
    let c = &t.cluster;
    c.restore_start(Some("base"), Some("rp")).await.unwrap();
    let state_path = RestoreState::path(t.config());
    let meta = std::fs::metadata(&state_path).unwrap();
    assert_eq!(meta.uid(), nix::unistd::Uid::effective().as_raw());
    assert_eq!(meta.mode() & 0o777, 0o600, "the state file is private");
    assert!(
        !state_path.starts_with(&t.config().cluster_base_folder),
        "not in a folder the servers' user can write"
    );

    // Pointing the state at another directory changes nothing: paths come from the config.
    let victim = t.dir().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), b"precious").unwrap();
    let text = std::fs::read_to_string(&state_path).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for n in json["nodes"].as_array_mut().unwrap() {
        n["moved_aside_to"] = serde_json::json!(victim);
        n["data_dir"] = serde_json::json!(t.dir().join("elsewhere"));
    }
    std::fs::write(&state_path, serde_json::to_vec(&json).unwrap()).unwrap();
    let plan = c.plan_restore_abort().await.unwrap();
    assert!(
        !plan.to_string().contains(victim.to_str().unwrap()),
        "{plan}"
    );

    // A state file the servers' user owns (it could have written it) is refused outright.
    if let (Some((uid, gid)), true) = (postgres_ids(), nix::unistd::Uid::effective().is_root()) {
        std::os::unix::fs::chown(&state_path, Some(uid), Some(gid)).unwrap();
        match c.restore_abort().await {
            Err(Error::UntrustedFile { path, .. }) => assert_eq!(path, state_path),
            other => panic!("expected UntrustedFile, got {other:?}"),
        }
        let me = nix::unistd::Uid::effective().as_raw();
        std::os::unix::fs::chown(&state_path, Some(me), None).unwrap();
    }
    // A stamp that would make a path outside the cluster folder is refused.
    json["stamp"] = serde_json::json!("../../../victim");
    std::fs::write(&state_path, serde_json::to_vec(&json).unwrap()).unwrap();
    assert!(matches!(
        c.restore_abort().await,
        Err(Error::UntrustedFile { .. })
    ));
    json["stamp"] = serde_json::from_str::<serde_json::Value>(&text).unwrap()["stamp"].clone();
    std::fs::write(&state_path, serde_json::to_vec(&json).unwrap()).unwrap();
    c.restore_abort().await.expect("abort with the real paths");
    assert_eq!(std::fs::read(victim.join("keep")).unwrap(), b"precious");
    assert_eq!(t.counts().await, vec![FIRST + SECOND; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_raised_after_the_backup_are_raised_in_the_restored_copy() {
    skip_unless_postgres!();
    let t = TestCluster::prepared(1).await;
    let c = &t.cluster;
    // After the backup: a worker gets more connections and prepared transactions (as Citus
    // needs), restarts, writes, then a restore point. Replay meets PARAMETER_CHANGE records.
    for set in [
        "ALTER SYSTEM SET max_connections = 150",
        "ALTER SYSTEM SET max_prepared_transactions = 40",
    ] {
        t.sql("worker1", set).await.unwrap();
    }
    c.stop().await.unwrap();
    c.start().await.unwrap();
    t.insert_everywhere(7, false).await;
    c.create_restore_point(Some("raised")).await.unwrap();
    t.insert_everywhere(11, false).await;

    let report = c.verify(Some("base"), Some("raised")).await.unwrap();
    let wal = report
        .wal_parameters
        .get("worker1")
        .expect("worker1's WAL raised settings");
    assert_eq!((wal.max_connections, wal.max_prepared_xacts), (150, 40));
    let plan = c
        .plan_restore_start(Some("base"), Some("raised"))
        .await
        .unwrap();
    let text = plan.to_string();
    assert!(text.contains("max_connections = 150"), "{text}");
    assert!(text.contains("max_prepared_transactions = 40"), "{text}");

    let paused = c.restore_start(Some("base"), Some("raised")).await.unwrap();
    let expected = FIRST + SECOND + 7;
    assert_eq!(
        t.counts().await,
        vec![expected; 2],
        "every node at the point"
    );
    for n in &paused.nodes {
        assert!(n.replay_lsn.0 > 0);
    }
    c.restore_finish().await.unwrap();
    assert_eq!(
        t.sql("worker1", "SHOW max_prepared_transactions")
            .await
            .unwrap(),
        vec!["40"],
        "kept after restore-finish: the cluster ran with it at the point"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_never_restored_into_another_server() {
    skip_unless_postgres!();
    let t = TestCluster::prepared(1).await;
    // The same folders, but the config's coordinator and worker trade ports: each name now
    // reaches the other's server.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.config_file()).unwrap()).unwrap();
    let (a, b) = (
        json["coordinatorNode"]["port"].clone(),
        json["workerNodes"][0]["port"].clone(),
    );
    json["coordinatorNode"]["port"] = b;
    json["workerNodes"][0]["port"] = a;
    let swapped = citus_recovery::ClusterConfig::from_json_str(&json.to_string(), None).unwrap();
    let cluster = citus_recovery::Cluster::new(swapped).unwrap();
    let before = t.snapshot();
    match cluster.plan_restore_start(Some("base"), Some("rp")).await {
        Err(Error::Identity { node, problem, .. }) => {
            assert_eq!(node, "coordinator");
            assert!(problem.contains("backed up as node worker1"), "{problem}");
        }
        other => panic!("expected Identity, got {other:?}"),
    }
    assert_eq!(t.snapshot(), before, "nothing touched");
}

/// Every file below `dir` with its contents, to show a folder was left alone.
fn files_below(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablespace_on_a_worker_is_restored_beside_it_and_the_live_one_is_untouched() {
    skip_unless_postgres!();
    let t = TestCluster::new(1);
    let c = &t.cluster;
    c.create(true).await.unwrap();
    c.prepare_archiving(true, false).await.unwrap();
    let live = t.dir().join("ts-live");
    std::fs::create_dir(&live).unwrap();
    if let Some((uid, gid)) = postgres_ids().filter(|_| nix::unistd::Uid::effective().is_root()) {
        std::os::unix::fs::chown(&live, Some(uid), Some(gid)).unwrap();
    }
    t.sql(
        "worker1",
        &format!("CREATE TABLESPACE ts LOCATION '{}'", live.display()),
    )
    .await
    .unwrap();
    t.sql("worker1", "CREATE TABLE spaced(id int) TABLESPACE ts")
        .await
        .unwrap();
    c.basebackup(Some("base")).await.unwrap();
    let backup = c.catalog().backup("base").await.unwrap();
    assert_eq!(backup.node("worker1").unwrap().tablespaces.len(), 1);
    t.sql(
        "worker1",
        "INSERT INTO spaced SELECT generate_series(1, 500)",
    )
    .await
    .unwrap();
    c.create_restore_point(Some("rp")).await.unwrap();
    t.sql(
        "worker1",
        "INSERT INTO spaced SELECT generate_series(1, 300)",
    )
    .await
    .unwrap();
    c.stop().await.unwrap(); // the live folder is quiet from here on
    let before = files_below(&live);

    let plan = c
        .plan_restore_start(Some("base"), Some("rp"))
        .await
        .unwrap();
    assert!(plan.to_string().contains("worker1.tablespaces-"), "{plan}");
    c.restore_start(Some("base"), Some("rp")).await.unwrap();
    assert_eq!(t.count("worker1", "spaced").await, 500);
    let location = t
        .sql(
            "worker1",
            "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts'",
        )
        .await
        .unwrap();
    assert!(
        location[0].contains("worker1.tablespaces-"),
        "the restored copy uses its own folder: {location:?}"
    );
    c.restore_finish().await.unwrap();
    t.sql("worker1", "INSERT INTO spaced SELECT generate_series(1, 5)")
        .await
        .unwrap();
    c.stop().await.unwrap();
    assert_eq!(
        files_below(&live),
        before,
        "replay and writes never touched the live folder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_the_backups_wal_and_only_the_archive_it_needs() {
    skip_unless_postgres!();
    let t = TestCluster::new(1);
    let c = &t.cluster;
    c.create(true).await.unwrap();
    c.prepare_archiving(true, false).await.unwrap();
    // Segments archived before the backup.
    t.insert_everywhere(FIRST, true).await;
    for _ in 0..3 {
        t.insert_everywhere(100, false).await;
        for node in t.node_names() {
            t.sql(&node, "SELECT pg_switch_wal()").await.unwrap();
        }
    }
    c.basebackup(Some("base")).await.unwrap();
    c.create_restore_point(Some("rp")).await.unwrap();
    assert!(c.verify(Some("base"), Some("rp")).await.unwrap().ok());

    // Damage before the backup's start does not matter: it is never read.
    let archive = t.config().archive_dir(&t.config().coordinator);
    let mut segments: Vec<_> = std::fs::read_dir(&archive)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.len() == 24)
        .collect();
    segments.sort();
    let oldest = archive.join(&segments[0]);
    let mut bytes = std::fs::read(&oldest).unwrap();
    bytes[100..200].fill(0xAB);
    std::fs::write(&oldest, &bytes).unwrap();
    let report = c.verify(Some("base"), Some("rp")).await.unwrap();
    assert!(report.ok(), "{report}");

    // A flipped byte inside a record of pg_wal.tar fails verify and restore-start.
    let backup = c.catalog().backup("base").await.unwrap();
    let part = backup.node("coordinator").unwrap();
    let tar_path = c
        .catalog()
        .node_backup_dir("base", "coordinator")
        .join("pg_wal.tar");
    let segment = citus_recovery::wal::segment_file_name(
        part.timeline,
        part.start_lsn,
        citus_recovery::wal::DEFAULT_SEGMENT_SIZE,
    );
    let offset = {
        let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
        let entry = archive
            .entries_with_seek()
            .unwrap()
            .flatten()
            .find(|e| e.path().unwrap().to_string_lossy().ends_with(&segment))
            .expect("the backup's first segment is in pg_wal.tar");
        entry.raw_file_position()
            + part.start_lsn.0 % citus_recovery::wal::DEFAULT_SEGMENT_SIZE
            + 30 // inside the first record's data, past its 24-byte header
    };
    let mut tar_bytes = std::fs::read(&tar_path).unwrap();
    tar_bytes[offset as usize] ^= 0x55;
    std::fs::write(&tar_path, &tar_bytes).unwrap();
    let report = c.verify(Some("base"), Some("rp")).await.unwrap();
    let failure = report
        .checks
        .iter()
        .find(|ch| !ch.ok)
        .expect("a failed check");
    assert_eq!(failure.check, "backup WAL", "{report}");
    assert!(failure.detail.contains(&segment), "{}", failure.detail);
    let before = t.snapshot();
    assert!(matches!(
        c.restore_start(Some("base"), Some("rp")).await,
        Err(Error::PreflightFailed { .. })
    ));
    assert_eq!(t.snapshot(), before, "nothing touched");
}
