"""expire and check through the Python module, on real PostgreSQL servers: the report's status
and exit code, the expire plan as a Plan, and the catalog after expire."""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest

import citus_recovery
from conftest import TestCluster

# The test host's disk may be nearly full: free space tests off.
NO_DISK_TEST: Dict[str, Any] = {"freeSpaceWarningPercent": None, "freeSpaceCriticalPercent": None}


def test_check_and_expire(test_cluster: TestCluster) -> None:
    t = test_cluster
    c = citus_recovery.Cluster(dict(t.config, check=NO_DISK_TEST, retention={"full": 1}))
    c.create(plain=True)
    c.prepare_archiving()

    report = c.check()
    assert isinstance(report, citus_recovery.CheckReport)
    assert (report.status, report.exit_code) == ("critical", 2), str(report)
    assert any(f["check"] == "backup_age" and f["status"] == "critical" for f in report.findings)

    c.basebackup("b1")
    c.create_restore_point("rp1")
    c.basebackup("b2")
    c.create_restore_point("rp2")
    report = c.check(round_trip=True)
    assert report.exit_code == 0, str(report)
    assert [n["node"] for n in report.nodes] == t.nodes
    assert all(n["round_trip_seconds"] is not None for n in report.nodes)
    assert json.loads(report.to_json())["status"] == "ok"
    assert report.to_dict()["newest_backup"]["name"] == "b2"
    assert 'citus_recovery_check_status{cluster="pytest"} 0' in report.to_prometheus()

    plan = c.plan_expire()
    assert isinstance(plan, citus_recovery.ExpirePlan)
    assert isinstance(plan, citus_recovery.Plan)
    assert plan.command == "expire"
    assert plan.kept == ["b2"]
    assert [b["name"] for b in plan.backups] == ["b1"]
    assert plan.unreachable_restore_points == ["rp1"]
    assert plan.bytes_freed > 0
    assert "remove backup b1" in str(plan)
    assert json.loads(plan.to_json())["kept"] == ["b2"]
    assert [b.name for b in c.list_backups()] == ["b1", "b2"], "the plan changed nothing"

    done = c.expire(restore_points=True)
    assert [b["name"] for b in done.backups] == ["b1"]
    assert [b.name for b in c.list_backups()] == ["b2"]
    assert [p.name for p in c.list_restore_points()] == ["rp2"]
    assert c.verify("b2", "rp2").ok
    assert c.plan_expire().backups == []

    with pytest.raises(citus_recovery.ConfigError, match="retention.full"):
        citus_recovery.Cluster(dict(t.config, retention={"full": 0}))
