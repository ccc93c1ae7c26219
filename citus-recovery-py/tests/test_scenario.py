"""The whole backup-and-restore cycle through the Python module, on real PostgreSQL servers:
create, archive, backup, restore point, more rows, restore-start with the counts checked while
paused, restore-finish, writes work."""

from __future__ import annotations

import json
from datetime import timezone
from pathlib import Path

import pytest

import citus_recovery
from conftest import TestCluster, skip_unless_citus

FIRST = 3000
SECOND = 2000
POINT = "before 'more' rows"


def test_plain_nodes_restore_to_the_restore_point(test_cluster: TestCluster) -> None:
    t = test_cluster
    c = t.cluster
    c.create(plain=True)
    status = c.status()
    assert [n.server for n in status.nodes] == ["running"] * 3, str(status)

    report = c.prepare_archiving()
    assert sorted(report.restarted) == sorted(t.nodes), "archive_mode needs a restart everywhere"
    assert report.restart_pending == {}
    assert all(n.archiving for n in c.status().nodes)

    backup = c.basebackup("first")
    assert isinstance(backup, citus_recovery.Backup)
    assert backup.name == "first"
    assert backup.cluster_name == "pytest"
    assert backup.citus_version is None
    assert backup.start_time.tzinfo == timezone.utc
    assert backup.start_time <= backup.end_time
    assert [n.node for n in backup.nodes] == t.nodes
    assert backup.bytes == sum(n.bytes for n in backup.nodes) > 0
    worker1 = backup.node("worker1")
    assert worker1 is not None and worker1.backup == "first" and worker1.timeline == 1
    assert worker1.wal_segment_size == 16 * 1024 * 1024, "the server's default, recorded"
    assert backup.node("nobody") is None
    assert "Backup(name='first'" in repr(backup)
    assert json.loads(backup.to_json())["name"] == "first"
    assert c.list_backups() == [backup]

    for i, node in enumerate(t.nodes):
        # Each node holds its own rows, as the scenario does on plain nodes.
        lo = i * 1_000_000
        t.sql(
            node,
            f"CREATE TABLE xx(id int); "
            f"INSERT INTO xx SELECT g FROM generate_series({lo} + 1, {lo} + {FIRST}) g",
        )
    point = c.create_restore_point(POINT)
    assert isinstance(point, citus_recovery.RestorePoint)
    assert point.name == POINT and not point.citus
    assert [n.node for n in point.nodes] == t.nodes
    assert all(n.segment for n in point.nodes)
    assert repr(point).startswith("RestorePoint(name=\"before 'more' rows\"")
    assert c.list_restore_points() == [point]
    with pytest.raises(citus_recovery.CitusRecoveryError, match="exists already"):
        c.create_restore_point(POINT)

    for node in t.nodes:
        t.sql(node, f"INSERT INTO xx SELECT g FROM generate_series(1, {SECOND}) g")
        assert t.count(node) == FIRST + SECOND

    # Planning changes nothing.
    plan = c.plan_restore_start("first", POINT)
    for node in t.nodes:
        assert f"  {node}:" in str(plan)
    assert "recovery_target_name = 'before ''more'' rows'" in str(plan)
    assert c.restore_state() is None
    assert t.count("worker1") == FIRST + SECOND

    restored = c.restore_start("first", POINT)
    assert isinstance(restored, citus_recovery.RestoreReport)
    assert (restored.backup, restored.restore_point) == ("first", POINT)
    assert [n.node for n in restored.nodes] == t.nodes
    assert "paused" in str(restored)
    for paused in restored.nodes:
        node = paused.node
        # Paused at the restore point: the rows before it, none after, and read-only.
        assert t.count(node) == FIRST, f"node {node} while paused"
        assert t.sql(node, "SELECT pg_is_in_recovery(), pg_get_wal_replay_pause_state()") == [
            "t|paused"
        ]
        insert = t.psql(node, "INSERT INTO xx VALUES (1)")
        assert insert.returncode != 0 and "read-only" in insert.stderr
        assert isinstance(paused.moved_aside_to, Path)
        assert (paused.moved_aside_to / "PG_VERSION").is_file(), "old data directory kept"
        assert "/" in paused.replay_lsn
    state = c.restore_state()
    assert state is not None and state.backup == "first" and state.restore_point == POINT
    status = c.status()
    assert status.restore is not None
    assert all(n.in_recovery and n.pause_state == "paused" for n in status.nodes), str(status)

    # A second restore-start while one is under way starts it again: the old data directories
    # stay where the first one moved them, what it restored is kept aside.
    again = c.plan_restore_start("first", POINT)
    assert any("resumes the restore" in n for n in again.notes), str(again)
    assert any(".failed-restore-" in line for line in again.steps), str(again)

    finish_plan = c.plan_restore_finish()
    assert isinstance(finish_plan, citus_recovery.FinishPlan)
    assert finish_plan.command == "restore-finish"
    assert {line.split(":")[0] for line in finish_plan.steps} == set(t.nodes)

    finished = c.restore_finish()
    assert [n.timeline for n in finished.nodes] == [2, 2, 2]
    for node in t.nodes:
        t.sql(node, "INSERT INTO xx VALUES (42)")
        assert t.count(node) == FIRST + 1
    assert c.restore_state() is None
    with pytest.raises(citus_recovery.CitusRecoveryError):
        c.restore_finish()  # nothing left to finish


def test_restore_abort_puts_the_old_data_back(test_cluster: TestCluster) -> None:
    t = test_cluster
    c = t.cluster
    c.create(plain=True)
    c.prepare_archiving()
    c.basebackup("first")
    for node in t.nodes:
        t.sql(node, f"CREATE TABLE xx(id int); INSERT INTO xx SELECT generate_series(1, {FIRST})")
    c.create_restore_point("point")
    for node in t.nodes:
        t.sql(node, f"INSERT INTO xx SELECT generate_series(1, {SECOND})")
    with pytest.raises(citus_recovery.CitusRecoveryError, match="nothing to abort"):
        c.plan_restore_abort()

    c.restore_start("first", "point")
    assert all(t.count(node) == FIRST for node in t.nodes)
    plan = c.plan_restore_abort()
    assert isinstance(plan, citus_recovery.AbortPlan)
    assert (plan.command, plan.backup, plan.restore_point) == ("restore-abort", "first", "point")
    assert {line.split(":")[0] for line in plan.steps} == set(t.nodes)

    aborted = c.restore_abort()
    assert [n.node for n in aborted.nodes] == t.nodes
    assert all(n.restored_old_data_dir for n in aborted.nodes), str(aborted)
    assert json.loads(aborted.to_json())["nodes"][0]["node"] == "coordinator"
    for node in t.nodes:
        # The data from before restore-start, every row, writable.
        assert t.count(node) == FIRST + SECOND
        t.sql(node, "INSERT INTO xx VALUES (42)")
    assert c.restore_state() is None


def test_citus_distributed_table_restores_to_the_restore_point(test_cluster: TestCluster) -> None:
    skip_unless_citus()
    t = test_cluster
    c = t.cluster
    c.create()  # Citus, as it is installed
    status = c.status()
    assert all(n.citus_version for n in status.nodes), str(status)

    c.prepare_archiving()
    backup = c.basebackup("citus")
    assert backup.citus_version is not None
    t.sql(
        "coordinator",
        "CREATE TABLE xx(id int); SELECT create_distributed_table('xx', 'id'); "
        f"INSERT INTO xx SELECT generate_series(1, {FIRST})",
    )
    point = c.create_restore_point("citus-point")
    assert point.citus, "made by citus_create_restore_point"
    assert point.nodes[0].lsn is not None
    t.sql("coordinator", f"INSERT INTO xx SELECT generate_series(1, {SECOND})")
    assert t.count("coordinator") == FIRST + SECOND

    c.restore_start("citus", "citus-point")
    assert t.count("coordinator") == FIRST, "the distributed table at the restore point"
    c.restore_finish()
    t.sql("coordinator", "INSERT INTO xx VALUES (42)")
    assert t.count("coordinator") == FIRST + 1
