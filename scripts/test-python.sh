#!/usr/bin/env bash
# Tests the Python module `citus_recovery`: builds it into the virtual environment .venv at the
# repository root (made if missing), checks the type stubs against the built module (stubtest)
# and the typed tests against the stubs (mypy --strict), then runs the pytest suite, which drives
# real local clusters. scripts/test.sh runs this after the Rust tests.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
    echo "test-python: creating $VENV" >&2
    python3 -m venv "$VENV"
fi
PY="$PWD/$VENV/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check \
    "maturin>=1.5,<2" "pytest>=7" "mypy>=1.18"

# A debug build: release builds take minutes on 2 cores and the tests wait on PostgreSQL anyway.
# maturin switches on pyo3/extension-module (pyproject.toml) and installs the package editable.
echo "test-python: building the module (maturin develop)" >&2
VIRTUAL_ENV="$PWD/$VENV" "$VENV/bin/maturin" develop --quiet -m citus-recovery-py/Cargo.toml

# The plan tests compare the module's plans with the command-line tool's --dry-run output.
cargo build --quiet -p citus-recovery --bin citus-recovery
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
export CITUS_RECOVERY_BIN="$target/debug/citus-recovery"

echo "test-python: stubtest and mypy" >&2
"$PY" -m mypy.stubtest citus_recovery
(cd citus-recovery-py && "$PY" -m mypy tests python/citus_recovery)

echo "test-python: pytest" >&2
status=0
"$PY" -m pytest citus-recovery-py/tests -v -rs || status=$?
if [ "$status" -eq 5 ]; then
    echo "test-python: pytest collected no tests" >&2
fi
exit "$status"
