#!/usr/bin/env bash
# A throwaway local PostgreSQL for the tests: `.ci/postgres.sh start` prints `export SYNTHGATE_TEST_POSTGRES_URL=...`
# (eval it), `.ci/postgres.sh stop` stops it and deletes its data. Installs the server with apt-get when missing.
# Runs as an unprivileged user (postgres refuses root), on a free port, with its data and socket under one temp dir.
set -euo pipefail
STATE=${SYNTHGATE_PG_DIR:-/tmp/synthgate-ci-postgres}
PORT_FILE=$STATE/port

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [[ -z "$dir" ]]; then
        echo "installing postgresql (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
        dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    echo "$dir"
}

as_pg() {  # run as the postgres OS user when we are root; as ourselves otherwise
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local bin port
    bin=$(pg_bin)
    stop_quiet
    mkdir -p "$STATE"
    [[ $(id -u) == 0 ]] && chown postgres "$STATE"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "$bin/initdb" -D "$STATE/data" -U synthgate --auth=trust -E UTF8 >/dev/null
    as_pg "$bin/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -w -t 60 \
        -o "-p $port -k $STATE -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U synthgate synthgate_test
    echo "$port" >"$PORT_FILE"
    echo "export SYNTHGATE_TEST_POSTGRES_URL=postgresql+psycopg://synthgate@127.0.0.1:$port/synthgate_test"
}

stop_quiet() {
    if [[ -d "$STATE/data" ]]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$STATE/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$STATE"
}

case "${1:-}" in
    start) start ;;
    stop) stop_quiet ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
