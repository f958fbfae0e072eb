# shellcheck shell=bash
# A throw-away PostgreSQL 15 server for the campaign tests (tests marked `postgres`).
#
#   source .ci/postgres.sh        # as root: starts the server (idempotent) and exports OPTILADDER_TEST_PG_URL
#   bash .ci/postgres.sh          # same, prints `export OPTILADDER_TEST_PG_URL=...` for eval
#   bash .ci/postgres.sh stop     # stops it
#
# The cluster lives in $OPTILADDER_PG_DIR (default /tmp/optiladder-pg), owned by the `postgres` user, listens on
# 127.0.0.1:$OPTILADDER_PG_PORT (default 55432) only, trusts loopback connections (test server: no password),
# and holds the database $OPTILADDER_PG_DB (default optiladder_test). Running it again reuses a running server.

_optiladder_pg() {
    local bin="${OPTILADDER_PG_BIN:-/usr/lib/postgresql/15/bin}"
    local dir="${OPTILADDER_PG_DIR:-/tmp/optiladder-pg}"
    local port="${OPTILADDER_PG_PORT:-55432}"
    local db="${OPTILADDER_PG_DB:-optiladder_test}"
    local user=postgres
    local as=(runuser -u "$user" --)
    if [ "$(id -u)" != 0 ]; then
        if [ "$(id -un)" = "$user" ]; then as=(); else
            echo "postgres.sh: must run as root (or as $user)" >&2; return 1
        fi
    fi
    if [ ! -x "$bin/initdb" ]; then
        echo "postgres.sh: no PostgreSQL binaries in $bin (apt-get install postgresql)" >&2; return 1
    fi
    if [ "${1:-}" = stop ]; then
        [ -f "$dir/data/PG_VERSION" ] && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
        return 0
    fi
    mkdir -p "$dir" && chown "$user": "$dir" && chmod 700 "$dir" || return 1
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        "${as[@]}" "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || { echo "postgres.sh: initdb failed (see $dir/initdb.log)" >&2; return 1; }
    fi
    if ! "${as[@]}" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" start >/dev/null \
            || { echo "postgres.sh: server did not start (see $dir/server.log)" >&2; return 1; }
    fi
    "$bin/pg_isready" -h 127.0.0.1 -p "$port" -t 30 >/dev/null \
        || { echo "postgres.sh: server on port $port is not ready" >&2; return 1; }
    if [ "$("${as[@]}" "$bin/psql" -h 127.0.0.1 -p "$port" -U "$user" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='$db'")" != 1 ]; then
        "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$user" "$db" || return 1
    fi
    export OPTILADDER_TEST_PG_URL="postgresql://$user@127.0.0.1:$port/$db"
    echo "export OPTILADDER_TEST_PG_URL=$OPTILADDER_TEST_PG_URL"
}

_optiladder_pg "$@"
