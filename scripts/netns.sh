#!/usr/bin/env bash
# A multi-host test topology on this machine: one network namespace per node host, each with its
# own address on a private bridge, its own sshd and its own PostgreSQL 15 server.
#
#   bash scripts/netns.sh up N DIR   # builds hosts h1..hN; DIR gets keys, configs, data dirs
#   bash scripts/netns.sh down DIR   # tears down what `up` built in DIR (idempotent)
#   bash scripts/netns.sh sweep BASE # tears down topologies in BASE/* whose owner process is gone
#
# Needs root, `ip` and Debian's openssh-server (bash scripts/setup.sh --tests). Only addresses
# the script creates itself are used: 10.231.S.0/24, where S is a free slot (0..63). A slot is
# taken by creating its bridge `crbrS` (creating a link is atomic), so concurrent runs never
# share names or addresses. Host i of slot S: namespace `crS-hi`, address 10.231.S.(10+i), veth
# `crvSh<i>` in the root namespace, `eth0` inside. The bridge is 10.231.S.1.
#
# Layout of DIR (made here, root-owned 0755, as sshd's StrictModes wants every folder above the
# authorized keys to be): topology.env (what `down` and the tests read), client/ (the client key
# and known_hosts), ssh/authorized_keys (the client key, for user postgres), h<i>/ (that host's
# sshd config, host key, pid file and log), nodes/ (owned by postgres: data directory h<i> and
# server log h<i>.log of each host, as a config with clusterBaseFolder DIR/nodes expects).
#
# The test PostgreSQL servers trust connections from the private subnet; they have no Unix socket
# (all hosts share one filesystem, and the default socket folder is shared with other tests).
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
SERVER_USER=postgres

die() { echo "netns.sh: $*" >&2; exit 1; }

# Reads DIR/topology.env into SLOT, HOSTS.
load() {
    local dir=$1
    SLOT=""
    HOSTS=0
    [ -f "$dir/topology.env" ] || return 1
    # Only the two keys we wrote; never sourced (the file could have been changed).
    SLOT=$(sed -n 's/^SLOT=\([0-9]\{1,2\}\)$/\1/p' "$dir/topology.env")
    HOSTS=$(sed -n 's/^HOSTS=\([0-9]\{1,2\}\)$/\1/p' "$dir/topology.env")
    [ -n "$SLOT" ] && [ -n "$HOSTS" ]
}

down() {
    local dir=$1
    load "$dir" || { echo "netns.sh: no topology in $dir, nothing to tear down" >&2; return 0; }
    local i ns
    for i in $(seq 1 "$HOSTS"); do
        ns="cr$SLOT-h$i"
        if ip netns list | grep -qx "$ns\( (id: [0-9]*)\)\?"; then
            if [ -f "$dir/nodes/h$i/postmaster.pid" ]; then
                ip netns exec "$ns" runuser -u "$SERVER_USER" -- \
                    "$PG_BIN/pg_ctl" -D "$dir/nodes/h$i" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
            fi
            # Whatever still runs in the namespace was started by this topology (sshd, sessions).
            local pids
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
            sleep 0.2
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
        ip link del "crv${SLOT}h$i" 2>/dev/null || true
    done
    ip link del "crbr$SLOT" 2>/dev/null || true
    rm -f "$dir/topology.env"
}

up() {
    local n=$1 dir=$2
    [ "$(id -u)" = 0 ] || die "must run as root (it creates network namespaces)"
    [[ "$n" =~ ^[1-9][0-9]?$ ]] && [ "$n" -le 20 ] || die "N must be 1..20, not '$n'"
    case "$dir" in /*) ;; *) die "DIR must be an absolute path, not '$dir'" ;; esac
    command -v ip >/dev/null || die "ip (iproute2) is missing: bash scripts/setup.sh --tests"
    [ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd is missing: bash scripts/setup.sh --tests"
    [ -x "$PG_BIN/initdb" ] || die "$PG_BIN/initdb is missing: bash scripts/setup.sh"
    [ ! -e "$dir" ] || die "$dir exists already; give a new folder"

    # Claim a slot: the first bridge name we manage to create is ours.
    SLOT=""
    local s
    for s in $(seq 0 63); do
        if ip link add "crbr$s" type bridge 2>/dev/null; then SLOT=$s; break; fi
    done
    [ -n "$SLOT" ] || die "no free slot: 64 topologies exist (crbr0..crbr63); tear stale ones down with 'ip link del crbrS' and their namespaces"
    HOSTS=$n
    local net="10.231.$SLOT"
    echo "netns.sh: slot $SLOT" >&2

    mkdir -p -m 755 "$dir"
    chown root:root "$dir"
    chmod 755 "$dir"
    printf 'SLOT=%s\nHOSTS=%s\nOWNER=%s\n' "$SLOT" "$HOSTS" "${NETNS_OWNER:-$$}" >"$dir/topology.env"
    # From here on a failure tears everything down.
    UP_DIR=$dir
    trap 'rc=$?; if [ "$rc" != 0 ]; then echo "netns.sh: up failed, tearing down" >&2; down "$UP_DIR"; fi' EXIT
    trap 'exit 130' INT TERM HUP

    ip addr add "$net.1/24" dev "crbr$SLOT"
    ip link set "crbr$SLOT" up

    mkdir -m 700 "$dir/client"
    mkdir -m 755 "$dir/ssh"
    ssh-keygen -q -t ed25519 -N '' -C "citus-recovery netns test client" -f "$dir/client/id_ed25519"
    install -m 644 "$dir/client/id_ed25519.pub" "$dir/ssh/authorized_keys"
    : >"$dir/client/known_hosts"
    chmod 600 "$dir/client/known_hosts"
    install -d -m 700 -o "$SERVER_USER" -g "$SERVER_USER" "$dir/nodes"
    # sshd's privilege separation folder.
    mkdir -p -m 755 /run/sshd

    local i ns addr
    for i in $(seq 1 "$n"); do
        ns="cr$SLOT-h$i"
        addr="$net.$((10 + i))"
        ip netns add "$ns"
        ip link add "crv${SLOT}h$i" type veth peer name "crp${SLOT}h$i"
        ip link set "crp${SLOT}h$i" netns "$ns"
        ip link set "crv${SLOT}h$i" master "crbr$SLOT" up
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "crp${SLOT}h$i" name eth0
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up

        mkdir -m 700 "$dir/h$i"
        ssh-keygen -q -t ed25519 -N '' -C "h$i" -f "$dir/h$i/ssh_host_ed25519_key"
        cat >"$dir/h$i/sshd_config" <<EOF
ListenAddress $addr:22
HostKey $dir/h$i/ssh_host_ed25519_key
PidFile $dir/h$i/sshd.pid
AuthorizedKeysFile $dir/ssh/authorized_keys
AllowUsers $SERVER_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM yes
StrictModes yes
MaxSessions 10
MaxStartups 50:30:100
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
LogLevel INFO
EOF
        echo "$addr $(cut -d' ' -f1,2 "$dir/h$i/ssh_host_ed25519_key.pub")" >>"$dir/client/known_hosts"
        /usr/sbin/sshd -t -f "$dir/h$i/sshd_config"
        ip netns exec "$ns" /usr/sbin/sshd -f "$dir/h$i/sshd_config" -E "$dir/h$i/sshd.log"

        (cd / && runuser -u "$SERVER_USER" -- "$PG_BIN/initdb" -D "$dir/nodes/h$i" -U postgres \
            --auth=trust --encoding=UTF8 --locale=C --no-sync --no-instructions >/dev/null)
        cat >>"$dir/nodes/h$i/postgresql.conf" <<EOF

# netns.sh test host h$i
listen_addresses = '$addr'
port = 5432
unix_socket_directories = ''
EOF
        printf 'host all all %s.0/24 trust\nhost replication all %s.0/24 trust\n' "$net" "$net" \
            >>"$dir/nodes/h$i/pg_hba.conf"
        (cd / && ip netns exec "$ns" runuser -u "$SERVER_USER" -- "$PG_BIN/pg_ctl" \
            -D "$dir/nodes/h$i" -l "$dir/nodes/h$i.log" -w -t 60 start >/dev/null)
        # For the harness test: a failure half-way must leave nothing behind.
        [ "${NETNS_FAIL_AFTER:-}" != "h$i" ] || die "failing after h$i on purpose (NETNS_FAIL_AFTER)"
        echo "host h$i $ns $addr"
    done
}

# Tears down the topologies in BASE/*/ whose owner process (OWNER in topology.env) is gone:
# what a test killed before its cleanup ran left behind.
sweep() {
    local base=$1 env owner
    for env in "$base"/*/topology.env; do
        [ -f "$env" ] || continue
        owner=$(sed -n 's/^OWNER=\([0-9]\{1,10\}\)$/\1/p' "$env")
        if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
            echo "netns.sh: tearing down $(dirname "$env") (its owner $owner is gone)" >&2
            down "$(dirname "$env")"
            rm -rf -- "$(dirname "$env")"
        fi
    done
}

case "${1:-}" in
    up) [ $# = 3 ] || die "usage: netns.sh up N DIR"; up "$2" "$3" ;;
    down) [ $# = 2 ] || die "usage: netns.sh down DIR"; down "$2" ;;
    sweep) [ $# = 2 ] || die "usage: netns.sh sweep BASE"; sweep "$2" ;;
    *) die "usage: netns.sh up N DIR | netns.sh down DIR | netns.sh sweep BASE" ;;
esac
