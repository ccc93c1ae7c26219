"""Password and TLS keys from a config dict: a secure cluster (scram-sha-256 over TLS, verify-full)
created and used from Python, and a password in the config refused without repeating it."""

from __future__ import annotations

import os
import stat
import subprocess
from typing import Iterator

import pytest

import citus_recovery
from conftest import PG_BIN, TestCluster, close_cluster, open_cluster


@pytest.fixture
def secure_cluster() -> Iterator[TestCluster]:
    t = open_cluster(workers=1)
    t.config["sslmode"] = "verify-full"
    t.config["sslrootcert"] = str(t.folder / "ca.crt")
    t.config["passfile"] = str(t.folder / "pgpass")
    for node in [t.config["coordinatorNode"], *t.config["workerNodes"]]:
        node["hostname"] = "127.0.0.1"
    t.cluster = citus_recovery.Cluster(t.config)
    try:
        yield t
    finally:
        close_cluster(t)


def test_a_secure_cluster_from_a_dict(secure_cluster: TestCluster) -> None:
    t = secure_cluster
    t.cluster.create(plain=True, secure=True)
    passfile = t.folder / "pgpass"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    status = t.cluster.status()
    assert all(n.server == "running" for n in status.nodes), status
    t.cluster.prepare_archiving()
    t.cluster.basebackup("base")
    point = t.cluster.create_restore_point("rp")
    assert point.name == "rp"
    port = t.config["coordinatorNode"]["port"]
    env = {
        **os.environ,
        "PGPASSFILE": str(passfile),
        "PGSSLROOTCERT": str(t.folder / "ca.crt"),
    }
    env.pop("PGPASSWORD", None)

    def psql(sslmode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-A", "-t", "-w",
             f"host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode={sslmode}",
             "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
            capture_output=True, text=True, env={**env, "PGSSLMODE": sslmode}, timeout=60,
        )

    done = psql("verify-full")
    assert done.returncode == 0 and done.stdout.strip() == "t", done.stderr
    refused = psql("disable")
    assert refused.returncode != 0 and "no encryption" in refused.stderr, refused.stderr


def test_a_password_in_the_config_dict_is_refused(test_cluster: TestCluster) -> None:
    config = dict(test_cluster.config, password="hunter2-in-config")
    with pytest.raises(citus_recovery.ConfigError) as info:
        citus_recovery.Cluster(config)
    assert info.value.field == "password"
    assert "PGPASSWORD" in info.value.fix
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)
