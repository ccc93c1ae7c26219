"""What a test harness needs from the module: each node's connection info, and run options as
keywords."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import citus_recovery
from conftest import PG_BIN, TestCluster, make_config, new_folder


def test_nodes_and_dsn_reach_every_server(archived_cluster: TestCluster) -> None:
    c = archived_cluster.cluster
    nodes = c.nodes
    assert [n.name for n in nodes] == c.node_names
    assert [n.role for n in nodes] == ["coordinator", "worker", "worker"]
    for n in nodes:
        assert n.port == archived_cluster.ports[n.name]
        assert Path(n.data_dir) == archived_cluster.folder / "cluster" / n.name
        assert (Path(n.data_dir) / "PG_VERSION").is_file()
        assert n.dsn == c.dsn(n.name)
        # A libpq connection string: psql takes it as it is, no port map needed.
        done = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-A", "-t", "-d", n.dsn, "-c", "SELECT count(*) FROM xx"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert int(done.stdout.strip()) == archived_cluster.count(n.name)
    with pytest.raises(citus_recovery.InvalidArgumentError) as raised:
        c.dsn("no-such-node")
    assert "coordinator" in raised.value.problem


def test_run_options_are_keywords() -> None:
    folder = new_folder()
    try:
        config = make_config(folder, workers=1)
        c = citus_recovery.Cluster(config, wait_timeout=5, poll_interval=0.05, concurrency=1)
        assert c.node_names == ["coordinator", "worker1"]
        for bad in ({"wait_timeout": -1.0}, {"poll_interval": 0.0}):
            with pytest.raises(ValueError):
                citus_recovery.Cluster(config, **bad)  # type: ignore[arg-type]
    finally:
        # Nothing was made in it: no folder is left behind in /tmp.
        os.rmdir(folder)
