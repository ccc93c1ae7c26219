"""How errors surface: the exception class by kind, the message and attributes naming the field
or node, and refusals that come before anything on disk changes."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

import citus_recovery
from conftest import PG_BIN, TestCluster, make_config, new_folder

Edit = Callable[[Dict[str, Any]], None]


def _set(path: List[Any], value: Any) -> Edit:
    def edit(config: Dict[str, Any]) -> None:
        target = config
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _drop(key: str) -> Edit:
    def edit(config: Dict[str, Any]) -> None:
        del config[key]

    return edit


@pytest.fixture
def config() -> Iterator[Dict[str, Any]]:
    folder = new_folder()
    yield make_config(folder)
    os.rmdir(folder)


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (_set(["workerCount"], 3), "workerCount", "lists 2"),
        (_set(["coordinatorNode", "port"], 0), "coordinatorNode.port", "is 0"),
        (_set(["workerNodes", 1, "port"], "high"), "workerNodes[1].port", "invalid type"),
        (_set(["workerNodes", 1, "name"], "worker/2"), "workerNodes[1].name", "contains '/'"),
        (_set(["workerNodes", 0, "name"], "coordinator"), "workerNodes[0].name", "used twice"),
        (_set(["clusterBaseFolder"], "relative/cluster"), "clusterBaseFolder", "relative"),
        (_set(["pgBinDir"], "/nonexistent/bin"), "pgBinDir", "has no initdb"),
        (_drop("backupBaseFolder"), "(file)", "missing field `backupBaseFolder`"),
    ],
    ids=[
        "worker-count",
        "port-zero",
        "port-type",
        "node-name",
        "duplicate-name",
        "relative-folder",
        "pg-bin-dir",
        "missing-field",
    ],
)
def test_config_errors_name_the_field(
    config: Dict[str, Any], edit: Edit, field: str, words: str
) -> None:
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(citus_recovery.ConfigError) as raised:
        citus_recovery.Cluster(bad)
    error = raised.value
    assert isinstance(error, citus_recovery.CitusRecoveryError)
    assert error.field == field
    assert f"{field}:" in str(error)
    assert words in str(error)
    assert error.fix and error.problem
    assert error.path is None, "a dict config has no file"


def test_config_file_errors_name_the_file(config: Dict[str, Any], tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(citus_recovery.ConfigError) as raised:
        citus_recovery.Cluster.from_config(missing)
    assert raised.value.field == "(file)"
    assert raised.value.path == missing
    assert str(missing) in str(raised.value)

    broken = tmp_path / "broken.json"
    broken.write_text('{"clusterName": "x",')
    with pytest.raises(citus_recovery.ConfigError, match="broken.json"):
        citus_recovery.Cluster.from_config(str(broken))

    bad = dict(config, workerCount=7)
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps(bad))
    with pytest.raises(citus_recovery.ConfigError) as raised:
        citus_recovery.Cluster.from_config(bad_file)
    assert raised.value.field == "workerCount" and raised.value.path == bad_file

    good = tmp_path / "cluster-config.json"
    good.write_text(json.dumps(config))
    cluster = citus_recovery.Cluster.from_config(good)
    assert cluster.cluster_name == "pytest"
    assert cluster.node_names == ["coordinator", "worker1", "worker2"]
    assert (
        repr(cluster)
        == "Cluster(cluster_name='pytest', nodes=['coordinator', 'worker1', 'worker2'])"
    )


def test_config_dict_takes_paths_and_rejects_non_dicts(config: Dict[str, Any]) -> None:
    with_paths = dict(config, clusterBaseFolder=Path(config["clusterBaseFolder"]), pgBinDir=PG_BIN)
    assert citus_recovery.Cluster(with_paths).node_names[0] == "coordinator"
    with pytest.raises(TypeError):
        citus_recovery.Cluster(json.dumps(config))  # type: ignore[arg-type]


def _listing(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir())


def test_unknown_restore_point_raises_before_anything_changes(
    archived_cluster: TestCluster,
) -> None:
    t = archived_cluster
    c = t.cluster
    cluster_dir = t.folder / "cluster"
    before = (_listing(cluster_dir), _listing(t.folder / "backup"))
    for call in (c.plan_restore_start, c.restore_start):
        with pytest.raises(citus_recovery.UnknownRestorePointError) as raised:
            call("base", "no-such-point")
        error = raised.value
        assert error.name == "no-such-point"
        assert '"no-such-point"' in str(error)
        assert '"rp1"' in error.hint, "the hint lists the known restore points"
    # No data directory moved aside, no restore state, every node still a running primary.
    assert (_listing(cluster_dir), _listing(t.folder / "backup")) == before
    assert c.restore_state() is None
    for node in t.nodes:
        assert t.sql(node, "SELECT pg_is_in_recovery()") == ["f"]
        assert t.count(node) == 10


def test_unknown_backup_raises_and_names_the_folder(archived_cluster: TestCluster) -> None:
    c = archived_cluster.cluster
    with pytest.raises(citus_recovery.UnknownBackupError) as raised:
        c.restore_start("no-such-backup", "rp1")
    assert raised.value.name == "no-such-backup"
    assert raised.value.folder == archived_cluster.folder / "backup"
    assert "base" in raised.value.hint, "the hint lists the complete backups"
    assert c.restore_state() is None


def test_invalid_arguments_are_value_errors(archived_cluster: TestCluster) -> None:
    c = archived_cluster.cluster
    with pytest.raises(citus_recovery.InvalidArgumentError) as raised:
        c.plan_basebackup("base")  # taken
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, citus_recovery.CitusRecoveryError)
    assert raised.value.what == "backup name" and raised.value.value == "base"
    with pytest.raises(ValueError, match="63 bytes"):
        c.create_restore_point("x" * 100)


class _BlockedArchive:
    """Makes a node's WAL archive unwritable while in use: archiving its next segment fails.
    On leaving, the archive is writable again and has caught up, as the next test expects."""

    def __init__(self, t: TestCluster, node: str) -> None:
        self.t = t
        self.node = node
        self.archive = t.folder / "archive" / node

    def __enter__(self) -> None:
        self.mode = self.archive.stat().st_mode
        os.chmod(self.archive, 0)

    def __exit__(self, *exc: object) -> None:
        os.chmod(self.archive, self.mode)
        # After failing, the archiver waits up to a minute before it tries again; a new segment
        # wakes it at once.
        self.t.sql(self.node, "SELECT txid_current()")
        self.t.sql(self.node, "SELECT pg_switch_wal()")
        status = self.t.folder / "cluster" / self.node / "pg_wal" / "archive_status"
        deadline = time.monotonic() + 60
        while any(status.glob("*.ready")):
            assert time.monotonic() < deadline, f"{self.node}: the archive did not catch up"
            time.sleep(0.2)


def test_node_failure_names_the_node_and_the_gil_is_released(
    archived_cluster: TestCluster,
) -> None:
    t = archived_cluster
    with _BlockedArchive(t, "worker1"):
        with ThreadPoolExecutor(max_workers=1) as pool:
            stuck = pool.submit(t.cluster.create_restore_point, "archive-blocked")
            time.sleep(1)
            # The waiting call holds no GIL: this thread runs Python, and another call, meanwhile.
            assert not stuck.done()
            status = t.cluster.status()
            assert [n.server for n in status.nodes] == ["running"] * 3
            with pytest.raises(citus_recovery.NodeError) as raised:
                stuck.result(timeout=120)
    error = raised.value
    assert error.node == "worker1"
    assert error.nodes == ["worker1"]
    assert error.action is not None and "archive" in error.action
    assert str(error).startswith("node worker1:")
    assert "archive-blocked" not in [p.name for p in t.cluster.list_restore_points()]


def test_several_failing_nodes_raise_one_node_error(archived_cluster: TestCluster) -> None:
    t = archived_cluster
    with _BlockedArchive(t, "worker1"), _BlockedArchive(t, "worker2"):
        with pytest.raises(citus_recovery.NodeError) as raised:
            t.cluster.create_restore_point("two-blocked")
    error = raised.value
    assert error.node is None, "several nodes failed"
    assert error.nodes == ["worker1", "worker2"]
    assert str(error).startswith("2 nodes failed:")
    assert [type(e) for e in error.errors] == [citus_recovery.NodeError] * 2
    assert [e.node for e in error.errors if isinstance(e, citus_recovery.NodeError)] == error.nodes
    assert error.rollback is None


INTERRUPTED = """
import json, signal, sys, time
import citus_recovery
# A child of a non-interactive shell may inherit SIGINT ignored; Ctrl-C must reach Python here.
signal.signal(signal.SIGINT, signal.default_int_handler)
cluster = citus_recovery.Cluster(json.loads(sys.argv[1]))
print("calling", flush=True)
try:
    cluster.create_restore_point("interrupted")
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
print("returned", flush=True)
"""


def test_ctrl_c_interrupts_a_waiting_call(archived_cluster: TestCluster) -> None:
    t = archived_cluster
    with _BlockedArchive(t, "worker2"):
        child = subprocess.Popen(
            [sys.executable, "-c", INTERRUPTED, json.dumps(t.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "calling"
            time.sleep(1.5)  # well inside the call, which waits ~15 s for the blocked archive
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 3, f"stdout: {out!r}, stderr: {err!r}"
    assert "KeyboardInterrupt" in out
    assert took < 3, f"KeyboardInterrupt came {took:.1f} s after SIGINT"


def test_failed_restore_start_is_rolled_back_and_says_so(test_cluster: TestCluster) -> None:
    t = test_cluster
    c = t.cluster
    c.create(plain=True)
    c.prepare_archiving()
    # The setting is in worker2's backup but takes effect only at a start: the restored worker2
    # cannot start, the live one can.
    t.sql("worker2", "ALTER SYSTEM SET shared_preload_libraries = 'no_such_library'")
    c.basebackup("base")
    t.sql("worker2", "ALTER SYSTEM RESET shared_preload_libraries")
    for node in t.nodes:
        t.sql(node, "CREATE TABLE xx(id int); INSERT INTO xx SELECT generate_series(1, 10)")
    c.create_restore_point("rp")
    for node in t.nodes:
        t.sql(node, "INSERT INTO xx SELECT generate_series(1, 5)")

    with pytest.raises(citus_recovery.NodeError) as raised:
        c.restore_start("base", "rp")
    error = raised.value
    assert error.node == "worker2", str(error)
    assert "no_such_library" in str(error), "the server log is quoted"
    assert error.rollback is not None and "rolled back" in error.rollback
    assert error.rollback in str(error)
    # Rolled back: every node runs on its old data again, with every row.
    assert c.restore_state() is None
    for node in t.nodes:
        assert t.count(node) == 15


def test_a_catalog_file_others_can_write_is_not_trusted(archived_cluster: TestCluster) -> None:
    c = archived_cluster.cluster
    record = archived_cluster.folder / "backup" / "restore-points.json"
    assert record.stat().st_uid == os.geteuid(), "the catalog is the invoking user's"
    assert record.stat().st_mode & 0o777 == 0o600
    record.chmod(0o666)
    try:
        with pytest.raises(citus_recovery.UntrustedFileError) as raised:
            c.list_restore_points()
        assert raised.value.path == str(record)
        assert "chmod 600" in raised.value.fix
    finally:
        record.chmod(0o600)
    assert [rp.name for rp in c.list_restore_points()][:1] == ["rp1"]
