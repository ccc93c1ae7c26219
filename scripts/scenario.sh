#!/usr/bin/env bash
# The example scenario (examples/src/scenario.rs) on a throwaway local cluster: backup, 15 million
# rows, restore point, 15 million more, restore to the point, check the counts.
#
#   bash scripts/scenario.sh                 # the main job: 15 million rows per insert
#   bash scripts/scenario.sh --rows 100000   # the quick variant
#   bash scripts/scenario.sh --help          # every option (--workers, --plain, --keep, ...)
#
# Builds in release mode, then runs the example with the arguments given; its exit code is the
# example's (non-zero when a count is wrong).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet -p citus-recovery-examples --bin scenario
exec target/release/scenario "$@"
