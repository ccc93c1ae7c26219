#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests (real PostgreSQL servers started by the
# tests), then the documented wheel install and the Python module's tests. Does its own set-up on
# a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests

# The tests' clusters, repositories and backups go into a folder on a memory file system
# (/dev/shm) when there is room for them in memory (12 GiB free there and available; the
# largest test, tests/crash.rs, peaks at about 6.5 GB), unless TMPDIR is set already. On this
# kind of VM the disk is ext4 without a journal, where creating a file after many deletions
# scans the recently deleted inodes one by one: about 30% of the repository tests' CPU went
# there (perf), and the whole CI run took 27 minutes instead of 35. Everything the library
# relies on (O_NOFOLLOW, openat2, RENAME_NOREPLACE, hole punching, syncfs) works there the
# same. CITUS_RECOVERY_TEST_TMPDIR=disk keeps the default temporary folder.

# A run killed outright (no EXIT trap) leaves its folder in memory: remove those whose run is
# gone, before the room there is measured. Only this user's own folders, each holding the PID
# of the run that made it.
for old in /dev/shm/citus-recovery-tests.*; do
    [ -d "$old" ] && [ ! -L "$old" ] && [ -O "$old" ] || continue
    owner="$(cat "$old/.run-pid" 2>/dev/null || true)"
    if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
        echo "test: removing $old, left by a run that is gone (PID $owner)" >&2
        rm -rf "$old"
    fi
done

need_kib=$((12 * 1024 * 1024))
if [ -z "${TMPDIR:-}" ] && [ "${CITUS_RECOVERY_TEST_TMPDIR:-}" != disk ] \
    && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] \
    && [ "$(df --output=avail -k /dev/shm | tail -1)" -ge "$need_kib" ] \
    && [ "$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)" -ge "$need_kib" ]; then
    TMPDIR="$(mktemp -d /dev/shm/citus-recovery-tests.XXXXXX)"
    echo $$ > "$TMPDIR/.run-pid"
    # The servers run as postgres and must reach their folders inside it.
    chmod 755 "$TMPDIR"
    export TMPDIR
    trap 'rm -rf "$TMPDIR"' EXIT
    echo "test: temporary folders in $TMPDIR (memory file system)" >&2
fi
# As root the multi-host tests (tests/netns.rs: network namespaces, sshd) must run, not skip.
if [ "$(id -u)" = 0 ]; then export CITUS_RECOVERY_REQUIRE_NETNS=1; fi
cargo test --workspace --all-targets
# The documented `pip install citus-recovery-py/` in a fresh venv; its dev-profile build is the one
# test-python.sh's `maturin develop` reuses.
bash scripts/test-wheel.sh
bash scripts/test-python.sh
