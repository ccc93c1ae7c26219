"""A repository configured from Python as in the JSON file (`repository`, `compression`,
`binary`): WAL goes through `citus-recovery archive-push` into it, on a real cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

import citus_recovery
from conftest import (
    TestCluster,
    cli_binary,
    close_cluster,
    make_config,
    new_folder,
    skip_or_fail,
    skip_reason,
)


def _objects(folder: Path) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_posix_repository_from_a_config_dict() -> None:
    reason = skip_reason()
    if reason:
        skip_or_fail(reason, "CITUS_RECOVERY_REQUIRE_POSTGRES")
    binary = cli_binary()
    if binary is None:
        skip_or_fail(
            "the citus-recovery binary is not built (cargo build -p citus-recovery)",
            "CITUS_RECOVERY_REQUIRE_POSTGRES",
        )
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

        c = citus_recovery.Cluster(config, config_file=config_file, wait_timeout=300)
        t.cluster = c
        assert json.loads(config_file.read_text()) == config
        assert config_file.stat().st_mode & 0o777 == 0o644

        c.prepare_archiving()
        command = t.sql("worker1", "SELECT current_setting('archive_command')")[0]
        assert str(binary) in command and str(config_file) in command and "archive-push" in command
        backup = c.basebackup("base")
        for node in t.nodes:
            t.sql(node, "CREATE TABLE xx(id int); INSERT INTO xx SELECT generate_series(1, 10)")
        point = c.create_restore_point("rp1")
        assert [b.name for b in c.list_backups()] == [backup.name] == ["base"]
        assert [p.name for p in c.list_restore_points()] == [point.name] == ["rp1"]
        for node in t.nodes:
            objects = _objects(repo / "wal" / node)
            assert any(o.endswith(".zst") for o in objects), f"{node}: {objects}"
        assert not any((folder / "archive").rglob("0*")), "the archive folder is not used"
        report = c.verify("base", "rp1")
        assert report.ok, report.failures()
    finally:
        close_cluster(t)
