#!/usr/bin/env bash
# Tests the install the README documents: in a fresh virtual environment made in a temporary
# folder, exactly `pip install citus-recovery-py/` (pip builds the wheel through maturin's PEP 517
# backend), then imports the installed module from outside the source tree and checks its
# version, its type stubs and py.typed, and one real call. scripts/test.sh runs this.
#
# Time: pip builds in release mode by default (minutes on 2 cores). Unless MATURIN_PEP517_ARGS is
# set, this script asks maturin for the dev profile, which reuses the debug build of the Rust tests
# in CARGO_TARGET_DIR: what is tested is the install path (backend, wheel contents, import), not the
# optimizer. Set MATURIN_PEP517_ARGS="" to test the release build users get.
set -euo pipefail
cd "$(dirname "$0")/.."

export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS-"--profile dev"}"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "test-wheel: no version in Cargo.toml" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# pip would keep every built wheel (50 MB in debug) in ~/.cache: a cache of our own, removed after.
export PIP_CACHE_DIR="$tmp/pip-cache"
chmod 755 "$tmp" # the smoke call's config names folders in it; the servers' OS user may look
start=$(date +%s)
python3 -m venv "$tmp/venv"
echo "test-wheel: pip install citus-recovery-py/ into a fresh venv (MATURIN_PEP517_ARGS='$MATURIN_PEP517_ARGS')" >&2
# The documented command, with the fresh venv's pip (as after `source venv/bin/activate`).
"$tmp/venv/bin/pip" install citus-recovery-py/
echo "test-wheel: installed in $(($(date +%s) - start))s" >&2

# From the temporary folder, so that nothing of the source tree can be imported instead.
cd "$tmp"
CITUS_RECOVERY_EXPECTED_VERSION="$version" CITUS_RECOVERY_TMP="$tmp" "$tmp/venv/bin/python" - <<'EOF'
import os
import sys
from pathlib import Path

import citus_recovery

venv = Path(sys.prefix).resolve()
package = Path(citus_recovery.__file__).resolve().parent
problems = []
if venv not in package.parents:
    problems.append(f"citus_recovery imported from {package}, not from the venv {venv}")
expected = os.environ["CITUS_RECOVERY_EXPECTED_VERSION"]
if citus_recovery.__version__ != expected:
    problems.append(f"__version__ is {citus_recovery.__version__!r}, Cargo.toml says {expected!r}")
for name in ("py.typed", "_native.pyi", "__init__.py", "aio.py"):
    if not (package / name).is_file():
        problems.append(f"{name} is not installed in {package}")
if not list(package.glob("_native*.so")):
    problems.append(f"no compiled _native module in {package}")

# One real call through the native module: a config's nodes and libpq connection strings.
folder = Path(os.environ["CITUS_RECOVERY_TMP"])
def node(name, port):
    return {"name": name, "hostname": "localhost", "port": port,
            "username": "postgres", "dbname": "postgres"}
config = {
    "clusterName": "wheel",
    "workerCount": 1,
    "coordinatorNode": node("coordinator", 25432),
    "workerNodes": [node("worker1", 25433)],
    "clusterBaseFolder": str(folder / "cluster"),
    "archiveBaseFolder": str(folder / "archive"),
    "backupBaseFolder": str(folder / "backup"),
}
cluster = citus_recovery.Cluster(config)
got = [(n.name, n.role, n.port, Path(n.data_dir)) for n in cluster.nodes]
want = [("coordinator", "coordinator", 25432, folder / "cluster" / "coordinator"),
        ("worker1", "worker", 25433, folder / "cluster" / "worker1")]
if got != want:
    problems.append(f"Cluster(config).nodes is {got}, expected {want}")
dsn = cluster.dsn("worker1")
if "port=25433" not in dsn or "dbname=postgres" not in dsn:
    problems.append(f"dsn('worker1') is {dsn!r}: no port=25433 or dbname=postgres")
try:
    cluster.dsn("no-such-node")
    problems.append("dsn('no-such-node') raised nothing")
except citus_recovery.InvalidArgumentError:
    pass

if problems:
    sys.exit("test-wheel: the installed wheel is wrong:\n  " + "\n  ".join(problems))
print(f"test-wheel: citus_recovery {citus_recovery.__version__} installed from the wheel works "
      f"({package})", file=sys.stderr)
EOF
echo "test-wheel: done in $(($(date +%s) - start))s" >&2
