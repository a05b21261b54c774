#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 (installing Debian's package if needed) for the
# distributed-study test, on a free port, with its files under $BENCH_CI_DIR/postgres; print its
# URL. `.ci/postgres.sh stop` stops that server only.
set -euo pipefail
DIR="${BENCH_CI_DIR:?run from .ci/run, which makes the folder}/postgres"
pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }

if [ "${1:-}" = stop ]; then
  [ -d "$DIR/data" ] && as_pg "$(pgbin)/pg_ctl -D $DIR/data -m fast stop" >/dev/null 2>&1 || true
  exit 0
fi
if [ -z "$(pgbin)" ]; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
BIN=$(pgbin)
PORT=$(python3 .ci/freeport.py)
mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$DIR"
as_pg "$BIN/initdb -D $DIR/data -A trust -U bench" >/dev/null
as_pg "$BIN/pg_ctl -D $DIR/data -l $DIR/log -w -o '-k $DIR -p $PORT -c listen_addresses=127.0.0.1 -c max_connections=200' start" >/dev/null
as_pg "$BIN/createdb -h 127.0.0.1 -p $PORT -U bench bench"
echo "postgresql://bench@127.0.0.1:$PORT/bench"
