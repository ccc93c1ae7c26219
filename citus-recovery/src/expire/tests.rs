//! Expire over the memory repository: what the retention keeps, what WAL goes, and that an
//! expire stopped at any deletion leaves everything kept complete and a second run finishes.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::*;
use crate::catalog::{NodeBackup, NodeRestorePoint};
use crate::repository::memory::{Call, Hook, Hooked, MemoryRepository};
use crate::repository::{Key, ObjectMeta, RepoError, Repository};
use crate::wal::Lsn;

const SEG: u64 = wal::DEFAULT_SEGMENT_SIZE;
const NODES: [&str; 2] = ["coordinator", "worker1"];

fn config(dir: &Path) -> ClusterConfig {
    let json = serde_json::json!({
        "clusterName": "c", "workerCount": 1,
        "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
        "workerNodes": [{"name": "worker1", "hostname": "localhost", "port": 9701, "username": "postgres", "dbname": "postgres"}],
        "clusterBaseFolder": dir.join("cluster"),
        "archiveBaseFolder": dir.join("archive"),
        "backupBaseFolder": dir.join("backup"),
    });
    ClusterConfig::from_json_str(&json.to_string(), None).unwrap()
}

fn at(days: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + days * 86_400, 0).unwrap()
}

/// Backup `i` starts in segment `3 * i + 2` (on timeline 1 before i = 3, then 2), ends
/// 100 bytes later, on day `i`.
fn backup(i: u64) -> Backup {
    let tli = if i < 3 { 1 } else { 2 };
    let start = Lsn((3 * i + 2) * SEG + 0x28);
    Backup {
        name: format!("b{i}"),
        cluster_name: "c".into(),
        start_time: at(i as i64),
        end_time: at(i as i64) + chrono::Duration::seconds(5),
        citus_version: None,
        nodes: NODES
            .iter()
            .map(|n| NodeBackup {
                backup: format!("b{i}"),
                node: n.to_string(),
                start_lsn: start,
                end_lsn: start + 100,
                timeline: tli,
                start_time: at(i as i64),
                end_time: at(i as i64),
                pg_version: "15".into(),
                bytes: 10,
                system_identifier: None,
                hot_standby: None,
                tablespaces: Vec::new(),
                wal_segment_size: None,
            })
            .collect(),
    }
}

/// A restore point just after backup `i`'s end.
fn point(i: u64) -> RestorePoint {
    RestorePoint {
        name: format!("rp{i}"),
        time: at(i as i64) + chrono::Duration::seconds(60),
        citus: false,
        nodes: NODES
            .iter()
            .map(|n| NodeRestorePoint {
                node: n.to_string(),
                lsn: Some(Lsn((3 * i + 3) * SEG + 0x100)),
                timeline: 1,
                segment: String::new(),
            })
            .collect(),
    }
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// Backups b0..b3 with files and node parts, restore points rp0..rp3, and every node's WAL:
/// segments 1..=13 on timeline 1, 9..=13 on timeline 2, `00000002.history`, each backup's
/// `.backup` file, and a leftover `.partial`.
async fn fill(repo: &dyn Repository, catalog: &Catalog) {
    for i in 0..4 {
        let b = backup(i);
        for part in &b.nodes {
            catalog.write_node_manifest(part).await.unwrap();
            repo.put_create(
                &key(&format!("backups/{}/{}/base.tar.zst", b.name, part.node)),
                Bytes::from(vec![i as u8; 1000]),
            )
            .await
            .unwrap();
        }
        catalog.write_cluster_manifest(&b).await.unwrap();
        catalog.record_restore_point(&point(i)).await.unwrap();
    }
    for node in NODES {
        let mut names: Vec<String> = (1..=13)
            .map(|s| wal::segno_file_name(1, s, SEG))
            .chain((9..=13).map(|s| wal::segno_file_name(2, s, SEG)))
            .collect();
        names.push("00000002.history".into());
        names.push(format!("{}.partial", wal::segno_file_name(1, 9, SEG)));
        for i in 0..4 {
            let b = &backup(i).nodes[0];
            names.push(format!(
                "{}.{:08X}.backup",
                wal::segment_file_name(b.timeline, b.start_lsn, SEG),
                b.start_lsn.segment_offset(SEG)
            ));
        }
        for n in names {
            repo.put_create(
                &key(&format!("wal/{node}/{n}.zst")),
                Bytes::from_static(b"wal"),
            )
            .await
            .unwrap();
        }
    }
}

fn keys(objects: &[ObjectMeta]) -> Vec<String> {
    objects.iter().map(|m| m.key.as_str().to_string()).collect()
}

/// Every listed backup has its files and node parts, and every node's WAL from its start on.
async fn assert_listed_backups_complete(repo: &dyn Repository, catalog: &Catalog) {
    let all = keys(&repo.list(&Key::root()).await.unwrap());
    for b in catalog.backups().await.unwrap() {
        for part in &b.nodes {
            let file = format!("backups/{}/{}/base.tar.zst", b.name, part.node);
            assert!(all.contains(&file), "{file} missing for listed {}", b.name);
            let start = part.start_lsn.segment(SEG);
            for s in start..=13 {
                let tli = if s >= 9 && part.timeline == 2 { 2 } else { 1 };
                let seg = format!(
                    "wal/{}/{}.zst",
                    part.node,
                    wal::segno_file_name(tli, s, SEG)
                );
                assert!(all.contains(&seg), "{seg} missing for listed {}", b.name);
            }
            let history = format!("wal/{}/00000002.history.zst", part.node);
            assert!(all.contains(&history));
        }
    }
}

#[tokio::test]
async fn the_newest_backups_are_kept_with_the_wal_from_the_oldest_kept_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let repo: Arc<dyn Repository> = Arc::new(MemoryRepository::new());
    let catalog = Catalog::open(&config, Some(repo.clone()));
    fill(repo.as_ref(), &catalog).await;
    // Not a name citus-recovery gives a backup: never taken for a leftover.
    repo.put_create(&key("backups/a+b/x"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let store = RepositoryStore::new(repo.clone(), &config);
    let listing = ExpireListing::read_files(&config, &catalog, &store)
        .await
        .unwrap();
    let full2 = Retention {
        full: Some(2),
        days: None,
    };
    let plan = ExpirePlan::build(&listing, full2, false, at(10)).unwrap();
    assert_eq!(plan.kept, ["b2", "b3"]);
    let gone: Vec<&str> = plan.backups.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(gone, ["b0", "b1"]);
    assert_eq!(plan.backups[0].files.files, 2);
    assert!(plan.incomplete.is_empty(), "{plan}");
    assert!(plan.notes.iter().any(|n| n.contains("\"a+b\"")), "{plan}");
    // b2 starts in segment 8 of timeline 1: everything before goes, on every timeline.
    for w in &plan.wal {
        assert_eq!(w.keep_from.as_deref(), Some("000000010000000000000008"));
        let names: Vec<&str> = w.remove.iter().map(|f| f.name.as_str()).collect();
        let mut expected: Vec<String> = (1..8).map(|s| wal::segno_file_name(1, s, SEG)).collect();
        expected.insert(2, "000000010000000000000002.00000028.backup".into());
        expected.insert(6, "000000010000000000000005.00000028.backup".into());
        assert_eq!(names, expected, "{}", w.node);
        assert!(!names.iter().any(|n| n.ends_with(".history")));
    }
    assert_eq!(plan.unreachable_restore_points, ["rp0", "rp1"]);
    assert_eq!(
        plan.bytes_freed,
        4000 + 2 * 9 * 3,
        "two backups of two 1000-byte files, nine 3-byte WAL files per node"
    );
    let text = plan.to_string();
    assert!(text.contains("remove backup b0"), "{text}");
    assert!(text.contains("can no longer be reached"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
    assert_eq!(json["kept"], serde_json::json!(["b2", "b3"]));

    // The days rule keeps those of the last days; the newest is always kept.
    let days = Retention {
        full: None,
        days: Some(2),
    };
    let by_days =
        ExpirePlan::build(&listing, days, false, at(3) + chrono::Duration::hours(1)).unwrap();
    assert_eq!(by_days.kept, ["b2", "b3"]);
    let long_ago = ExpirePlan::build(&listing, days, false, at(100)).unwrap();
    assert_eq!(long_ago.kept, ["b3"]);
    // b3 starts in segment 11 of timeline 2: the timeline 1 copies before it go too.
    let w = &long_ago.wal[0];
    assert_eq!(w.keep_from.as_deref(), Some("00000002000000000000000B"));
    assert!(w
        .remove
        .iter()
        .any(|f| f.name == "00000001000000000000000A"));
    assert!(w
        .remove
        .iter()
        .any(|f| f.name == "00000002000000000000000A"));
    assert!(w.remove.iter().any(|f| f.name.ends_with(".partial")));
    assert!(!w
        .remove
        .iter()
        .any(|f| f.name.starts_with("00000001000000000000000B")));

    // Run it: what the plan said is gone, the rest is complete.
    plan.execute(&catalog, &store).await.unwrap();
    let names: Vec<String> = catalog
        .backups()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["b2", "b3"]);
    assert_listed_backups_complete(repo.as_ref(), &catalog).await;
    let all = keys(&repo.list(&Key::root()).await.unwrap());
    assert!(
        !all.iter().any(|k| k.contains("/b0") || k.contains("b1")),
        "{all:?}"
    );
    // The points stay (marked), unless asked.
    assert_eq!(catalog.restore_points().await.unwrap().len(), 4);
    let again = ExpireListing::read_files(&config, &catalog, &store)
        .await
        .unwrap();
    let again = ExpirePlan::build(&again, full2, true, at(10)).unwrap();
    assert!(again.backups.is_empty() && again.wal.iter().all(|w| w.remove.is_empty()));
    again.execute(&catalog, &store).await.unwrap();
    let points: Vec<String> = catalog
        .restore_points()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(points, ["rp2", "rp3"]);
}

#[tokio::test]
async fn nothing_goes_without_a_backup_and_a_retention_must_keep_something() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let listing = ExpireListing {
        wal: NODES
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    vec![StoredFile {
                        name: "000000010000000000000001".into(),
                        location: "x".into(),
                        size: 1,
                    }],
                )
            })
            .collect(),
        ..ExpireListing::default()
    };
    let plan = ExpirePlan::build(
        &listing,
        Retention {
            full: Some(1),
            days: None,
        },
        true,
        at(0),
    )
    .unwrap();
    assert!(plan.is_empty(), "{plan}");
    assert!(plan.notes.iter().any(|n| n.contains("no complete backup")));
    for (full, days) in [(None, None), (Some(0), None), (None, Some(0))] {
        match effective_retention(&config, full, days) {
            Err(Error::Config { field, fix, .. }) => {
                assert!(field.starts_with("retention."), "{field}");
                assert!(fix.contains("--retain-full"), "{fix}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }
    let r = effective_retention(&config, None, Some(3)).unwrap();
    assert_eq!((r.full, r.days), (None, Some(3)));
}

/// Fails every delete after the first `.0`.
#[derive(Debug)]
struct AllowedDeletes(AtomicI64);

#[async_trait]
impl Hook for AllowedDeletes {
    async fn before(&self, call: Call, key: &Key) -> Result<(), RepoError> {
        if call == Call::Delete && self.0.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(RepoError::Unavailable {
                repository: "failing".into(),
                action: "delete",
                key: key.clone(),
                detail: "injected failure".into(),
            });
        }
        Ok(())
    }
}

/// Stopped after k deletions, for every k: the backups still listed are complete, and a
/// second run ends where an uninterrupted one does.
#[tokio::test]
async fn an_expire_stopped_at_any_deletion_keeps_everything_kept_and_finishes_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let retention = Retention {
        full: Some(2),
        days: None,
    };
    let mut expected = None;
    let mut k = 0;
    loop {
        let repo = Arc::new(Hooked {
            inner: MemoryRepository::new(),
            hook: AllowedDeletes(AtomicI64::new(i64::MAX)),
        });
        let dyn_repo: Arc<dyn Repository> = repo.clone();
        let catalog = Catalog::open(&config, Some(dyn_repo.clone()));
        fill(dyn_repo.as_ref(), &catalog).await;
        let store = RepositoryStore::new(dyn_repo.clone(), &config);
        repo.hook.0.store(k, Ordering::SeqCst);
        let listing = ExpireListing::read_files(&config, &catalog, &store)
            .await
            .unwrap();
        let plan = ExpirePlan::build(&listing, retention, true, at(10)).unwrap();
        let stopped = plan.execute(&catalog, &store).await.is_err();
        assert_listed_backups_complete(dyn_repo.as_ref(), &catalog).await;
        repo.hook.0.store(i64::MAX, Ordering::SeqCst);
        let listing = ExpireListing::read_files(&config, &catalog, &store)
            .await
            .unwrap();
        let rerun = ExpirePlan::build(&listing, retention, true, at(10)).unwrap();
        rerun.execute(&catalog, &store).await.unwrap();
        let state = keys(&dyn_repo.list(&Key::root()).await.unwrap());
        match &expected {
            None => expected = Some(state),
            Some(e) => assert_eq!(&state, e, "after a stop at deletion {k}"),
        }
        if !stopped {
            break;
        }
        k += 1;
    }
    assert!(k > 20, "every deletion was a stopping point: {k}");
}

/// In the folders: an interrupted backup's folder (no manifest) is a leftover and goes; a
/// folder whose manifest the catalog does not trust is left alone; nothing else there is
/// taken for a backup.
#[tokio::test]
async fn folder_leftovers_go_and_doubtful_backups_stay() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let catalog = Catalog::new(&config);
    let base = dir.path().join("backup");
    crate::trusted::ensure_dir(&base).unwrap();
    for (i, b) in [backup(0), backup(1)].iter().enumerate() {
        catalog.create_backup_dir(&b.name).unwrap();
        for part in &b.nodes {
            std::fs::create_dir(base.join(&b.name).join(&part.node)).unwrap();
            std::fs::write(
                base.join(&b.name).join(&part.node).join("base.tar"),
                vec![0u8; 100],
            )
            .unwrap();
            catalog.write_node_manifest(part).await.unwrap();
        }
        if i == 0 {
            catalog.write_cluster_manifest(b).await.unwrap();
        }
    }
    // b0's manifest made writable by others: the catalog no longer trusts it.
    let manifest = base.join("b0").join(crate::catalog::CLUSTER_MANIFEST);
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::create_dir(base.join("not-a-backup")).unwrap();
    let store = FolderStore::new(&config);
    let listing = ExpireListing::read_files(&config, &catalog, &store)
        .await
        .unwrap();
    assert!(listing.backups.is_empty());
    let plan = ExpirePlan::build(
        &listing,
        Retention {
            full: Some(1),
            days: None,
        },
        false,
        at(10),
    )
    .unwrap();
    let leftovers: Vec<&str> = plan.incomplete.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(leftovers, ["b1"], "{plan}");
    assert_eq!(
        plan.incomplete[0].files.files, 4,
        "two node archives, two node manifests"
    );
    assert!(
        plan.notes.iter().any(|n| n.contains("backup folder b0")),
        "{plan}"
    );
    plan.execute(&catalog, &store).await.unwrap();
    assert!(!base.join("b1").exists());
    assert!(manifest.exists() && base.join("not-a-backup").exists());
}

#[test]
fn the_segment_size_is_the_one_every_backup_recorded() {
    let sized = |i: u64, size: Option<u64>| {
        let mut b = backup(i);
        for part in &mut b.nodes {
            part.wal_segment_size = size;
        }
        b
    };
    let mib = |n: u64| n << 20;
    // Backups from before the size was recorded do not count.
    let agree = [
        sized(0, None),
        sized(1, Some(mib(64))),
        sized(2, Some(mib(64))),
    ];
    assert_eq!(
        super::recorded_segment_size(&agree, "worker1"),
        Some(mib(64))
    );
    // Disagreement, none recorded, no backup of the node, or no valid size: the archive says.
    let differ = [sized(1, Some(mib(64))), sized(2, Some(mib(16)))];
    assert_eq!(super::recorded_segment_size(&differ, "worker1"), None);
    assert_eq!(
        super::recorded_segment_size(&[sized(1, None)], "worker1"),
        None
    );
    assert_eq!(super::recorded_segment_size(&agree, "worker9"), None);
    assert_eq!(
        super::recorded_segment_size(&[sized(1, Some(3))], "worker1"),
        None
    );
}
