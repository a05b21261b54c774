#!/usr/bin/env bash
# Start a two-node Ray cluster on 127.0.0.1 for the grid tests: a head and one worker node, as
# separate processes, with small CPU and memory settings (fits 2 cores / 24 GiB); print its
# address. Stop every Ray process on this machine: .ci/ray.sh stop
set -euo pipefail
RAY=${RAY:-.venv/bin/ray}
# token authentication (Ray's default for `ray start`): every node and driver reads ~/.ray/auth_token
export RAY_AUTH_MODE=token
PORT=${RAY_TEST_PORT:-6391}
SMALL=(--num-cpus=1 --num-gpus=0 --memory=2000000000 --object-store-memory=200000000 --disable-usage-stats)

if [ "${1:-}" = stop ]; then
  "$RAY" stop --force >/dev/null 2>&1 || true
  exit 0
fi
"$RAY" get-auth-token --generate >/dev/null
"$RAY" start --head --node-ip-address=127.0.0.1 --port="$PORT" --include-dashboard=false "${SMALL[@]}" >&2
"$RAY" start --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 "${SMALL[@]}" >&2
echo "127.0.0.1:$PORT"
