"""Cluster.verify and the pre-flight of restore_start, on a real cluster: a damaged backup is
reported per node and stops restore_start with VerifyError before anything changes."""

from __future__ import annotations

import json

import pytest

import citus_recovery
from conftest import TestCluster


def test_verify_passes_and_chooses_the_backup(archived_cluster: TestCluster) -> None:
    report = archived_cluster.cluster.verify(restore_point="rp1")
    assert isinstance(report, citus_recovery.VerifyReport)
    assert report.ok, str(report)
    assert report.backup == "base"
    assert report.chosen_because is not None and "backup base is the newest" in report.chosen_because
    checked = {(c.node, c.check) for c in report.checks}
    for node in archived_cluster.nodes:
        for check in ("backup files", "restore point", "timeline", "WAL continuity"):
            assert (node, check) in checked, checked
    assert (None, "disk space") in checked
    assert report.failures() == []
    assert json.loads(report.to_json())["restore_point"] == "rp1"
    assert "every check passed" in str(report)


def test_a_damaged_backup_raises_verify_error_before_anything_changes(
    test_cluster: TestCluster,
) -> None:
    t = test_cluster
    c = t.cluster
    c.create(plain=True)
    c.prepare_archiving()
    c.basebackup("base")
    for node in t.nodes:
        t.sql(node, "CREATE TABLE xx(id int); INSERT INTO xx SELECT generate_series(1, 100)")
    c.create_restore_point("rp")
    # A backup file of worker2 that does not match its manifest any more.
    manifest = t.folder / "backup" / "base" / "worker2" / "backup_manifest"
    manifest.write_text(manifest.read_text().replace('"Path": "PG_VERSION", "Size": 3', '"Path": "PG_VERSION", "Size": 4'))
    before = sorted(p.name for p in (t.folder / "cluster").iterdir())

    report = c.verify("base", "rp")
    assert not report.ok
    failed = [ch for ch in report.checks if not ch.ok]
    assert [(ch.node, ch.check) for ch in failed] == [("worker2", "backup files")], str(report)
    assert "PG_VERSION has 3 bytes, the manifest says 4" in failed[0].detail

    with pytest.raises(citus_recovery.VerifyError) as raised:
        c.restore_start("base", "rp")
    err = raised.value
    assert isinstance(err, citus_recovery.CitusRecoveryError)
    assert (err.backup, err.restore_point) == ("base", "rp")
    assert len(err.failures) == 1 and err.failures[0].startswith("node worker2: backup files:")
    assert sorted(p.name for p in (t.folder / "cluster").iterdir()) == before
    assert c.restore_state() is None
    assert all(t.count(node) == 100 for node in t.nodes)
