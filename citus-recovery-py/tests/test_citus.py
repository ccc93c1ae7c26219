"""The headline guarantee through the Python module, on a real Citus cluster (coordinator and 2
workers, made by `cluster create`): a transfer workload of distributed 2PC transactions runs
while cluster-wide restore points are taken, and every restore to one of them keeps the ledger
exact. Also: a worker registered in pg_dist_node that the config lacks is refused.

Needs the Citus extension: skipped with the reason where it is missing, a failure when
CITUS_RECOVERY_REQUIRE_CITUS=1 (as in CI)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Tuple

import pytest

import citus_recovery
from conftest import TestCluster, skip_unless_citus

ACCOUNTS = 20
OPENING = 1000
TOTAL = ACCOUNTS * OPENING
TASKS = 2
# Bounds on the workload, so the test stays short on a slow machine.
MAX_TRANSFERS_PER_TASK = 2000
MAX_WORKLOAD = 20.0
POINTS = 3
# Reference table rows before the first restore point; one more is added before each later one.
BRANCHES = 2

Transfer = Tuple[int, int, int, int, int]  # from, to, amount, task, seq


@dataclass
class Progress:
    """A task's transfers: `started` ones may have committed, `committed` ones certainly have."""

    started: int = 0
    committed: int = 0


def transfer_sql(transfer: Transfer) -> str:
    """One transfer in one transaction; rows locked in id order, so tasks never deadlock."""
    source, target, amount, task, seq = transfer
    low, high = sorted([(source, -amount), (target, amount)])
    return (
        f"BEGIN; UPDATE accounts SET balance = balance + {low[1]} WHERE id = {low[0]}; "
        f"UPDATE accounts SET balance = balance + {high[1]} WHERE id = {high[0]}; "
        f"INSERT INTO transfers VALUES ({source}, {target}, {amount}, {task}, {seq}); COMMIT"
    )


def transfer_task(
    t: TestCluster,
    task: int,
    accounts: Tuple[List[int], List[int]],
    progress: Progress,
    stop: threading.Event,
    errors: List[BaseException],
) -> None:
    """Moves amounts between an account on worker1 and one on worker2, so Citus commits each
    transaction with two-phase commit."""
    rng = random.Random(task)
    deadline = time.monotonic() + MAX_WORKLOAD
    try:
        for seq in range(1, MAX_TRANSFERS_PER_TASK + 1):
            if stop.is_set() or time.monotonic() > deadline:
                return
            source, target = rng.choice(accounts[0]), rng.choice(accounts[1])
            if rng.random() < 0.5:
                source, target = target, source
            progress.started = seq
            t.sql("coordinator", transfer_sql((source, target, rng.randint(1, 50), task, seq)))
            progress.committed = seq
    except BaseException as e:  # reported by the main thread
        errors.append(e)


def read_ledger(t: TestCluster) -> Tuple[Dict[int, int], List[Transfer]]:
    """Balances by account and every transfer, through the coordinator."""
    balances = {
        int(i): int(b)
        for i, b in (
            row.split("|") for row in t.sql("coordinator", "SELECT id, balance FROM accounts")
        )
    }
    rows = t.sql(
        "coordinator", "SELECT concat_ws(' ', from_id, to_id, amount, task, seq) FROM transfers"
    )
    transfers = []
    for row in rows:
        f, to, amount, task, seq = (int(x) for x in row.split())
        transfers.append((f, to, amount, task, seq))
    return balances, transfers


def check_ledger(t: TestCluster, when: str) -> List[int]:
    """Checks what holds at every consistent point; returns each task's number of transfers."""
    balances, transfers = read_ledger(t)
    assert len(balances) == ACCOUNTS, when
    assert sum(balances.values()) == TOTAL, f"{when}: the sum of balances is the opening total"
    expected = {i: OPENING for i in range(1, ACCOUNTS + 1)}
    for source, target, amount, _, _ in transfers:
        expected[source] -= amount
        expected[target] += amount
    assert balances == expected, f"{when}: no transfer is half there"
    counts = []
    for task in range(TASKS):
        seqs = sorted(tr[4] for tr in transfers if tr[3] == task)
        assert seqs == list(range(1, len(seqs) + 1)), f"{when}: task {task}'s are a prefix"
        counts.append(len(seqs))
    return counts


def registered_workers(t: TestCluster) -> Tuple[str, str]:
    """host:port of the active workers, from pg_dist_node and citus_get_active_worker_nodes()."""
    dist_node = t.sql(
        "coordinator",
        "SELECT string_agg(nodename || ':' || nodeport, ',' ORDER BY nodeport) FROM pg_dist_node "
        "WHERE groupid <> 0 AND noderole = 'primary' AND isactive",
    )
    active = t.sql(
        "coordinator",
        "SELECT string_agg(node_name || ':' || node_port, ',' ORDER BY node_port) "
        "FROM citus_get_active_worker_nodes()",
    )
    return dist_node[0], active[0]


def test_a_transfer_workload_restores_exactly_to_every_citus_restore_point(
    test_cluster: TestCluster,
) -> None:
    skip_unless_citus()
    t = test_cluster
    c = t.cluster
    c.create()
    status = c.status()
    assert all(n.citus_version for n in status.nodes), str(status)
    workers = sorted(t.config["workerNodes"], key=lambda w: int(w["port"]))
    expected = ",".join(f"{w['hostname']}:{w['port']}" for w in workers)
    assert registered_workers(t) == (expected, expected)
    c.prepare_archiving()
    c.basebackup("base")

    for sql in [
        "CREATE TABLE accounts(id bigint PRIMARY KEY, balance bigint NOT NULL)",
        "SELECT create_distributed_table('accounts', 'id', shard_count := 4)",
        "CREATE TABLE transfers(from_id bigint, to_id bigint, amount bigint, task int, seq bigint)",
        "SELECT create_distributed_table('transfers', 'from_id', colocate_with := 'accounts')",
        "CREATE TABLE branches(id int PRIMARY KEY, name text)",
        "SELECT create_reference_table('branches')",
        f"INSERT INTO branches SELECT g, 'branch ' || g FROM generate_series(1, {BRANCHES}) g",
        f"INSERT INTO accounts SELECT g, {OPENING} FROM generate_series(1, {ACCOUNTS}) g",
    ]:
        t.sql("coordinator", sql)
    # Keep Citus' record of every 2PC commit (pg_dist_transaction), to show the transfers used
    # it. Not in the backup (ALTER SYSTEM writes no WAL), so restored clusters run as usual.
    t.sql("coordinator", "ALTER SYSTEM SET citus.recover_2pc_interval = -1")
    t.sql("coordinator", "SELECT pg_reload_conf()")
    placement = t.sql(
        "coordinator",
        f"SELECT a.id, s.nodeport FROM generate_series(1, {ACCOUNTS}) a(id) "
        "JOIN citus_shards s ON s.shardid = get_shard_id_for_distribution_column('accounts', a.id) "
        "WHERE s.table_name = 'accounts'::regclass",
    )
    on_worker = tuple(
        [int(row.split("|")[0]) for row in placement if row.split("|")[1] == str(w["port"])]
        for w in t.config["workerNodes"]
    )
    assert len(placement) == ACCOUNTS and all(on_worker), placement
    accounts = (on_worker[0], on_worker[1])

    # The topology check: the same cluster seen through a config that lacks worker2 is refused
    # before it makes a restore point.
    partial = dict(t.config)
    partial["workerNodes"] = t.config["workerNodes"][:1]
    partial["workerCount"] = 1
    port2 = t.config["workerNodes"][1]["port"]
    with pytest.raises(citus_recovery.CitusRecoveryError, match=f":{port2} in pg_dist_node"):
        citus_recovery.Cluster(partial).create_restore_point("partial")
    assert c.list_restore_points() == [], "no restore point was made"

    # The workload runs while the restore points are taken.
    stop = threading.Event()
    errors: List[BaseException] = []
    progress = [Progress() for _ in range(TASKS)]
    threads = [
        threading.Thread(target=transfer_task, args=(t, i, accounts, p, stop, errors))
        for i, p in enumerate(progress)
    ]
    for thread in threads:
        thread.start()
    # Per point: its name, each task's transfers certainly in it (acknowledged before it was
    # asked for), those possibly in it (sent before it returned), the reference table's rows.
    points: List[Tuple[str, List[int], List[int], int]] = []
    try:
        previous = [0] * TASKS
        for k in range(POINTS):
            # Each point sees at least 5 more transfers per task than the one before.
            deadline = time.monotonic() + MAX_WORKLOAD
            while any(p.committed < n + 5 for p, n in zip(progress, previous)):
                assert not errors, errors
                assert time.monotonic() < deadline, "the transfer workload made no progress"
                time.sleep(0.02)
            branches = BRANCHES + k
            if k > 0:
                # A reference table write: committed with 2PC on every node.
                t.sql("coordinator", f"INSERT INTO branches VALUES ({branches}, 'b{branches}')")
            certainly = [p.committed for p in progress]
            point = c.create_restore_point(f"transfers-{k + 1}")
            possibly = [p.started for p in progress]
            assert point.citus, "made by citus_create_restore_point"
            points.append((point.name, certainly, possibly, branches))
            previous = possibly
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors
    done = check_ledger(t, "after the workload")
    # Every transfer was committed with 2PC on both workers: one record per worker.
    records, groups = t.sql(
        "coordinator",
        "SELECT count(*), count(DISTINCT groupid) FROM pg_dist_transaction WHERE groupid <> 0",
    )[0].split("|")
    assert int(records) >= 2 * sum(done) and groups == "2", (records, groups, done)
    print(f"workload: {done} transfers per task; points {[(p[1], p[2]) for p in points]}")

    for name, certainly, possibly, branches in points:
        c.restore_start("base", name)
        # Distributed read-only queries work through the paused coordinator.
        assert t.sql("coordinator", "SELECT pg_is_in_recovery()") == ["t"]
        counts = check_ledger(t, f"paused at {name}")
        for task in range(TASKS):
            assert certainly[task] <= counts[task] <= possibly[task], (
                f"paused at {name}: task {task} has {counts[task]} transfers, committed before "
                f"the point {certainly[task]}, sent before it returned {possibly[task]}"
            )
        for node in t.nodes:
            assert t.count(node, "branches") == branches, f"{node}'s reference table at {name}"
            assert t.count(node, "pg_prepared_xacts") == 0, f"a transaction in doubt on {node}"
        c.restore_finish()

        # The restored cluster answers distributed queries and takes distributed writes.
        assert registered_workers(t) == (expected, expected)
        t.sql("coordinator", transfer_sql((accounts[0][0], accounts[1][0], 7, TASKS, 1)))
        t.sql("coordinator", "INSERT INTO branches VALUES (100, 'after the restore')")
        balances, transfers = read_ledger(t)
        assert sum(balances.values()) == TOTAL
        assert len(transfers) == sum(counts) + 1, "the new transfer is in"
        assert t.count("worker2", "branches") == branches + 1
