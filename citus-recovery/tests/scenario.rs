//! The whole backup-and-restore cycle on real PostgreSQL servers: coordinator and 2 workers.
//!
//! create, prepare archiving, base backup, rows on every node, restore point, more rows,
//! restore-start, the counts through read-only queries while paused, restore-finish, writes work.

mod common;

use citus_recovery::Error;
use common::TestCluster;

const FIRST: i64 = 3000;
const SECOND: i64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_nodes_restore_to_the_restore_point() {
    skip_unless_postgres!();
    let t = TestCluster::new(2);
    let c = &t.cluster;
    c.create(true).await.expect("create");
    let report = c
        .prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    assert_eq!(
        report.restarted.len(),
        3,
        "archive_mode needs a restart on every node"
    );
    assert!(c
        .plan_prepare_archiving(true, false)
        .await
        .unwrap()
        .notes
        .iter()
        .any(|n| n.contains("already prepared")));

    let backup = c.basebackup(Some("first")).await.expect("base backup");
    assert_eq!(backup.nodes.len(), 3);
    for n in &backup.nodes {
        assert!(n.end_lsn > n.start_lsn, "{n:?}");
        assert!(t
            .dir()
            .join("backup/first")
            .join(&n.node)
            .join("base.tar")
            .is_file());
    }
    let names: Vec<String> = t.config().nodes().map(|n| n.name.clone()).collect();
    for (i, node) in names.iter().enumerate() {
        // Each node holds its own share of the ids, as the example scenario does on plain nodes.
        let lo = i as i64 * 1_000_000;
        t.sql(node, &format!("CREATE TABLE xx(id int); INSERT INTO xx SELECT g FROM generate_series({lo} + 1, {lo} + {FIRST}) g"))
            .await
            .unwrap();
    }
    let rp_name = "before 'more'; rows";
    let point = c
        .create_restore_point(Some(rp_name))
        .await
        .expect("restore point");
    assert!(!point.citus);
    assert_eq!(point.nodes.len(), 3);
    for node in &names {
        t.sql(
            node,
            &format!("INSERT INTO xx SELECT g FROM generate_series(1, {SECOND}) g"),
        )
        .await
        .unwrap();
        assert_eq!(t.count(node, "xx").await, FIRST + SECOND);
    }
    // The same name twice is refused.
    assert!(matches!(
        c.create_restore_point(Some(rp_name)).await,
        Err(Error::RestorePointExists { .. })
    ));

    let listed = c.list_backups().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "first");
    assert_eq!(c.list_restore_points().await.unwrap()[0].name, rp_name);

    // A dry run prints every node's steps and changes nothing.
    let plan = c
        .plan_restore_start(Some("first"), Some(rp_name))
        .await
        .unwrap();
    let text = plan.to_string();
    for node in &names {
        assert!(text.contains(&format!("  {node}:")), "{text}");
    }
    assert!(
        text.contains("recovery_target_name = 'before ''more''; rows'"),
        "{text}"
    );
    assert!(
        c.restore_state().unwrap().is_none(),
        "planning wrote no state"
    );
    assert_eq!(
        t.count("worker1", "xx").await,
        FIRST + SECOND,
        "planning touched no node"
    );

    let restored = c
        .restore_start(Some("first"), Some(rp_name))
        .await
        .expect("restore-start");
    assert_eq!(restored.nodes.len(), 3);
    for (node, dir) in names.iter().zip(t.data_dirs()) {
        assert_eq!(t.count(node, "xx").await, FIRST, "node {node} while paused");
        let recovery = t
            .sql(
                node,
                "SELECT pg_is_in_recovery()::text, pg_get_wal_replay_pause_state()",
            )
            .await
            .unwrap();
        assert_eq!(recovery, ["true"]);
        let err = t.sql(node, "INSERT INTO xx VALUES (1)").await.unwrap_err();
        assert!(
            err.to_string().contains("read-only") || format!("{err:?}").contains("read-only"),
            "{err:?}"
        );
        let aside = restored
            .nodes
            .iter()
            .find(|n| &n.node == node)
            .unwrap()
            .moved_aside_to
            .clone()
            .unwrap();
        assert!(
            aside.join("PG_VERSION").is_file(),
            "old data directory kept at {}",
            aside.display()
        );
        assert!(dir.join("recovery.signal").is_file());
    }
    let state = c.restore_state().unwrap().expect("restore state written");
    assert_eq!(state.backup, "first");

    // A second restore-start while one is under way starts it again: the data directories
    // from before stay where the first one moved them, what it restored is kept aside.
    let again = c
        .plan_restore_start(Some("first"), Some(rp_name))
        .await
        .expect("plan a second restore-start");
    assert_eq!(again.state.stamp, state.stamp);
    assert!(
        again
            .notes
            .iter()
            .any(|n| n.contains("resumes the restore")),
        "{again}"
    );
    for np in &again.phases[0].nodes {
        assert!(
            np.steps.iter().any(|s| matches!(s, citus_recovery::plan::Step::MoveAside { to, .. } if to.to_string_lossy().contains(".failed-restore-"))),
            "{again}"
        );
    }

    let finished = c.restore_finish().await.expect("restore-finish");
    for n in &finished.nodes {
        assert_eq!(n.timeline, Some(2), "{n:?}");
    }
    for (node, dir) in names.iter().zip(t.data_dirs()) {
        t.sql(node, "INSERT INTO xx VALUES (42)")
            .await
            .expect("writable after finish");
        assert_eq!(t.count(node, "xx").await, FIRST + 1);
        let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap();
        assert!(!auto.contains("recovery_target_name"), "{auto}");
        assert!(!dir.join("recovery.signal").exists());
    }
    assert!(
        c.restore_state().unwrap().is_none(),
        "finish closes the restore"
    );
    assert!(
        matches!(
            c.restore_finish().await,
            Err(Error::NoRestoreUnderWay { .. })
        ),
        "nothing left to finish"
    );
    c.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citus_distributed_table_restores_to_the_restore_point() {
    skip_unless_postgres!();
    let t = TestCluster::new(2);
    skip_unless_citus!(t);
    let c = &t.cluster;
    c.create(false).await.expect("create with Citus");
    let status = c.status().await.unwrap();
    assert!(
        status.nodes.iter().all(|n| n.citus_version.is_some()),
        "{status}"
    );
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    c.basebackup(Some("citus")).await.expect("base backup");
    t.sql("coordinator", &format!("CREATE TABLE xx(id int); SELECT create_distributed_table('xx', 'id'); INSERT INTO xx SELECT generate_series(1, {FIRST})"))
        .await
        .unwrap();
    let point = c
        .create_restore_point(Some("citus-point"))
        .await
        .expect("restore point");
    assert!(point.citus, "made by citus_create_restore_point");
    assert!(
        point.nodes[0].lsn.is_some(),
        "the coordinator's LSN is reported"
    );
    t.sql(
        "coordinator",
        &format!("INSERT INTO xx SELECT generate_series(1, {SECOND})"),
    )
    .await
    .unwrap();
    assert_eq!(t.count("coordinator", "xx").await, FIRST + SECOND);
    c.restore_start(Some("citus"), Some("citus-point"))
        .await
        .expect("restore-start");
    assert_eq!(
        t.count("coordinator", "xx").await,
        FIRST,
        "distributed count while paused"
    );
    // The shards live on the workers: together they hold exactly the first insert. (Citus hides
    // shards from catalog queries unless told not to.)
    let mut on_workers = 0;
    for w in ["worker1", "worker2"] {
        let shards = t
            .sql(w, "SET citus.override_table_visibility = off; SELECT coalesce(sum(n), 0) FROM (SELECT (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', schemaname, tablename), false, true, '')))[1]::text::bigint AS n FROM pg_tables WHERE tablename LIKE 'xx\\_%') s")
            .await
            .unwrap();
        on_workers += shards[0].parse::<i64>().unwrap();
    }
    assert_eq!(on_workers, FIRST);
    c.restore_finish().await.expect("restore-finish");
    t.sql("coordinator", "INSERT INTO xx VALUES (7)")
        .await
        .expect("writable");
    assert_eq!(t.count("coordinator", "xx").await, FIRST + 1);
    c.stop().await.unwrap();
}
