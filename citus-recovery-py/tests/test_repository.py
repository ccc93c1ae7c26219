"""A repository configured from Python as in the JSON file (`repository`, `compression`,
`binary`): WAL goes through `citus-recovery archive-push` into it, on a real cluster; posix, and
S3 on a real S3-speaking server (moto on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import citus_recovery
from conftest import (
    REPO_ROOT,
    TestCluster,
    close_cluster,
    free_ports,
    make_config,
    new_folder,
    required,
    skip_or_fail,
)


def _objects(folder: Path) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _cycle(t: TestCluster, binary: Path, config_file: Path) -> None:
    """prepare_archiving, a base backup, rows, a restore point, list and verify."""
    c = t.cluster
    c.prepare_archiving()
    command = t.sql("worker1", "SELECT current_setting('archive_command')")[0]
    assert str(binary) in command and str(config_file) in command and "archive-push" in command
    backup = c.basebackup("base")
    for node in t.nodes:
        t.sql(node, "CREATE TABLE xx(id int); INSERT INTO xx SELECT generate_series(1, 10)")
    point = c.create_restore_point("rp1")
    assert [b.name for b in c.list_backups()] == [backup.name] == ["base"]
    assert [p.name for p in c.list_restore_points()] == [point.name] == ["rp1"]
    assert not any((t.folder / "archive").rglob("0*")), "the archive folder is not used"
    report = c.verify("base", "rp1")
    assert report.ok, report.failures()


def test_posix_repository_from_a_config_dict(binary: Path) -> None:
    folder = new_folder()
    repo = folder / "repo"
    config = make_config(folder, workers=1, name="pyrepo")
    config["repository"] = {"type": "posix", "path": str(repo)}
    config["compression"] = "zstd:3"
    config["binary"] = str(binary)
    config_file = folder / "cluster-config.json"

    # Without a file, PostgreSQL's archive_command would have no config to name.
    t = TestCluster(citus_recovery.Cluster(config), config, folder)
    try:
        t.cluster.create(plain=True)
        with pytest.raises(citus_recovery.ConfigError) as raised:
            t.cluster.plan_prepare_archiving()
        assert raised.value.field == "(file)"
        assert "config_file=" in raised.value.fix

        with pytest.raises(citus_recovery.InvalidArgumentError):
            citus_recovery.Cluster(config, config_file="relative.json")

        t.cluster = citus_recovery.Cluster(config, config_file=config_file, wait_timeout=300)
        assert json.loads(config_file.read_text()) == config
        assert config_file.stat().st_mode & 0o777 == 0o644
        _cycle(t, binary, config_file)
        for node in t.nodes:
            objects = _objects(repo / "wal" / node)
            assert any(o.endswith(".zst") for o in objects), f"{node}: {objects}"
    finally:
        close_cluster(t)


@pytest.fixture
def moto_s3() -> Iterator[Dict[str, Any]]:
    """A moto S3 server on 127.0.0.1 checking signatures, with bucket `wal-bucket`; stopped
    after the test."""
    python = Path(
        os.environ.get("CITUS_RECOVERY_MOTO_PYTHON", str(REPO_ROOT / ".venv-moto/bin/python"))
    )
    if not python.is_file():
        switch = (
            "CITUS_RECOVERY_REQUIRE_POSTGRES"
            if required("CITUS_RECOVERY_REQUIRE_POSTGRES")
            else "CITUS_RECOVERY_REQUIRE_S3"
        )
        skip_or_fail(
            f"no S3 test server: {python} is missing (bash scripts/setup.sh --tests)", switch
        )
    port = free_ports(1)[0]
    server = subprocess.Popen(
        [str(python), str(REPO_ROOT / "scripts/moto-s3.py"), "--port", str(port)]
        + ["--bucket", "wal-bucket", "--auth"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line, "the S3 test server did not start"
        creds = json.loads(line)
        yield {"endpoint": f"http://127.0.0.1:{port}", **creds}
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_s3_repository_from_a_config_dict(
    binary: Path, moto_s3: Dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library and the servers (started by it, inheriting its environment) sign with these.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3["accessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3["secretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    folder = new_folder()
    config = make_config(folder, workers=1, name="pys3")
    config["repository"] = {
        "type": "s3",
        "bucket": "wal-bucket",
        "prefix": "py",
        "region": "us-east-1",
        "endpoint": moto_s3["endpoint"],
        "allowHttp": True,
    }
    config["compression"] = "lz4"
    config["binary"] = str(binary)
    config_file = folder / "cluster-config.json"
    t = TestCluster(
        citus_recovery.Cluster(config, config_file=config_file, wait_timeout=300), config, folder
    )
    try:
        t.cluster.create(plain=True)
        _cycle(t, binary, config_file)
        assert moto_s3["secretAccessKey"] not in config_file.read_text()
    finally:
        close_cluster(t)
