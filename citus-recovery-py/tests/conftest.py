"""Fixtures: throwaway local clusters of real PostgreSQL servers, driven through citus_recovery.

Each cluster lives in a temporary folder on free ports and is stopped when its test (or module)
ends, also when the test fails. As root, the library runs the servers as the `postgres` OS user.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, NoReturn, Optional

import pytest

import citus_recovery

PG_BIN = Path(os.environ.get("CITUS_RECOVERY_PG_BIN", "/usr/lib/postgresql/15/bin"))
REPO_ROOT = Path(__file__).resolve().parents[2]


def skip_reason() -> Optional[str]:
    """Why real clusters cannot run here, if they cannot."""
    if not (PG_BIN / "postgres").is_file():
        return f"PostgreSQL server programs not found in {PG_BIN}"
    if os.geteuid() == 0:
        try:
            subprocess.run(["id", "postgres"], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            return "running as root and there is no `postgres` OS user to run the servers"
    return None


def required(switch: str) -> bool:
    """Whether the environment makes a missing prerequisite a failure (CI sets these switches:
    CITUS_RECOVERY_REQUIRE_POSTGRES, CITUS_RECOVERY_REQUIRE_CITUS) rather than a skip."""
    return os.environ.get(switch, "") not in ("", "0")


def skip_or_fail(reason: str, switch: str) -> NoReturn:
    """Skips the test saying why; fails it instead when `switch` is set, so that a missing
    prerequisite can never pass as a skipped test."""
    if required(switch):
        pytest.fail(f"{reason}, and {switch} is set: this test must run here")
    print(f"SKIPPED: {reason}")
    pytest.skip(f"{reason} ({switch}=1 makes this a failure)")


def citus_missing_reason() -> Optional[str]:
    """Why Citus cannot be used with the PostgreSQL in PG_BIN, if it cannot (the files the
    library itself looks for)."""
    try:
        out = subprocess.run(
            [str(PG_BIN / "pg_config"), "--pkglibdir", "--sharedir"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        lib, share = Path(out[0]), Path(out[1])
    except (OSError, subprocess.CalledProcessError, IndexError):
        lib, share = PG_BIN.parent / "lib", Path("/usr/share/postgresql/15")
    if (lib / "citus.so").is_file() and (share / "extension" / "citus.control").is_file():
        return None
    return (
        f"the Citus extension is not installed for the PostgreSQL in {PG_BIN} "
        "(install it with `bash ../shared/citus/install.sh` from the repository root)"
    )


def skip_unless_citus() -> None:
    """Skips the test when Citus is not installed; fails it with CITUS_RECOVERY_REQUIRE_CITUS."""
    reason = citus_missing_reason()
    if reason:
        skip_or_fail(reason, "CITUS_RECOVERY_REQUIRE_CITUS")


_GIVEN: "set[int]" = set()


def free_ports(n: int) -> List[int]:
    """Free ports below Linux's ephemeral range (32768 and up), each checked by binding it,
    never handed out twice here, picked at random: a port from ``bind(0)`` is soon reused by
    some client's outgoing connection, and a server started on it later fails."""
    import random

    ports: List[int] = []
    for _ in range(100_000):
        if len(ports) == n:
            break
        port = random.randrange(20_000, 32_000)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        ports.append(port)
    assert len(ports) == n, "no free ports in 20000..32000 on 127.0.0.1"
    return ports


def make_config(folder: Path, workers: int = 2, name: str = "pytest") -> Dict[str, Any]:
    """A config dict (the cluster-config.json format) for a cluster inside `folder`."""
    ports = free_ports(workers + 1)

    def node(node_name: str, port: int) -> Dict[str, Any]:
        return {
            "name": node_name,
            "hostname": "localhost",
            "port": port,
            "username": "postgres",
            "dbname": "postgres",
        }

    return {
        "clusterName": name,
        "workerCount": workers,
        "coordinatorNode": node("coordinator", ports[0]),
        "workerNodes": [node(f"worker{i + 1}", ports[i + 1]) for i in range(workers)],
        "clusterBaseFolder": str(folder / "cluster"),
        "archiveBaseFolder": str(folder / "archive"),
        "backupBaseFolder": str(folder / "backup"),
        "pgBinDir": str(PG_BIN),
    }


def new_folder() -> Path:
    """A temporary folder the servers' OS user can enter (mkdtemp makes it 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="citus-recovery-py-"))
    os.chmod(folder, 0o755)
    return folder


@dataclass
class TestCluster:
    """A cluster under test: the module's `Cluster`, its config, and SQL through psql."""

    __test__ = False  # not a test class, despite the name

    cluster: citus_recovery.Cluster
    config: Dict[str, Any]
    folder: Path
    ports: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        nodes = [self.config["coordinatorNode"], *self.config["workerNodes"]]
        self.ports = {n["name"]: n["port"] for n in nodes}

    @property
    def nodes(self) -> List[str]:
        return list(self.ports)

    def config_file(self) -> Path:
        """The config written as a file (for the command-line tool and from_config)."""
        path = self.folder / "cluster-config.json"
        path.write_text(json.dumps(self.config, indent=2))
        return path

    def psql(self, node: str, sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "localhost",
                "-p",
                str(self.ports[node]),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def sql(self, node: str, sql: str) -> List[str]:
        """Runs SQL on a node; the output lines (unaligned, tuples only)."""
        done = self.psql(node, sql)
        if done.returncode != 0:
            raise AssertionError(f"psql on {node} failed: {sql}\n{done.stderr}")
        return [line for line in done.stdout.splitlines() if line]

    def count(self, node: str, table: str = "xx") -> int:
        return int(self.sql(node, f"SELECT count(*) FROM {table}")[0])

    def stop(self) -> None:
        """Stops every server: through the module, else straight through pg_ctl."""
        try:
            self.cluster.stop()
        except citus_recovery.CitusRecoveryError:
            cluster_dir = self.folder / "cluster"
            for data_dir in cluster_dir.iterdir() if cluster_dir.is_dir() else []:
                if (data_dir / "postmaster.pid").exists():
                    pg_ctl = [
                        str(PG_BIN / "pg_ctl"),
                        "stop",
                        "-D",
                        str(data_dir),
                        "-m",
                        "immediate",
                    ]
                    if os.geteuid() == 0:
                        pg_ctl = ["runuser", "-u", "postgres", "--", *pg_ctl]
                    subprocess.run(pg_ctl, capture_output=True, cwd="/")


def open_cluster(workers: int = 2) -> TestCluster:
    """A cluster config in a new folder; nothing is created yet."""
    reason = skip_reason()
    if reason:
        skip_or_fail(reason, "CITUS_RECOVERY_REQUIRE_POSTGRES")
    folder = new_folder()
    config = make_config(folder, workers)
    return TestCluster(citus_recovery.Cluster(config), config, folder)


def close_cluster(t: TestCluster) -> None:
    t.stop()
    shutil.rmtree(t.folder, ignore_errors=True)


@pytest.fixture
def test_cluster() -> Iterator[TestCluster]:
    """A fresh, not yet created cluster of a coordinator and 2 workers, for one test."""
    t = open_cluster()
    try:
        yield t
    finally:
        close_cluster(t)


@pytest.fixture(scope="session")
def archived_cluster() -> Iterator[TestCluster]:
    """A running plain cluster shared by the tests that leave it as they found it: archiving
    on, a table `xx` with 10 rows on every node, base backup "base", restore point "rp1"."""
    t = open_cluster()
    try:
        t.cluster.create(plain=True)
        t.cluster.prepare_archiving()
        t.cluster.basebackup("base")
        for node in t.nodes:
            t.sql(node, "CREATE TABLE xx(id int); INSERT INTO xx SELECT generate_series(1, 10)")
        t.cluster.create_restore_point("rp1")
        yield t
    finally:
        close_cluster(t)


def cli_binary() -> Optional[Path]:
    """The command-line tool, to compare the module's plans with `--dry-run`."""
    given = os.environ.get("CITUS_RECOVERY_BIN")
    if given:
        return Path(given)
    target = REPO_ROOT / os.environ.get("CARGO_TARGET_DIR", "target")  # an absolute one wins
    for profile in ("debug", "release"):
        path = target / profile / "citus-recovery"
        if path.is_file():
            return path
    return None


@pytest.fixture
def binary() -> Path:
    """The command-line tool the servers run as archive_command (and the plans are compared
    with): a skip, or a failure where PostgreSQL is required, when it is not built."""
    reason = skip_reason()
    if reason:
        skip_or_fail(reason, "CITUS_RECOVERY_REQUIRE_POSTGRES")
    found = cli_binary()
    if found is None:
        skip_or_fail(
            "the citus-recovery binary is not built (cargo build -p citus-recovery)",
            "CITUS_RECOVERY_REQUIRE_POSTGRES",
        )
    return found


def with_posix_repository(t: TestCluster, binary: Path) -> Path:
    """Gives the test cluster a posix repository in its folder (written to its config file,
    which archive-push reads) and reopens its Cluster; returns the repository's folder."""
    repo = t.folder / "repo"
    t.config["repository"] = {"type": "posix", "path": str(repo)}
    t.config["binary"] = str(binary)
    t.cluster = citus_recovery.Cluster.from_config(t.config_file())
    return repo
