"""Plan objects: `str(plan)` is the command-line tool's `--dry-run` text, `plan.to_json()` its
`--dry-run --json` output, `plan.steps` one line per step; building one changes nothing."""

from __future__ import annotations

import json
import subprocess
from typing import Any, List

import pytest

import citus_recovery
from conftest import TestCluster, cli_binary


def cli_dry_run(t: TestCluster, args: List[str], as_json: bool = False) -> str:
    """The command-line tool's `--dry-run` output for the same cluster."""
    binary = cli_binary()
    if binary is None:
        pytest.skip("the citus-recovery binary is not built (cargo build -p citus-recovery)")
    flags = ["--config", str(t.config_file()), "--dry-run", "--quiet"]
    if as_json:
        flags.append("--json")
    done = subprocess.run([str(binary), *flags, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_plan_shape(t: TestCluster, plan: citus_recovery.Plan, command: str) -> None:
    assert isinstance(plan, citus_recovery.Plan)
    assert plan.command == command
    assert plan.steps, "every plan here has steps"
    for line in plan.steps:
        node, _, step = line.partition(": ")
        assert node in t.nodes and step, line
    # The phases hold the same steps, in the same order.
    from_phases = [
        f"{n.node}: {step}" for phase in plan.phases for n in phase.nodes for step in n.steps
    ]
    assert from_phases == plan.steps
    assert all(phase.title for phase in plan.phases)
    data: Any = json.loads(plan.to_json())
    assert len(data["phases"]) == len(plan.phases)
    assert repr(plan).startswith(f"<{type(plan).__name__} {command}: ")
    text = str(plan)
    assert text.startswith(f"plan: {command}")
    for node in t.nodes:
        assert f"  {node}:" in text


def test_prepare_archiving_plan(archived_cluster: TestCluster) -> None:
    t = archived_cluster
    plan = t.cluster.plan_prepare_archiving()
    assert isinstance(plan, citus_recovery.ArchivePlan)
    assert plan.restart_pending == {}
    assert any("already prepared" in note for note in plan.notes), plan.notes
    assert str(plan) == cli_dry_run(t, ["prepare-archiving"])
    assert plan.to_json() + "\n" == cli_dry_run(t, ["prepare-archiving"], as_json=True)
    without_restart = t.cluster.plan_prepare_archiving(restart=False)
    assert str(without_restart) == cli_dry_run(t, ["prepare-archiving", "--no-restart"])


def test_basebackup_plan(archived_cluster: TestCluster) -> None:
    t = archived_cluster
    plan = t.cluster.plan_basebackup("next")
    assert isinstance(plan, citus_recovery.BasebackupPlan)
    assert plan.name == "next" and plan.citus_version is None
    check_plan_shape(t, plan, "basebackup")
    assert str(plan) == cli_dry_run(t, ["basebackup", "--name", "next"])
    assert plan.to_json() + "\n" == cli_dry_run(t, ["basebackup", "--name", "next"], as_json=True)
    assert not (t.folder / "backup" / "next").exists(), "planning made no backup folder"
    assert t.cluster.plan_basebackup().name, "a default name is chosen"


def test_restore_point_plan(archived_cluster: TestCluster) -> None:
    t = archived_cluster
    plan = t.cluster.plan_restore_point("rp-next")
    assert isinstance(plan, citus_recovery.RestorePointPlan)
    assert plan.name == "rp-next" and not plan.citus
    check_plan_shape(t, plan, "restore-point")
    assert any("pg_create_restore_point('rp-next')" in line for line in plan.steps)
    assert str(plan) == cli_dry_run(t, ["restore-point", "--name", "rp-next"])
    assert plan.to_json() + "\n" == cli_dry_run(
        t, ["restore-point", "--name", "rp-next"], as_json=True
    )
    assert "rp-next" not in [p.name for p in t.cluster.list_restore_points()]


def test_restore_start_plan_changes_nothing(archived_cluster: TestCluster) -> None:
    t = archived_cluster
    plan = t.cluster.plan_restore_start("base", "rp1")
    assert isinstance(plan, citus_recovery.RestorePlan)
    assert (plan.backup, plan.restore_point) == ("base", "rp1")
    check_plan_shape(t, plan, "restore-start")
    assert "recovery_target_name = 'rp1'" in str(plan)
    assert [n.node for n in plan.state.nodes] == t.nodes
    for node_state in plan.state.nodes:
        assert node_state.data_dir == t.folder / "cluster" / node_state.node
    data: Any = json.loads(plan.to_json())
    assert data["state"]["backup"] == "base"
    # The command-line tool plans the same steps (its text differs only in timestamps).
    args = ["restore-start", "--backup", "base", "--restore-point", "rp1"]
    cli: Any = json.loads(cli_dry_run(t, args, as_json=True))
    assert [p["title"] for p in cli["phases"]] == [p.title for p in plan.phases]
    assert t.cluster.restore_state() is None
    for node in t.nodes:
        assert t.sql(node, "SELECT pg_is_in_recovery()") == ["f"]


def test_restore_finish_plan_needs_a_restore(archived_cluster: TestCluster) -> None:
    # With no restore under way there is nothing to finish; the scenario test plans a real one.
    with pytest.raises(citus_recovery.CitusRecoveryError):
        archived_cluster.cluster.plan_restore_finish()


def test_status_and_reports_print_as_the_cli_does(archived_cluster: TestCluster) -> None:
    t = archived_cluster
    status = t.cluster.status()
    assert status.cluster_name == "pytest"
    assert str(status).startswith("cluster pytest\n")
    assert [n.node for n in status.nodes] == t.nodes
    for n in status.nodes:
        assert n.server == "running" and n.in_recovery is False and n.archiving
        assert n.settings["archive_mode"] == "on"
        assert n.timeline == 1 and n.lsn and n.server_version
        assert n.server_zstd is True, "Debian's PostgreSQL 15 is built with zstd"
        assert n.citus_version is None and n.error is None
    assert json.loads(status.to_json())["cluster_name"] == "pytest"
    assert status.restore is None
    assert "NodeStatus(node='coordinator', server='running'" in repr(status.nodes[0])
