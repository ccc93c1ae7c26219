"""Progress reaching Python: the ``progress=`` callback, log lines forwarded to ``logging``, and
time-based targets (``before=``)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any, Dict, List

import pytest

import citus_recovery
from conftest import TestCluster


def check_stream(events: List[citus_recovery.ProgressEvent]) -> Dict[str, List[str]]:
    """Checks the rules every stream keeps; each node's phases in the order they started."""
    order: Dict[str, List[str]] = {}
    open_steps: Dict[str, str] = {}
    for e in events:
        if e.total is not None:
            assert e.done <= e.total, e
        if e.state == "start":
            assert e.node not in open_steps, e
            open_steps[e.node] = e.phase
            order.setdefault(e.node, []).append(e.phase)
        elif e.state == "progress":
            assert open_steps.get(e.node) == e.phase
        else:
            assert e.state == "done"
            assert open_steps.pop(e.node) == e.phase
            assert e.total == e.done, "done is 100%"
    assert not open_steps, open_steps
    return order


def test_progress_callback_and_log_lines(
    test_cluster: TestCluster, caplog: Any, monkeypatch: Any
) -> None:
    c = test_cluster.cluster
    c.create(plain=True)
    c.prepare_archiving()
    for node in test_cluster.nodes:
        test_cluster.sql(
            node, "CREATE TABLE xx(id int); INSERT INTO xx SELECT generate_series(1, 100000)"
        )
    events: List[citus_recovery.ProgressEvent] = []

    def progress(e: citus_recovery.ProgressEvent) -> None:
        events.append(e)

    with caplog.at_level(logging.INFO, logger="citus_recovery"):
        backup = c.basebackup("b1", progress=progress)
    order = check_stream(events)
    assert repr(events[0]).startswith("ProgressEvent(node="), repr(events[0])
    assert sorted(order) == sorted(test_cluster.nodes)
    for node in test_cluster.nodes:
        assert order[node] == ["base_backup"]
        last = [e for e in events if e.node == node][-1]
        assert (last.state, last.unit) == ("done", "bytes")
        part = next(p for p in backup.nodes if p.node == node)
        assert last.done == part.bytes > 1_000_000
        assert last.elapsed_secs > 0
    # The library's log lines reached `logging`, each naming its node.
    ours = [r for r in caplog.records if r.name == "citus_recovery"]
    assert ours, "no log line forwarded"
    for node in test_cluster.nodes:
        assert any(
            getattr(r, "node", None) == node and r.getMessage().startswith(f"{node}: ")
            for r in ours
        ), node

    # A callback that raises does not stop the work.
    def broken(e: citus_recovery.ProgressEvent) -> None:
        raise RuntimeError("a broken progress callback")

    unraisable: List[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    point = c.create_restore_point("rp", progress=broken)
    monkeypatch.undo()
    assert point.name == "rp"
    assert unraisable and isinstance(unraisable[0].exc_value, RuntimeError), "reported"

    events.clear()
    report = c.restore_start(restore_point="rp", progress=progress)
    assert report.restore_point == "rp"
    order = check_stream(events)
    for node in test_cluster.nodes:
        assert order[node][-1] == "wait_paused", order[node]
        assert "extract" in order[node]
        extract = [e for e in events if e.node == node and e.phase == "extract"][-1]
        assert extract.unit == "bytes" and extract.done > 1_000_000
    c.restore_finish()


def test_before_picks_the_newest_point_made_before_the_time(test_cluster: TestCluster) -> None:
    c = test_cluster.cluster
    c.create(plain=True)
    c.prepare_archiving()
    c.basebackup("b")
    c.create_restore_point("early")
    time.sleep(1.1)
    between = datetime.now(timezone.utc)
    time.sleep(1.1)
    c.create_restore_point("late")
    report = c.verify(before=between)
    assert report.restore_point == "early"
    # The report says which point was chosen and how far before the time.
    assert report.before_note is not None and '"early"' in report.before_note, report.before_note
    assert "before it" in report.before_note and report.before_note in str(report)
    assert c.verify(restore_point="early").before_note is None
    plan = c.plan_restore_start(before=between)
    assert plan.restore_point == "early"
    assert any("before it" in n for n in plan.notes), plan.notes
    with pytest.raises(citus_recovery.UnknownRestorePointError):
        c.verify(before=datetime(2000, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(ValueError):
        c.verify(restore_point="early", before=between)


def test_asyncio_calls_run_alongside_the_loop_and_cancel(test_cluster: TestCluster) -> None:
    from citus_recovery.aio import AsyncCluster

    c = test_cluster.cluster
    c.create(plain=True)
    c.prepare_archiving()
    for node in test_cluster.nodes:
        test_cluster.sql(
            node, "CREATE TABLE xx(id int); INSERT INTO xx SELECT generate_series(1, 300000)"
        )
    ac = AsyncCluster(c)

    async def scenario() -> None:
        ticks = 0
        task = asyncio.create_task(ac.basebackup("a1"))
        while not task.done():
            ticks += 1  # the loop goes on while the backup runs
            await asyncio.sleep(0.01)
        backup = await task
        assert backup.name == "a1"
        assert ticks > 5, ticks

        # Cancelled while it waits for archiving to get a segment that never comes.
        events: List[citus_recovery.ProgressEvent] = []
        for node in test_cluster.nodes:
            test_cluster.sql(node, "ALTER SYSTEM SET archive_library = ''")
            test_cluster.sql(node, "ALTER SYSTEM SET archive_command = 'false'")
            test_cluster.sql(node, "SELECT pg_reload_conf()")
        point = asyncio.create_task(ac.create_restore_point("never", progress=events.append))
        await asyncio.sleep(2)
        assert not point.done()
        started = time.monotonic()
        point.cancel()
        with pytest.raises(asyncio.CancelledError):
            await point
        assert time.monotonic() - started < 2
        assert any(e.phase == "switch_wal_and_wait" for e in events), [e.phase for e in events]
        assert "never" not in [p.name for p in c.list_restore_points()]

    asyncio.run(scenario())
