#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests (real PostgreSQL servers started by the
# tests), then the Python module's tests. Does its own set-up on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests
# As root the multi-host tests (tests/netns.rs: network namespaces, sshd) must run, not skip.
if [ "$(id -u)" = 0 ]; then export CITUS_RECOVERY_REQUIRE_NETNS=1; fi
cargo test --workspace --all-targets
bash scripts/test-python.sh
