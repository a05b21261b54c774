#!/usr/bin/env bash
# Start a two-node Ray cluster on 127.0.0.1 for the grid tests: a head and one worker node, as
# separate processes, with small CPU and memory settings (fits 2 cores / 24 GiB), on free ports,
# with its files under $BENCH_CI_DIR/ray; print its address. `.ci/ray.sh stop` stops the
# processes of that cluster only (their sessions), never another Ray on this machine.
set -euo pipefail
RAY=${RAY:-.venv/bin/ray}
DIR="${BENCH_CI_DIR:?run from .ci/run, which makes the folder}/ray"
# token authentication (Ray's default for `ray start`): every node and driver reads ~/.ray/auth_token
export RAY_AUTH_MODE=token
SMALL=(--num-cpus=1 --num-gpus=0 --memory=2000000000 --object-store-memory=200000000 --disable-usage-stats)

# Each `ray start` runs in a session of its own (setsid), whose id is kept in $DIR/sessions:
# every process of its node stays in that session (Ray's agents rename themselves and rewrite
# their environment, so neither command lines nor variables say whose they are), and stop kills
# exactly those sessions.
if [ "${1:-}" = stop ]; then
  [ -f "$DIR/sessions" ] || exit 0
  for signal in TERM KILL; do
    while read -r sid; do pkill -"$signal" -s "$sid" 2>/dev/null || true; done < "$DIR/sessions"
    sleep 2
  done
  exit 0
fi
mkdir -p "$DIR"
own_session() { setsid -w bash -c 'echo $$ >> "$0"; exec "$@"' "$DIR/sessions" "$@"; }
read -r PORT CLIENT AGENT1 AGENT2 <<< "$(python3 .ci/freeport.py 4 | tr '\n' ' ')"
"$RAY" get-auth-token --generate >/dev/null
own_session "$RAY" start --head --node-ip-address=127.0.0.1 --port="$PORT" --temp-dir="$DIR" \
  --include-dashboard=false --ray-client-server-port="$CLIENT" --dashboard-agent-listen-port="$AGENT1" \
  "${SMALL[@]}" >&2
own_session "$RAY" start --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 \
  --dashboard-agent-listen-port="$AGENT2" "${SMALL[@]}" >&2
echo "127.0.0.1:$PORT"
