"""prepare_archiving and WAL archiving another tool set up: refused with ArchivingInUseError,
nothing changed, taken over only with replace_existing=True."""

from __future__ import annotations

import time
from typing import Iterator, List

import pytest

import citus_recovery
from conftest import TestCluster, close_cluster, open_cluster


@pytest.fixture
def one_worker() -> Iterator[TestCluster]:
    t = open_cluster(workers=1)
    try:
        yield t
    finally:
        close_cluster(t)


def archiving_settings(t: TestCluster, node: str) -> List[str]:
    """As configured: SHOW says "(disabled)" for archive_command while archive_mode is off."""
    return t.sql(
        node,
        "SELECT name || '=' || reset_val FROM pg_settings"
        " WHERE name IN ('archive_command', 'archive_library', 'archive_mode') ORDER BY name",
    )


def test_another_tools_archive_command_is_refused_then_replaced(one_worker: TestCluster) -> None:
    t = one_worker
    t.cluster.create(plain=True)
    t.sql("worker1", "ALTER SYSTEM SET archive_command = 'PGPASSWORD=hunter2 /bin/true %p'")
    t.sql("worker1", "SELECT pg_reload_conf()")
    for _ in range(50):  # the reload reaches new sessions a moment later
        if any("/bin/true" in s for s in archiving_settings(t, "worker1")):
            break
        time.sleep(0.1)
    before = [archiving_settings(t, n) for n in t.nodes]

    with pytest.raises(citus_recovery.ArchivingInUseError) as refused:
        t.cluster.prepare_archiving()
    err = refused.value
    assert isinstance(err, citus_recovery.CitusRecoveryError)
    assert (err.node, err.setting) == ("worker1", "archive_command")
    assert err.current == "PGPASSWORD=*** /bin/true %p"
    assert "--replace-existing" in str(err) and "hunter2" not in str(err)
    assert [archiving_settings(t, n) for n in t.nodes] == before, "nothing changed"
    assert not (t.folder / "archive").exists()

    plan = t.cluster.plan_prepare_archiving(replace_existing=True)
    sentence = (
        "replaces archive_command 'PGPASSWORD=*** /bin/true %p' (another tool's WAL stream stops)"
    )
    assert any(s.startswith("worker1: ALTER SYSTEM SET") and sentence in s for s in plan.steps)
    assert f"node worker1: {sentence}" in plan.notes
    assert "hunter2" not in str(plan) and "hunter2" not in plan.to_json()

    t.cluster.prepare_archiving(replace_existing=True)
    assert archiving_settings(t, "worker1") == [
        "archive_command=",
        "archive_library=basic_archive",
        "archive_mode=on",
    ]
    again = t.cluster.plan_prepare_archiving()
    assert any("already prepared" in n for n in again.notes), str(again)
