"""`fork` and `drill` through the Python module, on a real Citus cluster: a paused fork whose
distributed queries cannot reach the live workers, a promoted fork that holds the point's rows
and writes only to its own nodes, a drill with a passing and a failing SQL check.

Needs the Citus extension: skipped with the reason where it is missing, a failure when
CITUS_RECOVERY_REQUIRE_CITUS=1."""

from __future__ import annotations

import json
import subprocess

import citus_recovery
from conftest import PG_BIN, TestCluster, make_config, skip_unless_citus


def test_fork_and_drill(test_cluster: TestCluster) -> None:
    skip_unless_citus()
    t = test_cluster
    t.cluster.create(plain=False)
    t.cluster.prepare_archiving()
    t.cluster.basebackup("base")
    t.sql(
        "coordinator",
        "CREATE TABLE t(id bigint PRIMARY KEY); "
        "SELECT create_distributed_table('t', 'id', shard_count := 4); "
        "INSERT INTO t SELECT generate_series(1, 42)",
    )
    t.cluster.create_restore_point("p")
    t.sql("coordinator", "INSERT INTO t VALUES (1000)")

    fork_config = make_config(t.folder, name="pytest-fork")
    for key, sub in [
        ("clusterBaseFolder", "fork"),
        ("archiveBaseFolder", "fork-archive"),
        ("backupBaseFolder", "fork-backup"),
    ]:
        fork_config[key] = str(t.folder / sub)
    fork = citus_recovery.Cluster(fork_config)
    fork_ports = {n["name"]: n["port"] for n in [fork_config["coordinatorNode"], *fork_config["workerNodes"]]}

    def fork_sql(node: str, sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-A", "-t", "-h", "localhost", "-p", str(fork_ports[node]),
             "-U", "postgres", "-d", "postgres", "-c", sql],
            capture_output=True, text=True, timeout=120,
        )

    try:
        plan = t.cluster.plan_fork(fork, restore_point="p")
        assert isinstance(plan, citus_recovery.ForkPlan)
        assert isinstance(plan, citus_recovery.Plan)
        assert plan.backup == "base" and not plan.promote
        assert [m["to_port"] for m in plan.moves] == list(fork_ports.values())
        assert "archive_mode = 'off'" in str(plan)

        paused = t.cluster.fork(fork, restore_point="p")
        assert not paused.promoted
        refused = fork_sql("coordinator", "SELECT count(*) FROM t")
        assert refused.returncode != 0 and "root certificate" in refused.stderr, refused
        fork.restore_abort()

        promoted = t.cluster.fork(fork, restore_point="p", promote=True)
        assert promoted.promoted and json.loads(promoted.to_json())["promoted"]
        assert fork_sql("coordinator", "SELECT count(*) FROM t").stdout.strip() == "42"
        wrote = fork_sql("coordinator", "INSERT INTO t SELECT generate_series(5001, 5100)")
        assert wrote.returncode == 0, wrote.stderr
        assert t.count("coordinator", "t") == 43
    finally:
        fork.stop()

    drill_config = dict(t.config)
    drill_config["drill"] = {"checks": [{"node": "coordinator", "sql": "SELECT count(*) FROM t", "expect": "42"}]}
    passed = citus_recovery.Cluster(drill_config).drill()
    assert isinstance(passed, citus_recovery.DrillReport)
    assert passed.exit_code == 0 and passed.status == "ok", str(passed)
    assert passed.checks[0]["got"] == "42"
    assert passed.seconds_to_recover is not None and passed.seconds_to_recover > 0
    drill_config["drill"] = {"checks": [{"node": "coordinator", "sql": "SELECT count(*) FROM t", "expect": "43"}]}
    failed = citus_recovery.Cluster(drill_config).drill()
    assert failed.exit_code == 2 and failed.status == "critical", str(failed)
    assert not failed.checks[0]["passed"]
