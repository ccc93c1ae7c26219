#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests (real PostgreSQL servers started by the
# tests), then the Python module's tests. Does its own set-up on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests
cargo test --workspace --all-targets
bash scripts/test-python.sh
