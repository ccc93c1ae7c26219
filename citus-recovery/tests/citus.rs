//! The headline guarantee on a real Citus cluster (coordinator and 2 workers, made by
//! `cluster create`): a transfer workload of distributed 2PC transactions runs while cluster-wide
//! restore points are taken, and every restore to one of them keeps the ledger exact.
//!
//! Needs the Citus extension: skipped with a printed reason where it is missing, a failure when
//! `CITUS_RECOVERY_REQUIRE_CITUS=1` (as in CI).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestCluster;

/// Accounts, spread over 4 shards on the 2 workers.
const ACCOUNTS: i64 = 20;
/// Every account's opening balance.
const OPENING: i64 = 1000;
/// The sum of all balances, which no transfer may change.
const TOTAL: i64 = ACCOUNTS * OPENING;
/// Concurrent transfer tasks.
const TASKS: usize = 2;
/// Bounds on the workload, so the test stays short on a slow machine.
const MAX_TRANSFERS_PER_TASK: u64 = 5000;
const MAX_WORKLOAD: Duration = Duration::from_secs(20);
/// Restore points taken while the workload runs.
const POINTS: usize = 3;
/// Reference table rows before the first restore point; one more is added before each later one.
const BRANCHES: usize = 2;

/// What one transfer task has done: `started` counts transactions whose COMMIT was sent,
/// `committed` those whose COMMIT was acknowledged. Both are also the last sequence number.
#[derive(Default)]
struct Progress {
    started: AtomicU64,
    committed: AtomicU64,
}

/// The ledger as the coordinator sees it.
#[derive(Debug)]
struct Ledger {
    balances: BTreeMap<i64, i64>,
    /// (from, to, amount, task, seq) of every committed transfer.
    transfers: Vec<(i64, i64, i64, usize, u64)>,
}

impl Ledger {
    async fn read(t: &TestCluster) -> Ledger {
        let balances = t
            .sql(
                "coordinator",
                "SELECT id || ' ' || balance FROM accounts ORDER BY id",
            )
            .await
            .expect("read accounts through the coordinator")
            .iter()
            .map(|row| {
                let (id, balance) = row.split_once(' ').unwrap();
                (id.parse().unwrap(), balance.parse().unwrap())
            })
            .collect();
        let transfers = t
            .sql(
                "coordinator",
                "SELECT concat_ws(' ', from_id, to_id, amount, task, seq) FROM transfers",
            )
            .await
            .expect("read transfers through the coordinator")
            .iter()
            .map(|row| {
                let f: Vec<i64> = row.split(' ').map(|x| x.parse().unwrap()).collect();
                (f[0], f[1], f[2], f[3] as usize, f[4] as u64)
            })
            .collect();
        Ledger {
            balances,
            transfers,
        }
    }

    /// Checks the invariants that hold at any consistent point, and returns how many transfers
    /// each task has in the ledger.
    fn check(&self, when: &str) -> [u64; TASKS] {
        assert_eq!(
            self.balances.len() as i64,
            ACCOUNTS,
            "{when}: every account is there"
        );
        assert_eq!(
            self.balances.values().sum::<i64>(),
            TOTAL,
            "{when}: the sum of balances is the opening total"
        );
        // Every balance is its opening balance plus the transfers in the ledger: no transfer is
        // half there (one side's shard committed, the other's not).
        let mut expected: BTreeMap<i64, i64> = (1..=ACCOUNTS).map(|id| (id, OPENING)).collect();
        for &(from, to, amount, _, _) in &self.transfers {
            *expected.get_mut(&from).unwrap() -= amount;
            *expected.get_mut(&to).unwrap() += amount;
        }
        assert_eq!(
            self.balances, expected,
            "{when}: the balances agree with the transfer log"
        );
        // Each task commits in order, so its transfers are exactly 1..=n.
        let mut counts = [0; TASKS];
        for (task, count) in counts.iter_mut().enumerate() {
            let mut seqs: Vec<u64> = self
                .transfers
                .iter()
                .filter(|tr| tr.3 == task)
                .map(|tr| tr.4)
                .collect();
            seqs.sort_unstable();
            let n = seqs.len() as u64;
            assert!(
                seqs.iter().copied().eq(1..=n),
                "{when}: task {task}'s transfers are a prefix 1..={n}"
            );
            *count = n;
        }
        counts
    }
}

/// One transfer task: moves an amount between an account on worker1 and one on worker2 per
/// transaction, so Citus commits every one with two-phase commit.
async fn transfer_task(
    client: tokio_postgres::Client,
    task: usize,
    on_worker1: Vec<i64>,
    on_worker2: Vec<i64>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) {
    let deadline = Instant::now() + MAX_WORKLOAD;
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15 ^ task as u64;
    for seq in 1..=MAX_TRANSFERS_PER_TASK {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            break;
        }
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let r = rng >> 33;
        let a = on_worker1[(r % on_worker1.len() as u64) as usize];
        let b = on_worker2[((r >> 8) % on_worker2.len() as u64) as usize];
        let (from, to) = if r & (1 << 20) == 0 { (a, b) } else { (b, a) };
        let amount = 1 + (r >> 21) as i64 % 50;
        transfer(&client, (from, to, amount, task, seq), &progress).await;
    }
}

/// One transfer in its own transaction: `progress.started` is set before the COMMIT is sent,
/// `progress.committed` once it is acknowledged.
async fn transfer(
    client: &tokio_postgres::Client,
    (from, to, amount, task, seq): (i64, i64, i64, usize, u64),
    progress: &Progress,
) {
    // Rows are locked in id order by every task, so tasks never deadlock.
    let (first, second) = if from < to {
        ((from, -amount), (to, amount))
    } else {
        ((to, amount), (from, -amount))
    };
    client
        .batch_execute(&format!(
            "BEGIN; \
             UPDATE accounts SET balance = balance + {} WHERE id = {}; \
             UPDATE accounts SET balance = balance + {} WHERE id = {}; \
             INSERT INTO transfers VALUES ({from}, {to}, {amount}, {task}, {seq})",
            first.1, first.0, second.1, second.0
        ))
        .await
        .unwrap_or_else(|e| panic!("task {task} transfer {seq}: {e:?}"));
    progress.started.store(seq, Ordering::SeqCst);
    client
        .batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("task {task} commit of transfer {seq}: {e:?}"));
    progress.committed.store(seq, Ordering::SeqCst);
}

/// `host:port` of every active primary worker, as the coordinator's `pg_dist_node` and
/// `citus_get_active_worker_nodes()` list them.
async fn registered_workers(t: &TestCluster) -> (String, String) {
    let dist_node = t
        .sql(
            "coordinator",
            "SELECT string_agg(nodename || ':' || nodeport, ',' ORDER BY nodeport) FROM pg_dist_node \
             WHERE groupid <> 0 AND noderole = 'primary' AND isactive",
        )
        .await
        .unwrap();
    let active = t
        .sql(
            "coordinator",
            "SELECT string_agg(node_name || ':' || node_port, ',' ORDER BY node_port) \
             FROM citus_get_active_worker_nodes()",
        )
        .await
        .unwrap();
    (dist_node[0].clone(), active[0].clone())
}

/// Waits until every task has committed `at_least[task]` transfers.
async fn wait_for_progress(progress: &[Arc<Progress>], at_least: &[u64]) {
    let deadline = Instant::now() + MAX_WORKLOAD;
    while progress
        .iter()
        .zip(at_least)
        .any(|(p, &n)| p.committed.load(Ordering::SeqCst) < n)
    {
        assert!(
            Instant::now() < deadline,
            "the transfer workload made no progress: committed {:?}, wanted {at_least:?}",
            progress
                .iter()
                .map(|p| p.committed.load(Ordering::SeqCst))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_workload_restores_exactly_to_every_citus_restore_point() {
    skip_unless_postgres!();
    let t = TestCluster::new(2);
    skip_unless_citus!(t);
    let c = &t.cluster;
    let started = Instant::now();

    // `cluster create` makes a Citus cluster: both workers registered and active.
    c.create(false).await.expect("cluster create with Citus");
    let mut workers: Vec<_> = t.config().workers.iter().collect();
    workers.sort_by_key(|w| w.port);
    let expected = workers
        .iter()
        .map(|w| format!("{}:{}", w.hostname, w.port))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        registered_workers(&t).await,
        (expected.clone(), expected.clone())
    );
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    c.basebackup(Some("base")).await.expect("base backup");

    // The tables come after the backup: their Citus metadata is restored from the WAL.
    for sql in [
        "CREATE TABLE accounts(id bigint PRIMARY KEY, balance bigint NOT NULL)",
        "SELECT create_distributed_table('accounts', 'id', shard_count := 4)",
        "CREATE TABLE transfers(from_id bigint, to_id bigint, amount bigint, task int, seq bigint)",
        "SELECT create_distributed_table('transfers', 'from_id', colocate_with := 'accounts')",
        "CREATE TABLE branches(id int PRIMARY KEY, name text)",
        "SELECT create_reference_table('branches')",
        &format!(
            "INSERT INTO branches SELECT g, 'branch ' || g FROM generate_series(1, {BRANCHES}) g"
        ),
        &format!("INSERT INTO accounts SELECT g, {OPENING} FROM generate_series(1, {ACCOUNTS}) g"),
    ] {
        t.sql("coordinator", sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    // Keep Citus' record of every 2PC commit (pg_dist_transaction), to show the transfers used
    // it. Not in the backup (ALTER SYSTEM writes no WAL), so restored clusters run as usual.
    t.sql(
        "coordinator",
        "ALTER SYSTEM SET citus.recover_2pc_interval = -1",
    )
    .await
    .unwrap();
    t.sql("coordinator", "SELECT pg_reload_conf()")
        .await
        .unwrap();
    // Which worker holds each account.
    let placement = t
        .sql(
            "coordinator",
            &format!(
                "SELECT a.id || ' ' || s.nodeport FROM generate_series(1, {ACCOUNTS}) a(id) \
                 JOIN citus_shards s ON s.shardid = get_shard_id_for_distribution_column('accounts', a.id) \
                 WHERE s.table_name = 'accounts'::regclass ORDER BY a.id"
            ),
        )
        .await
        .unwrap();
    let on_worker = |w: usize| -> Vec<i64> {
        let port = t.config().workers[w].port.to_string();
        placement
            .iter()
            .filter_map(|row| row.split_once(' '))
            .filter(|(_, p)| *p == port)
            .map(|(id, _)| id.parse().unwrap())
            .collect()
    };
    let (on_worker1, on_worker2) = (on_worker(0), on_worker(1));
    assert_eq!(placement.len() as i64, ACCOUNTS, "{placement:?}");
    assert!(
        !on_worker1.is_empty() && !on_worker2.is_empty(),
        "accounts on both workers: {placement:?}"
    );

    // The workload runs while the restore points are taken.
    let stop = Arc::new(AtomicBool::new(false));
    let progress: Vec<Arc<Progress>> = (0..TASKS).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (task, p) in progress.iter().enumerate() {
        let client = c
            .backend()
            .connect(&t.config().coordinator)
            .await
            .expect("connect");
        tasks.push(tokio::spawn(transfer_task(
            client,
            task,
            on_worker1.clone(),
            on_worker2.clone(),
            p.clone(),
            stop.clone(),
        )));
    }
    // Per point: its name, the transfers per task certainly in it (acknowledged before it was
    // asked for), those possibly in it (COMMIT sent before it returned), the reference rows.
    let mut points: Vec<(String, [u64; TASKS], [u64; TASKS], usize)> = Vec::new();
    let mut previous = [0; TASKS];
    for k in 0..POINTS {
        // Each point sees at least 10 more transfers per task than the one before.
        wait_for_progress(&progress, &previous.map(|n| n + 10)).await;
        let branches = BRANCHES + k;
        if k > 0 {
            // A reference table write: committed with 2PC on every node.
            t.sql(
                "coordinator",
                &format!("INSERT INTO branches VALUES ({branches}, 'branch {branches}')"),
            )
            .await
            .unwrap();
        }
        let certainly = progress.iter().map(|p| p.committed.load(Ordering::SeqCst));
        let certainly: [u64; TASKS] = certainly.collect::<Vec<_>>().try_into().unwrap();
        let name = format!("transfers-{}", k + 1);
        let point = c
            .create_restore_point(Some(&name))
            .await
            .expect("restore point under load");
        let possibly: [u64; TASKS] = progress
            .iter()
            .map(|p| p.started.load(Ordering::SeqCst))
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        assert!(point.citus, "made by citus_create_restore_point");
        assert_eq!(point.nodes.len(), 3, "{point:?}");
        points.push((name, certainly, possibly, branches));
        previous = possibly;
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("transfer task");
    }
    let done = Ledger::read(&t).await.check("after the workload");
    // Every transfer was committed with 2PC on both workers: one record per worker.
    let records = t
        .sql(
            "coordinator",
            "SELECT count(*) || ' ' || count(DISTINCT groupid) FROM pg_dist_transaction WHERE groupid <> 0",
        )
        .await
        .unwrap();
    let (records, groups) = records[0].split_once(' ').unwrap();
    assert!(
        records.parse::<u64>().unwrap() >= 2 * done.iter().sum::<u64>() && groups == "2",
        "pg_dist_transaction has {records} records on {groups} workers for {done:?} transfers"
    );
    eprintln!(
        "workload: {done:?} transfers per task, points {:?}, {:.1}s so far",
        points.iter().map(|p| (p.1, p.2)).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
    // Every node's archive holds every point.
    let archived = c.archived_restore_points().await.unwrap();
    for (name, ..) in &points {
        let found = archived
            .iter()
            .find(|p| &p.name == name)
            .unwrap_or_else(|| panic!("{name} not in the archives: {archived:?}"));
        assert!(found.missing_on.is_empty(), "{found:?}");
    }

    for (name, certainly, possibly, branches) in &points {
        c.restore_start(Some("base"), Some(name))
            .await
            .unwrap_or_else(|e| panic!("restore-start to {name}: {e}"));
        // Distributed read-only queries work through the paused coordinator.
        assert_eq!(
            t.sql("coordinator", "SELECT pg_is_in_recovery()::text")
                .await
                .unwrap(),
            ["true"]
        );
        let counts = Ledger::read(&t).await.check(&format!("paused at {name}"));
        for task in 0..TASKS {
            assert!(
                certainly[task] <= counts[task] && counts[task] <= possibly[task],
                "paused at {name}: task {task} has {} transfers, committed before the point {}, \
                 COMMIT sent before it returned {}",
                counts[task],
                certainly[task],
                possibly[task]
            );
        }
        assert_eq!(t.count("coordinator", "branches").await, *branches as i64);
        for node in t.node_names() {
            assert_eq!(
                t.count(&node, "pg_prepared_xacts").await,
                0,
                "no transaction is in doubt on {node} at {name}"
            );
        }
        for w in ["worker1", "worker2"] {
            assert_eq!(
                t.count(w, "branches").await,
                *branches as i64,
                "{w}'s copy of the reference table at {name}"
            );
        }
        c.restore_finish()
            .await
            .unwrap_or_else(|e| panic!("restore-finish at {name}: {e}"));

        // The restored cluster answers distributed queries and takes distributed writes.
        assert_eq!(
            registered_workers(&t).await,
            (expected.clone(), expected.clone())
        );
        let client = c.backend().connect(&t.config().coordinator).await.unwrap();
        // A transfer between the workers (2PC) by a task of its own.
        transfer(
            &client,
            (on_worker1[0], on_worker2[0], 7, TASKS, 1),
            &Progress::default(),
        )
        .await;
        t.sql(
            "coordinator",
            "INSERT INTO branches VALUES (100, 'after the restore')",
        )
        .await
        .expect("reference table write after restore-finish");
        let ledger = Ledger::read(&t).await;
        assert_eq!(ledger.balances.values().sum::<i64>(), TOTAL);
        assert_eq!(
            ledger.transfers.len() as u64,
            counts.iter().sum::<u64>() + 1,
            "the new transfer is in"
        );
        assert_eq!(t.count("worker2", "branches").await, *branches as i64 + 1);
    }
    c.stop().await.unwrap();
}
