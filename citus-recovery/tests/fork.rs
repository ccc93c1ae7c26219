//! `fork` on a real Citus cluster (coordinator and 2 workers): restored to a restore point taken
//! while a write workload runs on the live cluster, into a second cluster on other ports and
//! folders. A paused fork can reach no live node; a promoted fork holds exactly the point's
//! rows, its `pg_dist_node` names fork nodes only on every node, and a write through its
//! coordinator changes nothing on the live cluster, whose archive the fork never writes.
//!
//! Needs the Citus extension: skipped with a printed reason where it is missing, a failure when
//! `CITUS_RECOVERY_REQUIRE_CITUS=1`.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use citus_recovery::{Cluster, ClusterConfig, LocalBackend, RunOptions};
use common::TestCluster;

/// Rows of `fixed` before the restore point; more are added after it.
const FIXED: i64 = 100;

/// Stops the fork's servers however the test ends.
struct ForkServers(std::path::PathBuf);

impl Drop for ForkServers {
    fn drop(&mut self) {
        common::stop_servers_in(&self.0);
    }
}

/// A fork config beside the test cluster: the same node names, free ports, its own folders.
fn fork_cluster(dir: &Path) -> Cluster {
    let mut config: serde_json::Value = serde_json::from_str(&common::config_json_with_folders(
        dir,
        2,
        "fork",
        "fork-archive",
        "fork-backup",
    ))
    .unwrap();
    config["clusterName"] = serde_json::json!("test-fork");
    let path = dir.join("fork.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let config = ClusterConfig::from_file(&path).expect("valid fork config");
    Cluster::with_backend(Arc::new(LocalBackend::new(config).unwrap()))
        .unwrap()
        .with_options(RunOptions {
            wait_timeout: Duration::from_secs(300),
            ..RunOptions::default()
        })
}

/// Runs SQL on a node of `cluster`, first column of every row as text.
async fn sql(
    cluster: &Cluster,
    node: &str,
    sql: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let node = cluster.config().node(node).unwrap().clone();
    let client = cluster.backend().connect(&node).await.expect("connect");
    Ok(client
        .simple_query(sql)
        .await?
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .collect())
}

/// Every file name in the live cluster's archive folders.
fn archive_files(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for node in std::fs::read_dir(dir).unwrap().flatten() {
        for f in std::fs::read_dir(node.path()).unwrap().flatten() {
            names.push(format!(
                "{}/{}",
                node.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_restores_the_point_beside_the_live_cluster_and_never_reaches_it() {
    skip_unless_postgres!();
    let t = TestCluster::new(2);
    skip_unless_citus!(t);
    let c = &t.cluster;
    c.create(false).await.expect("cluster create with Citus");
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    c.basebackup(Some("base")).await.expect("base backup");
    for sql in [
        "CREATE TABLE fixed(id bigint PRIMARY KEY)",
        "SELECT create_distributed_table('fixed', 'id', shard_count := 4)",
        &format!("INSERT INTO fixed SELECT g FROM generate_series(1, {FIXED}) g"),
        "CREATE TABLE stream(seq bigint PRIMARY KEY)",
        "SELECT create_reference_table('stream')",
    ] {
        t.sql("coordinator", sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    // The live workload: rows 1, 2, 3, ... into `stream`, one transaction each. A reference
    // table, so every insert commits on every node with 2PC, which the restore point orders
    // (a single-shard insert commits on one worker without it, and a cluster-wide point does
    // not order those across workers).
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let client = c.backend().connect(&t.config().coordinator).await.unwrap();
        let (stop, acked) = (stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut seq = 0i64;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                client
                    .execute("INSERT INTO stream VALUES ($1)", &[&seq])
                    .await
                    .expect("a live write");
                acked.store(seq as u64, Ordering::SeqCst);
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before_point = acked.load(Ordering::SeqCst);
    c.create_restore_point(Some("r"))
        .await
        .expect("a restore point under the workload");
    let after_point = acked.load(Ordering::SeqCst) + 1;
    t.sql(
        "coordinator",
        "INSERT INTO fixed SELECT g FROM generate_series(1001, 1050) g",
    )
    .await
    .unwrap();

    let fork = fork_cluster(t.dir());
    let _servers = ForkServers(t.dir().join("fork"));
    // The plan says what it does, and refuses a fork on a live node's port.
    let plan = c
        .plan_fork(&fork, None, Some("r"), false, false)
        .await
        .expect("plan the paused fork");
    let text = plan.to_string();
    assert!(text.contains("archive_mode = 'off'"), "{text}");
    assert!(text.contains("citus.node_conninfo"), "{text}");
    assert!(
        text.contains("distributed queries on the fork's coordinator fail"),
        "{text}"
    );

    // Paused fork, while the live workload still runs.
    let paused = c
        .fork(&fork, None, Some("r"), false, false)
        .await
        .expect("fork, paused");
    assert!(!paused.promoted);
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    // Per-node queries work; a distributed query cannot reach the live workers.
    let in_recovery = sql(&fork, "coordinator", "SELECT pg_is_in_recovery()")
        .await
        .unwrap();
    assert_eq!(in_recovery, ["t"]);
    let err = sql(&fork, "coordinator", "SELECT count(*) FROM fixed")
        .await
        .expect_err("a distributed query on a paused fork must not reach the live workers");
    let message = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains(
            citus_recovery::fork::BLOCKED_NODE_CONNINFO
                .split('=')
                .next_back()
                .unwrap()
        ),
        "refused by the blocked node_conninfo, before any connection: {err:?}"
    );
    fork.restore_abort()
        .await
        .expect("restore-abort with the fork's config");

    let archive = t.dir().join("archive");
    let live_archive = archive_files(&archive);
    let live_fixed = t.count("coordinator", "fixed").await;
    let live_stream = t.count("coordinator", "stream").await;

    // Promoted fork, archiving (--archive) into its own folder.
    let report = c
        .fork(&fork, None, Some("r"), true, true)
        .await
        .expect("fork, promoted");
    assert!(report.promoted);
    assert!(
        fork.restore_state().unwrap().is_none(),
        "the fork's restore is closed"
    );
    let fork_ports: Vec<String> = fork
        .config()
        .nodes()
        .map(|n| format!("{}:{}", n.hostname, n.port))
        .collect();
    for node in ["coordinator", "worker1", "worker2"] {
        let rows = sql(
            &fork,
            node,
            "SELECT nodename || ':' || nodeport FROM pg_dist_node ORDER BY nodeport",
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 3, "{node}: {rows:?}");
        for r in &rows {
            assert!(
                fork_ports.contains(r),
                "{node}'s pg_dist_node names {r}, not a fork node ({fork_ports:?})"
            );
        }
    }
    // Exactly the point's rows.
    assert_eq!(
        sql(&fork, "coordinator", "SELECT count(*) FROM fixed")
            .await
            .unwrap(),
        [FIXED.to_string()]
    );
    let seqs: Vec<u64> = sql(&fork, "coordinator", "SELECT seq FROM stream ORDER BY seq")
        .await
        .unwrap()
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let n = seqs.len() as u64;
    assert!(
        seqs.iter().copied().eq(1..=n),
        "the fork's stream is a prefix"
    );
    assert!(
        n >= before_point && n <= after_point,
        "the fork holds the rows of the point: {n} in {before_point}..={after_point}"
    );
    // A write through the fork's coordinator, on every shard, reaches the fork's workers only.
    sql(
        &fork,
        "coordinator",
        "INSERT INTO fixed SELECT g FROM generate_series(5001, 5400) g",
    )
    .await
    .expect("a distributed write on the promoted fork");
    sql(&fork, "coordinator", "SELECT pg_switch_wal()")
        .await
        .unwrap();
    assert_eq!(
        sql(&fork, "coordinator", "SELECT count(*) FROM fixed")
            .await
            .unwrap(),
        [(FIXED + 400).to_string()]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.count("coordinator", "fixed").await,
        live_fixed,
        "live rows unchanged"
    );
    assert_eq!(t.count("coordinator", "stream").await, live_stream);
    // The live workers' own shards: no row of the fork's write.
    for worker in ["worker1", "worker2"] {
        let shards = t
            .sql(worker, "SELECT string_agg(format('SELECT count(*) FROM %I WHERE id > 5000', relname), ' UNION ALL ') FROM pg_class WHERE relname LIKE 'fixed\\_%' AND relkind = 'r'")
            .await
            .unwrap();
        for count in t.sql(worker, &shards[0]).await.unwrap() {
            assert_eq!(
                count, "0",
                "{worker}: a live shard holds a row written on the fork"
            );
        }
    }
    assert_eq!(
        archive_files(&archive),
        live_archive,
        "the fork wrote nothing into the live archive"
    );
    assert_eq!(
        sql(&fork, "coordinator", "SHOW archive_mode")
            .await
            .unwrap(),
        ["on"]
    );
    // The fork's WAL (its new timeline's history, the switched segment) is in its own archive.
    let fork_archive = t.dir().join("fork-archive").join("coordinator");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let names: Vec<String> = std::fs::read_dir(&fork_archive)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if names.iter().any(|n| n.ends_with(".history")) && names.len() >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fork's archive {}: {names:?}",
            fork_archive.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        archive_files(&archive),
        live_archive,
        "and never into the live one"
    );
}
