//! restore-start fills archive-get's prefetch spool before each server starts, and
//! restore-finish and restore-abort remove it, on real servers with a posix repository.
//!
//! Alone in its binary: it sets `CITUS_RECOVERY_LOG=debug` for the servers it starts, so that
//! archive-get says in the server log where each segment came from.

mod common;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;

use std::path::{Path, PathBuf};

use citus_recovery::archiving::SPOOL_DIR;
use common::TestCluster;
use repository_cycle::with_repository;

/// Every `<folder>/pg_wal/citus-recovery-spool` in the cluster's folder (data directories and
/// the copies restore-start and restore-abort moved aside).
fn spools(cluster_base: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cluster_base)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("pg_wal").join(SPOOL_DIR))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

/// What a node's server log gained since `from` bytes.
fn log_since(path: &Path, from: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.get(from..).unwrap_or_default().to_string()
}

/// A cluster of `workers` workers with a posix repository, created; its servers' archive-get
/// says in their logs where each segment came from.
async fn created_with_repository(workers: usize) -> TestCluster {
    // Before any server starts: they inherit it, and so do their restore_commands.
    std::env::set_var("CITUS_RECOVERY_LOG", "debug");
    let mut t = TestCluster::new(workers);
    let repo = t.dir().join("repo");
    with_repository(&mut t, serde_json::json!({"type": "posix", "path": repo}));
    t.cluster.create(true).await.expect("create");
    t
}

/// Asserts that archive-get's first answer for segment `first` in the server log `text` of
/// `node` came from the spool restore-start filled.
fn first_answer_was_spooled(node: &str, first: &str, text: &str) {
    let line = text
        .lines()
        .find(|l| l.contains(&format!("archive-get {first}:")))
        .unwrap_or_else(|| panic!("{node}: no archive-get line for {first}:\n{text}"));
    assert!(
        line.ends_with("from the prefetch spool"),
        "{node}: segment {first} was spooled before the server asked: {line}\n{text}"
    );
}

/// Creates table `xx` on `node` and fills `segments` WAL segments with 1000 rows each, so that
/// replay has segments to ask for between a backup and a later restore point.
async fn rows_in_segments(t: &TestCluster, node: &str, segments: usize) {
    t.sql(node, "CREATE TABLE xx(id int)").await.unwrap();
    for _ in 0..segments {
        t.sql(
            node,
            "INSERT INTO xx SELECT g FROM generate_series(1, 1000) g; SELECT pg_switch_wal()",
        )
        .await
        .unwrap();
    }
}

/// Archiving on, backup "first", 3 segments of rows (table `xx`) on both nodes, then restore
/// point "rp": replay has segments to ask for between the two.
async fn backup_then_point(t: &TestCluster) -> citus_recovery::catalog::Backup {
    let c = &t.cluster;
    c.prepare_archiving(true, false).await.expect("archiving");
    let backup = c.basebackup(Some("first")).await.expect("base backup");
    for node in ["coordinator", "worker1"] {
        rows_in_segments(t, node, 3).await;
    }
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    backup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_start_prefetches_before_the_server_asks_and_finish_and_abort_remove_the_spool() {
    skip_unless_postgres!();
    let t = created_with_repository(1).await;
    let c = t.cluster.clone();
    let backup = backup_then_point(&t).await;
    for node in ["coordinator", "worker1"] {
        t.sql(
            node,
            "INSERT INTO xx SELECT g FROM generate_series(1, 500) g",
        )
        .await
        .unwrap();
    }

    let plan = c
        .plan_restore_start(Some("first"), Some("rp"))
        .await
        .unwrap()
        .to_string();
    assert!(
        plan.contains("start the archive-get prefetch worker as the servers' user"),
        "{plan}"
    );
    let config = t.config().clone();
    let logs: Vec<(String, PathBuf, usize)> = config
        .nodes()
        .map(|n| {
            let log = config.log_file(n);
            let len = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
            (n.name.clone(), log, len)
        })
        .collect();
    c.restore_start(Some("first"), Some("rp"))
        .await
        .expect("restore-start");
    for (node, log, from) in &logs {
        assert_eq!(t.count(node, "xx").await, 3000, "{node} at the point");
        let part = backup.node(node).unwrap();
        let first = citus_recovery::wal::segment_file_name(part.timeline, part.start_lsn, 16 << 20);
        first_answer_was_spooled(node, &first, &log_since(log, *from));
    }
    let base = config.cluster_base_folder.clone();
    assert!(
        !spools(&base).is_empty(),
        "the spools are there while paused"
    );

    // A worker still running at the promotion (its lock held for 9 s): archive-get's own
    // removal at the new timeline's history file gives up after 2 s; restore-finish waits.
    let held: Vec<std::fs::File> = spools(&base)
        .iter()
        .map(|p| {
            let dir = std::fs::File::open(p).unwrap();
            // SAFETY: flock on a descriptor the test owns.
            let rc = unsafe {
                nix::libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&dir),
                    nix::libc::LOCK_EX | nix::libc::LOCK_NB,
                )
            };
            assert_eq!(rc, 0, "no worker holds {} any more", p.display());
            dir
        })
        .collect();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(9));
        drop(held);
    });
    c.restore_finish().await.expect("restore-finish");
    release.join().unwrap();
    assert_eq!(spools(&base), Vec::<PathBuf>::new(), "removed by finish");
    for node in ["coordinator", "worker1"] {
        assert_eq!(t.count(node, "xx").await, 3000, "{node} after finish");
    }

    // Again, then undone: the copy restore-abort keeps holds no spool either.
    c.restore_start(Some("first"), Some("rp"))
        .await
        .expect("restore-start again");
    assert!(!spools(&base).is_empty(), "filled again");
    c.restore_abort().await.expect("restore-abort");
    assert_eq!(spools(&base), Vec::<PathBuf>::new(), "removed by abort");
    let kept: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".failed-restore-"))
        .collect();
    assert_eq!(kept.len(), 2, "the restored copies are kept: {kept:?}");
    for node in ["coordinator", "worker1"] {
        assert_eq!(
            t.count(node, "xx").await,
            3000,
            "{node}: the data directory from before the abort"
        );
    }
    c.stop().await.unwrap();
}

/// Damages, in the posix repository `repo`, every WAL object of `node` from segment `first` on;
/// returns each path with its bytes, to put back.
fn damage_wal_from(repo: &Path, node: &str, first: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut damaged = Vec::new();
    for entry in std::fs::read_dir(repo.join("wal").join(node))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let segment = name.trim_end_matches(".zst").trim_end_matches(".lz4");
        if segment.len() != 24 || segment < first {
            continue;
        }
        let path = entry.path();
        let bytes = std::fs::read(&path).unwrap();
        let mut bad = bytes.clone();
        for b in bad.iter_mut().skip(64) {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bad).unwrap();
        damaged.push((path, bytes));
    }
    damaged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_starts_on_the_wal_the_pre_flight_read_not_on_a_later_copy() {
    skip_unless_postgres!();
    let t = created_with_repository(1).await;
    let c = t.cluster.clone();
    let backup = backup_then_point(&t).await;
    // The proof reads every segment from the backup to the point and keeps them.
    let plan = c
        .plan_restore_start(Some("first"), Some("rp"))
        .await
        .unwrap();
    // Then the repository's copies go bad: a restore that fetched them again would fail
    // (archive-get refuses a damaged object, and replay never reaches the point).
    let repo = t.dir().join("repo");
    let mut damaged = Vec::new();
    for node in ["coordinator", "worker1"] {
        let part = backup.node(node).unwrap();
        let first = citus_recovery::wal::segment_file_name(part.timeline, part.start_lsn, 16 << 20);
        let hit = damage_wal_from(&repo, node, &first);
        assert!(
            hit.len() >= 4,
            "{node}: {} segments from {first} on",
            hit.len()
        );
        damaged.extend(hit);
    }
    c.apply(&plan)
        .await
        .expect("restore-start on the WAL the pre-flight read");
    for node in ["coordinator", "worker1"] {
        assert_eq!(t.count(node, "xx").await, 3000, "{node} at the point");
    }
    for (path, bytes) in damaged {
        std::fs::write(path, bytes).unwrap();
    }
    c.restore_finish().await.expect("restore-finish");
    c.stop().await.unwrap();
}

/// Runs initdb again for every node of `t` with `--wal-segsize=<mib>`, keeping the settings
/// `create` wrote (the `.conf` files), and starts the cluster.
async fn reinit_with_segment_size(t: &TestCluster, mib: u32) {
    let c = &t.cluster;
    c.stop().await.expect("stop");
    for dir in t.data_dirs() {
        let keep = t.dir().join("conf-keep");
        std::fs::create_dir_all(&keep).unwrap();
        let confs: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".conf"))
            .collect();
        for n in &confs {
            std::fs::copy(dir.join(n), keep.join(n)).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let out = std::process::Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "/usr/lib/postgresql/15/bin/initdb",
                "-D",
            ])
            .arg(&dir)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--locale=C",
                "--no-instructions",
            ])
            .arg(format!("--wal-segsize={mib}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for n in &confs {
            std::fs::copy(keep.join(n), dir.join(n)).unwrap();
        }
        std::fs::remove_dir_all(&keep).unwrap();
    }
    c.start().await.expect("start");
}

/// A cluster with 1 MiB WAL segments (4096 per log id, not 256): the backup records the size,
/// restore-start's window names the segments by it, and replay's first segment comes from the
/// spool (with 16 MiB names the worker would fetch segments replay never asks for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_another_segment_size_is_prefetched_by_its_own_names() {
    skip_unless_postgres!();
    let t = created_with_repository(0).await;
    let c = t.cluster.clone();
    reinit_with_segment_size(&t, 1).await;
    c.prepare_archiving(true, false).await.expect("archiving");
    let backup = c.basebackup(Some("small")).await.expect("base backup");
    let part = backup.node("coordinator").unwrap().clone();
    assert_eq!(
        part.wal_segment_size,
        Some(1 << 20),
        "recorded with the backup"
    );
    rows_in_segments(&t, "coordinator", 4).await;
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    t.sql("coordinator", "INSERT INTO xx SELECT 1")
        .await
        .unwrap();
    let config = t.config().clone();
    let node = config.node("coordinator").unwrap();
    let log = config.log_file(node);
    let from = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
    let plan = c
        .plan_restore_start(Some("small"), Some("rp"))
        .await
        .unwrap();
    let first = citus_recovery::wal::segment_file_name(part.timeline, part.start_lsn, 1 << 20);
    assert!(
        plan.to_string()
            .contains(&format!("WAL segments {first} to ")),
        "the window starts at the backup's 1 MiB segment {first}:\n{plan}"
    );
    c.restore_start(Some("small"), Some("rp"))
        .await
        .expect("restore-start");
    assert_eq!(t.count("coordinator", "xx").await, 4000, "at the point");
    // Spooled under its 1 MiB name.
    first_answer_was_spooled("coordinator", &first, &log_since(&log, from));
    c.restore_finish().await.expect("restore-finish");
    assert_eq!(t.count("coordinator", "xx").await, 4000, "after finish");
}
