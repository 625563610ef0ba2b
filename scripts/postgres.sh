#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the sync server's tests and exports
# SLOWFAST_TEST_PG_URL. Source it (`. scripts/postgres.sh`); the cluster stops when the
# sourcing shell exits. Installs Debian's `postgresql` package when no server binaries exist.
# As root the cluster runs as the `postgres` user (PostgreSQL refuses to run as root).

slowfast_pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
  return 1
}

slowfast_pg_start() {
  local bin dir port run=()
  if ! bin=$(slowfast_pg_bin); then
    echo "== installing postgresql (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || return 1
    bin=$(slowfast_pg_bin) || return 1
  fi
  dir=$(mktemp -d "${TMPDIR:-/tmp}/slowfast-pg.XXXXXX") || return 1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -U slowfast --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log"; return 1; }
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null ||
    { cat "$dir/server.log"; return 1; }
  export SLOWFAST_TEST_PG_URL="postgres://slowfast@127.0.0.1:$port/postgres"
  export SLOWFAST_PG_DIR="$dir"
  # shellcheck disable=SC2064
  trap "${run[*]} '$bin/pg_ctl' -D '$dir/data' -m fast stop >/dev/null 2>&1; rm -rf '$dir'" EXIT
  echo "== postgresql $("$bin/postgres" --version | awk '{print $3}') on port $port (SLOWFAST_TEST_PG_URL)"
}

slowfast_pg_start || { echo "error: could not start PostgreSQL for the tests" >&2; return 1 2>/dev/null || exit 1; }
