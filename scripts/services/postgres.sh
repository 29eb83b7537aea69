#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster on loopback, for siren-storage-postgres's tests.
#
#   scripts/services/postgres.sh start DIR   # initdb (once) and start; writes DIR/postgres.env
#   scripts/services/postgres.sh stop DIR    # pg_ctl stop -m fast (then by PID if need be)
#
# DIR/postgres.env exports:
#   SIREN_TEST_POSTGRES_URL   postgres://postgres@127.0.0.1:PORT/postgres (the superuser, on the
#                             `postgres` database: the tests create one database per test)
#
# Everything lives in DIR/postgres (data directory, unix socket, server log), owned by the
# `postgres` user: the server refuses to run as root, so initdb and pg_ctl run through
# `runuser -u postgres --`, and DIR must be reachable by that user (DIR gets o+x; its parents
# must allow it, as /tmp and /var/tmp do). The server listens on 127.0.0.1 only, on a free port,
# with `trust` authentication: a test cluster, never one to keep data in. PostgreSQL 15 is
# expected at /usr/lib/postgresql/15/bin; if it is missing, it is installed with apt-get.
# `start` on a DIR whose server is running does nothing; on a stopped one it starts it again on
# the same data. POSTGRES_PORT=N chooses the port (to start a stopped one again where its
# clients expect it); otherwise a free one is picked. Quiet unless something fails; errors go to stderr.
set -euo pipefail

pg_bin=/usr/lib/postgresql/15/bin

die() {
    echo "postgres.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

as_postgres() {
    runuser -u postgres -- "$@"
}

install_postgres() {
    [ -x "$pg_bin/initdb" ] && return 0
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and installing it needs root"
    echo "postgres.sh: installing postgresql" >&2
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
        || die "apt-get install postgresql failed"
    if [ ! -x "$pg_bin/initdb" ]; then
        # Another Debian release packages another major version: take the newest installed.
        local found
        found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
        [ -n "$found" ] && [ -x "$found/initdb" ] || die "initdb is still missing after apt-get install"
        pg_bin="$found"
    fi
}

port_free() { # PORT -> 0 if nothing listens on 127.0.0.1:PORT
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    local port i
    for i in $(seq 1 50); do
        port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
            || shuf -i 20000-60999 -n 1)"
        if port_free "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "found no free loopback port"
}

alive() { # PID -> 0 if that process exists and is not a zombie (a killed server that nobody
    # reaped yet still answers `kill -0`)
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)"
    [ "$state" != Z ]
}

server_pid() { # DATA -> the PID in its postmaster.pid, if any
    [ -f "$1/postmaster.pid" ] && sed -n 1p "$1/postmaster.pid"
}

running() { # DATA -> 0 if the server of that data directory is running
    alive "$(server_pid "$1")"
}

write_env() { # DIR PORT
    printf 'export SIREN_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:%s/postgres\n' "$2" \
        >"$1/postgres.env.tmp"
    mv "$1/postgres.env.tmp" "$1/postgres.env"
}

start() {
    local dir="$1"
    [ "$(id -u)" = 0 ] || die "run as root (initdb and pg_ctl run as the postgres user through runuser)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local base="$dir/postgres"
    local data="$base/data" sock="$base/socket" log="$base/server.log"
    install_postgres
    id postgres >/dev/null 2>&1 || die "there is no postgres user (the postgresql package creates it)"
    # The server runs as postgres and must reach its directories: DIR only needs to be traversable.
    chmod o+x "$dir"
    mkdir -p "$base" "$sock"
    chown postgres: "$base" "$sock"
    chmod 700 "$base"
    as_postgres test -x "$base" \
        || die "the postgres user cannot reach $base (a parent directory is closed to it; use one under /tmp or /var/tmp)"
    # The unix socket's path must fit in 107 bytes.
    [ "${#sock}" -le 90 ] || die "$sock is too long for a unix socket path; use a shorter DIR"
    cd /   # runuser keeps the working directory, which postgres may not be allowed to read

    local port i
    if running "$data"; then
        port="$(sed -n 4p "$data/postmaster.pid")"
        [ -n "$port" ] || die "cannot read the port of the running server from $data/postmaster.pid"
        for i in $(seq 1 100); do
            if "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; then
                write_env "$dir" "$port"
                return 0
            fi
            sleep 0.1
        done
        die "the server of $data (pid $(server_pid "$data")) runs but does not answer on 127.0.0.1:$port; stop it first"
    fi
    # The server was killed: its pid file would make the next one refuse to start (a zombie
    # keeps the PID alive for `kill -0`).
    rm -f "$data/postmaster.pid"

    if [ ! -s "$data/PG_VERSION" ]; then
        rm -rf "$data"
        as_postgres "$pg_bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 --no-sync >"$base/initdb.log" 2>&1 \
            || die "initdb failed; see $base/initdb.log"
    fi

    port="${POSTGRES_PORT:-$(free_port)}"
    as_postgres "$pg_bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
        -o "-p $port -k $sock -c listen_addresses=127.0.0.1" start >/dev/null 2>&1 \
        || die "the server did not start; see $log"
    for i in $(seq 1 100); do
        if "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; then
            write_env "$dir" "$port"
            return 0
        fi
        sleep 0.1
    done
    stop "$dir" 2>/dev/null || true
    die "the server on 127.0.0.1:$port did not answer within 10 s; see $log"
}

stop() {
    local dir="$1"
    [ -d "$dir" ] || return 0
    dir="$(cd "$dir" && pwd)"
    local data="$dir/postgres/data"
    rm -f "$dir/postgres.env"
    [ -f "$data/postmaster.pid" ] || return 0
    local pid
    pid="$(server_pid "$data")"
    cd /
    if alive "$pid" && [ -x "$pg_bin/pg_ctl" ] && id postgres >/dev/null 2>&1; then
        as_postgres "$pg_bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    # pg_ctl failed or is missing: stop the postmaster by its PID (its children follow it).
    if alive "$pid"; then
        echo "postgres.sh: pg_ctl could not stop the server (pid $pid); sending SIGINT" >&2
        kill -INT "$pid" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            echo "postgres.sh: the server (pid $pid) ignored SIGINT for 10 s; killing it" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$data/postmaster.pid"
}

[ $# -eq 2 ] || usage
case "$1" in
start) start "$2" ;;
stop) stop "$2" ;;
*) usage ;;
esac
