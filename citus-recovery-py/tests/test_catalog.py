"""Cluster.delete_restore_point on real PostgreSQL servers: the point leaves the catalog (in
backupBaseFolder, or in a posix repository), an unknown name raises UnknownRestorePointError
naming what exists, and the WAL record stays (the archive scan still finds it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import citus_recovery

from conftest import TestCluster, close_cluster, open_cluster, with_posix_repository


def delete_cycle(t: TestCluster) -> None:
    c = t.cluster
    c.create(plain=True)
    c.prepare_archiving()
    first = c.create_restore_point("first point")
    second = c.create_restore_point("second")
    assert [p.name for p in c.list_restore_points()] == ["first point", "second"]

    removed = c.delete_restore_point("first point")
    assert isinstance(removed, citus_recovery.RestorePoint)
    assert removed == first
    assert c.list_restore_points() == [second]

    with pytest.raises(citus_recovery.UnknownRestorePointError) as raised:
        c.delete_restore_point("first point")
    assert raised.value.name == "first point"
    assert '"second"' in raised.value.hint
    assert c.list_restore_points() == [second]


def test_delete_restore_point_from_the_backup_folder() -> None:
    t = open_cluster(workers=1)
    try:
        delete_cycle(t)
        assert (t.folder / "backup" / "restore-points.json").is_file()
    finally:
        close_cluster(t)


def test_delete_restore_point_from_a_posix_repository(binary: Path) -> None:
    t = open_cluster(workers=1)
    try:
        repo = with_posix_repository(t, binary)
        delete_cycle(t)
        entries = sorted(p.name for p in (repo / "catalog" / "restore-points").iterdir())
        assert entries == ["second.json"]
        assert not (t.folder / "backup" / "restore-points.json").exists()
        assert not (repo / "lock").exists(), "released after each command"
        assert issubclass(citus_recovery.RepositoryLockedError, citus_recovery.CitusRecoveryError)
        assert os.stat(repo).st_uid == os.geteuid()
    finally:
        close_cluster(t)



def test_import_folders_into_a_posix_repository(binary: Path) -> None:
    """A backup and restore point kept in the folders, then a repository: plan_import_folders
    lists them, import_folders copies them, and list_backups reads them from the repository."""
    t = open_cluster(workers=1)
    try:
        c = t.cluster
        c.create(plain=True)
        c.prepare_archiving()
        with pytest.raises(citus_recovery.InvalidArgumentError) as raised:
            c.plan_import_folders()
        assert "repository" in str(raised.value)
        c.basebackup("old")
        c.create_restore_point("rp-old")
        with_posix_repository(t, binary)
        c = t.cluster
        c.prepare_archiving()
        plan = c.plan_import_folders()
        assert isinstance(plan, citus_recovery.ImportPlan)
        assert plan.command == "import-folders"
        assert [b["backup"]["name"] for b in plan.backups] == ["old"]
        assert plan.restore_points == ["rp-old"]
        assert {w["node"] for w in plan.wal} == set(t.nodes)
        report = c.import_folders()
        assert isinstance(report, citus_recovery.ImportReport)
        assert report.backups == ["old"] and report.restore_points == ["rp-old"]
        assert report.wal_files > 0 and report.backup_bytes_stored > 0
        assert "imported into" in str(report)
        assert c.plan_import_folders().is_empty
        assert [b.name for b in c.list_backups()] == ["old"]
        assert c.verify("old", "rp-old").ok
    finally:
        close_cluster(t)
