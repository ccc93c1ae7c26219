//! Restore points under load on a real Citus cluster: a long transaction holding a lock that
//! `citus_create_restore_point` needs makes `restore-point` fail within its bound
//! (`restorePointLockTimeout` x attempts + backoff), and distributed writers queued behind its
//! lock wait are never blocked for longer than one attempt's timeout.
//!
//! Needs the Citus extension: skipped with a printed reason where it is missing, a failure when
//! `CITUS_RECOVERY_REQUIRE_CITUS=1`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citus_recovery::backend::LocalBackend;
use citus_recovery::config::RestorePointLocks;
use citus_recovery::{Cluster, Error};
use common::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_point_behind_a_long_transaction_gives_up_within_its_bound_and_writers_go_on() {
    skip_unless_postgres!();
    let t = TestCluster::new(2);
    skip_unless_citus!(t);
    let c = &t.cluster;
    c.create(false).await.expect("cluster create with Citus");
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    for sql in [
        "CREATE TABLE items(id bigint PRIMARY KEY, v bigint NOT NULL)",
        "SELECT create_distributed_table('items', 'id', shard_count := 4)",
        "INSERT INTO items SELECT g, 0 FROM generate_series(1, 40) g",
    ] {
        t.sql("coordinator", sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    // A cluster whose restore points wait 400 ms per attempt, 2 retries.
    let mut config = t.config().clone();
    config.restore_point_locks = RestorePointLocks {
        lock_timeout_ms: 400,
        retries: 2,
    };
    let bounded = Cluster::with_backend(Arc::new(LocalBackend::new(config).unwrap())).unwrap();

    // With nothing in the way it works.
    bounded
        .create_restore_point(Some("free"))
        .await
        .expect("a restore point with no lock held");

    // A long transaction holding ROW SHARE on pg_dist_transaction: 2PC commits (ROW EXCLUSIVE)
    // pass it, but citus_create_restore_point's EXCLUSIVE lock waits, and every commit
    // queues behind that wait.
    let holder = c.backend().connect(&t.config().coordinator).await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK pg_catalog.pg_dist_transaction IN ROW SHARE MODE")
        .await
        .unwrap();

    // Multi-shard updates, each a 2PC commit across both workers, timed one by one.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let client = c.backend().connect(&t.config().coordinator).await.unwrap();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let began = Instant::now();
                client
                    .batch_execute("UPDATE items SET v = v + 1")
                    .await
                    .expect("a distributed write");
                worst = worst.max(began.elapsed());
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (n, worst)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let began = Instant::now();
    let err = bounded
        .create_restore_point(Some("blocked"))
        .await
        .expect_err("the restore point cannot take its locks");
    let took = began.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (writes, worst) = writer.await.unwrap();

    match &err {
        Error::RestorePointLockTimeout {
            name,
            node,
            attempts,
            lock_timeout_ms,
            ..
        } => {
            assert_eq!(name, "blocked");
            assert_eq!(node, "coordinator");
            assert_eq!(*attempts, 3, "the first attempt and 2 retries");
            assert_eq!(*lock_timeout_ms, 400);
        }
        other => panic!("expected RestorePointLockTimeout, got {other}"),
    }
    assert!(err.to_string().contains("restorePointLockTimeout"), "{err}");
    // 3 x 400 ms waits + 250 + 500 ms backoff, and the steps before it; never the old 60 s.
    assert!(took < Duration::from_secs(8), "gave up after {took:?}");
    assert!(
        took >= Duration::from_millis(3 * 400 + 250 + 500),
        "it waited each attempt and backed off: {took:?}"
    );
    assert!(writes >= 5, "the writer ran throughout: {writes} writes");
    // A writer queued behind one attempt waits at most that attempt's lock_timeout.
    assert!(
        worst < Duration::from_millis(400 + 600),
        "a distributed write waited {worst:?}, longer than one attempt's lock_timeout"
    );
    // Nothing was recorded, and the name is free once the lock is gone.
    let names: Vec<String> = c
        .list_restore_points()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["free"]);
    holder.batch_execute("COMMIT").await.unwrap();
    bounded
        .create_restore_point(Some("blocked"))
        .await
        .expect("the restore point once the long transaction has ended");

    // The same on a worker: with metadata on the workers, Citus locks there over its own
    // connections, beyond this session's lock_timeout; statement_timeout bounds the wait.
    let on_worker = c.backend().connect(&t.config().workers[0]).await.unwrap();
    on_worker
        .batch_execute("BEGIN; LOCK pg_catalog.pg_dist_transaction IN ROW SHARE MODE")
        .await
        .unwrap();
    let began = Instant::now();
    let result = bounded.create_restore_point(Some("worker-blocked")).await;
    let took = began.elapsed();
    on_worker.batch_execute("COMMIT").await.unwrap();
    // 3 attempts of at most 400 ms + 2 s each, and the backoff.
    assert!(
        took < Duration::from_secs(12),
        "a lock on a worker held it {took:?}"
    );
    match result {
        Err(Error::RestorePointLockTimeout { attempts, .. }) => assert_eq!(attempts, 3),
        Err(other) => panic!("expected RestorePointLockTimeout, got {other}"),
        // Citus without metadata on the workers takes no lock there.
        Ok(_) => {
            eprintln!("no lock taken on the worker: the restore point did not wait ({took:?})")
        }
    }
}
