#!/usr/bin/env bash
# Installs what the project needs on a fresh machine of this kind (Debian, Rust toolchain present):
# the PostgreSQL 15 server programs and the `postgres` OS user that runs them; with --tests, also
# the S3 server the tests run against. Idempotent.
#
#   bash scripts/setup.sh            # what the main job (scripts/scenario.sh) needs
#   bash scripts/setup.sh --tests    # and what the tests need (scripts/test.sh)
set -euo pipefail
TESTS=0
[ "${1:-}" = "--tests" ] && TESTS=1

PG_BIN=/usr/lib/postgresql/15/bin
if [ ! -x "$PG_BIN/postgres" ] || [ ! -x "$PG_BIN/pg_basebackup" ] || ! id postgres >/dev/null 2>&1; then
    echo "setup: installing PostgreSQL 15 server programs" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
command -v psql >/dev/null || { echo "setup: psql is missing after install" >&2; exit 1; }
command -v cargo >/dev/null || { echo "setup: cargo (the Rust toolchain) is required" >&2; exit 1; }
command -v python3 >/dev/null || { echo "setup: python3 is required" >&2; exit 1; }

# The S3 server of the repository tests: moto[server] from PyPI, in its own virtual environment
# at the repository root (.venv-moto; scripts/test-python.sh owns .venv). The tests start it on
# 127.0.0.1 through scripts/moto-s3.py and stop it after.
[ "$TESTS" = 1 ] || exit 0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MOTO_VENV="$ROOT/.venv-moto"
if ! "$MOTO_VENV/bin/python" -c 'import moto.moto_server.threaded_moto_server, boto3' >/dev/null 2>&1; then
    echo "setup: installing moto[server] into $MOTO_VENV" >&2
    python3 -m venv "$MOTO_VENV"
    "$MOTO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]>=5.1,<6"
fi

# The multi-host tests (tests/netns.rs, scripts/netns.sh): `ip` for network namespaces, and
# Debian's sshd, which each namespace host runs with its own test config. The package's own
# service must not start (it would listen on every address): policy-rc.d refuses it during the
# install, and only our own policy file is removed afterwards.
if ! command -v ip >/dev/null || [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; then
    echo "setup: installing openssh-server and iproute2 (service not started)" >&2
    POLICY=/usr/sbin/policy-rc.d
    OWN_POLICY=0
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        OWN_POLICY=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        openssh-server openssh-client iproute2 >/dev/null
    # An `if`, not `[ ... ] && rm`: where the machine has a policy file of its own, that list
    # would end the script with status 1.
    if [ "$OWN_POLICY" = 1 ]; then
        rm -f "$POLICY"
    fi
fi
