#!/usr/bin/env bash
# The whole-cluster macro benchmark (benches/src/bin/macro): the library against raw
# pg_basebackup, pgBackRest, one node after another and dd, plus scaling over worker counts.
#
#   bash scripts/bench.sh                  # defaults: 2 workers, pgbench scale 20 per node, 3 runs
#   bash scripts/bench.sh --scale 100 --reps 5 --scaling 2,4,8 --scaling-scale 10
#   bash scripts/bench.sh --wal-only       # only WAL through the tool (archiving, archive-get, verify/list)
#   bash scripts/bench.sh --ssh            # only remote nodes over SSH (namespace topology, as root)
#   bash scripts/bench.sh --help           # every option
#
# Installs pgBackRest (Debian package) when it is missing, builds in release mode, and prints a
# markdown report on stdout (progress on stderr); docs/benchmarks.md records the latest one.
# Runs as root (or with sudo for apt-get); PostgreSQL's servers run as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."

ssh=0
for arg in "$@"; do [ "$arg" != --ssh ] || ssh=1; done

if [ "$ssh" = 0 ] && ! command -v pgbackrest >/dev/null 2>&1; then
    echo "installing pgbackrest ..." >&2
    if ! apt-cache policy pgbackrest 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -qq || echo "warning: apt-get update failed" >&2
    fi
    # Without pgBackRest the benchmark still runs: it says why and leaves those rows out.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >&2 ||
        echo "warning: could not install pgbackrest; its rows will be left out" >&2
fi

cargo build --release --quiet -p citus-recovery-benches --bin citus-recovery-bench
# The tool the servers run as archive_command/restore_command in the --wal rows.
cargo build --release --quiet -p citus-recovery --bin citus-recovery
bench="${CARGO_TARGET_DIR:-target}/release/citus-recovery-bench"
if [ "$ssh" = 0 ]; then
    exec "$bench" "$@"
fi
# --ssh builds network namespaces (scripts/netns.sh). The benchmark tears its topology down
# itself, also on Ctrl-C; should it be killed outright, this sweep tears down every topology
# whose owner process is gone (only those: other runs' are left alone).
trap 'bash scripts/netns.sh sweep /var/lib/citus-recovery-netns' EXIT
"$bench" "$@"
