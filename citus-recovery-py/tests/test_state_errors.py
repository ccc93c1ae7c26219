"""The typed refusals (one exception class per case, a ClusterStateError where the cluster's
state is the cause) raised by real calls, and Cluster.apply running a printed plan or refusing
one the cluster moved away from."""

from __future__ import annotations

import fcntl
import os
import subprocess
from typing import Callable, List

import pytest

import citus_recovery
from conftest import PG_BIN, TestCluster


def _pg_ctl_stop(t: TestCluster, node: str) -> None:
    """Stops one node behind the library's back."""
    command = [str(PG_BIN / "pg_ctl"), "stop", "-D", str(t.folder / "cluster" / node), "-m", "fast"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, cwd="/")


def test_nothing_to_finish_or_abort(archived_cluster: TestCluster) -> None:
    c = archived_cluster.cluster
    for call in (c.restore_abort, c.plan_restore_abort, c.restore_finish, c.plan_restore_finish):
        with pytest.raises(citus_recovery.NoRestoreUnderWayError) as raised:
            call()
        error = raised.value
        assert isinstance(error, citus_recovery.ClusterStateError)
        assert isinstance(error, citus_recovery.CitusRecoveryError)
        assert error.detail and error.detail in str(error)
        assert "restore-start" in str(error), "the message says what to do"
    assert c.restore_state() is None


def test_apply_runs_the_printed_plan(archived_cluster: TestCluster) -> None:
    c = archived_cluster.cluster
    plan = c.plan_restore_point("applied")
    point = c.apply(plan)
    assert isinstance(point, citus_recovery.RestorePoint)
    assert point.name == "applied"
    assert "applied" in [p.name for p in c.list_restore_points()]
    with pytest.raises(TypeError, match="plan_"):
        c.apply("applied")  # type: ignore[call-overload]


def test_state_refusals_on_a_fresh_cluster(test_cluster: TestCluster) -> None:
    t = test_cluster
    c = t.cluster
    c.create(plain=True)

    with pytest.raises(citus_recovery.DataDirExistsError) as exists:
        c.create(plain=True)
    assert exists.value.node == "coordinator"
    assert exists.value.data_dir == t.folder / "cluster" / "coordinator"

    for call in (c.plan_basebackup, c.plan_restore_point):
        with pytest.raises(citus_recovery.ArchivingOffError) as off:
            call()
        assert off.value.node == "coordinator"
        assert "prepare-archiving" in str(off.value) and off.value.why in str(off.value)

    # A plan the cluster moved away from is refused and changes nothing; a fresh one runs.
    plan = c.plan_prepare_archiving()
    _pg_ctl_stop(t, "worker1")
    with pytest.raises(citus_recovery.PlanOutdatedError) as outdated:
        c.apply(plan)
    assert isinstance(outdated.value, citus_recovery.ClusterStateError)
    assert outdated.value.what == "node worker1 was running when planned and is stopped now"
    assert t.sql("coordinator", "SHOW archive_mode") == ["off"], "nothing was changed"

    with pytest.raises(citus_recovery.NodeNotRunningError) as stopped:
        c.plan_prepare_archiving()
    assert stopped.value.node == "worker1"
    assert stopped.value.state == "stopped"
    assert "cluster start" in stopped.value.fix

    c.stop()
    data_dir = t.folder / "cluster" / "worker2"
    aside = t.folder / "cluster" / "worker2.aside"
    data_dir.rename(aside)
    try:
        with pytest.raises(citus_recovery.DataDirMissingError) as missing:
            c.start()
        assert missing.value.node == "worker2" and missing.value.data_dir == data_dir
    finally:
        aside.rename(data_dir)

    c.start()
    plan = c.plan_prepare_archiving()
    report = c.apply(plan)
    assert isinstance(report, citus_recovery.ArchiveReport)
    assert t.sql("worker1", "SHOW archive_mode") == ["on"]


def test_a_held_lock_refuses_commands_and_apply(archived_cluster: TestCluster) -> None:
    c = archived_cluster.cluster
    plan = c.plan_restore_point("never-made")
    path = archived_cluster.folder / "backup" / "citus-recovery.lock"
    with open(path, "r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.truncate(0)
        held.write("pid 1 running `a test` since now")
        held.flush()
        calls: List[Callable[[], object]] = [
            lambda: c.apply(plan),
            lambda: c.create_restore_point("never-made"),
        ]
        for call in calls:
            with pytest.raises(citus_recovery.LockedError) as raised:
                call()
            assert raised.value.path == path
            assert raised.value.holder == "pid 1 running `a test` since now"
            assert "wait for it to finish" in str(raised.value)
    assert "never-made" not in [p.name for p in c.list_restore_points()]
