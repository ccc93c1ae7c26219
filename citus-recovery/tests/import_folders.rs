//! `import-folders` on real PostgreSQL servers: a cluster that kept its backups and WAL in
//! folders gains a posix repository; the old backup, restore point and WAL are copied into it,
//! checked on the way (a damaged file stops the copy, nothing of that backup is offered, and
//! running again carries on), and the cluster is then restored from the repository alone.

mod common;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;

use citus_recovery::Error;
use common::{backup_names, TestCluster};
use repository_cycle::with_repository;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_are_copied_into_the_repository_and_restored_from_it() {
    skip_unless_postgres!();
    let mut t = TestCluster::new(1);
    let c = t.cluster.clone();
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false).await.expect("archiving");
    t.sql(
        "worker1",
        "CREATE TABLE kept AS SELECT g FROM generate_series(1, 700) g",
    )
    .await
    .unwrap();
    c.basebackup(Some("old")).await.expect("folder backup");
    t.sql(
        "worker1",
        "INSERT INTO kept SELECT g FROM generate_series(1, 300) g",
    )
    .await
    .unwrap();
    c.create_restore_point(Some("rp-old"))
        .await
        .expect("restore point");
    t.sql(
        "worker1",
        "INSERT INTO kept SELECT g FROM generate_series(1, 50) g",
    )
    .await
    .unwrap();
    let (backups, archives) = (
        t.config().backup_base_folder.clone(),
        t.config().archive_base_folder.clone(),
    );

    let repo = t.dir().join("repo");
    with_repository(&mut t, serde_json::json!({"type": "posix", "path": repo}));
    let c = t.cluster.clone();
    c.prepare_archiving(true, false)
        .await
        .expect("archiving into the repository");
    assert!(
        c.list_backups().await.unwrap().is_empty(),
        "a new repository's catalog starts empty"
    );
    let plan = c.plan_import_folders().await.expect("plan");
    let names: Vec<&str> = plan
        .backups
        .iter()
        .map(|b| b.backup.name.as_str())
        .collect();
    assert_eq!(names, ["old"], "{plan}");
    assert_eq!(plan.restore_points.len(), 1, "{plan}");
    assert_eq!(plan.wal.len(), 2, "both nodes' archives: {plan}");
    let wal_planned: Vec<(String, Vec<String>)> = plan
        .wal
        .iter()
        .map(|w| (w.node.clone(), w.files.clone()))
        .collect();
    assert!(plan.to_string().contains("backup old: copy"), "{plan}");

    // A damaged file of the folder backup: the copy stops, naming it; the backup is not offered.
    let tar = backups.join("old/worker1/base.tar");
    let original = std::fs::read(&tar).unwrap();
    let mut damaged = original.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x55;
    std::fs::write(&tar, &damaged).unwrap();
    let e = c.import_folders().await.expect_err("a damaged backup");
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(
        c.list_backups().await.unwrap().is_empty(),
        "not offered: {e}"
    );
    std::fs::write(&tar, &original).unwrap();

    // Again: it carries on (the WAL is there, the unfinished backup's objects go first).
    let report = c.import_folders().await.expect("import");
    assert_eq!(report.backups, ["old"], "{report}");
    assert_eq!(report.restore_points, ["rp-old"], "{report}");
    for (node, files) in &wal_planned {
        let stored = repository_cycle::files_below(&repo.join("wal").join(node));
        for f in files {
            assert!(
                stored.iter().any(|s| s.starts_with(f.as_str())),
                "{node}: {f} in the repository: {stored:?}"
            );
        }
    }
    assert!(
        c.plan_import_folders().await.unwrap().is_empty(),
        "nothing left to copy"
    );
    let listed = backup_names(&c).await;
    assert_eq!(listed, ["old"]);

    // The folders go: verify and restore read the repository alone.
    std::fs::rename(&backups, t.dir().join("backups-gone")).unwrap();
    std::fs::rename(&archives, t.dir().join("archives-gone")).unwrap();
    let report = c.verify(Some("old"), Some("rp-old")).await.expect("verify");
    assert!(report.ok(), "{report}");
    c.restore_start(Some("old"), Some("rp-old"))
        .await
        .expect("restore from the repository");
    c.restore_finish().await.expect("finish");
    assert_eq!(t.count("worker1", "kept").await, 1000, "at the point");
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_repository_there_is_nothing_to_import_into() {
    skip_unless_postgres!();
    let t = TestCluster::new(0);
    let e = t
        .cluster
        .plan_import_folders()
        .await
        .expect_err("no repository");
    assert!(
        matches!(&e, Error::InvalidArgument { problem, .. } if problem.contains("add a \"repository\"")),
        "{e}"
    );
}
