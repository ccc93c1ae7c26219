#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests (real PostgreSQL servers started by the
# tests), then the documented wheel install and the Python module's tests. Does its own set-up on
# a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests
# As root the multi-host tests (tests/netns.rs: network namespaces, sshd) must run, not skip.
if [ "$(id -u)" = 0 ]; then export CITUS_RECOVERY_REQUIRE_NETNS=1; fi
cargo test --workspace --all-targets
# The documented `pip install citus-recovery-py/` in a fresh venv; its dev-profile build is the one
# test-python.sh's `maturin develop` reuses.
bash scripts/test-wheel.sh
bash scripts/test-python.sh
