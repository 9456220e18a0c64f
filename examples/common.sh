# Shared by the examples' run.sh: builds maestro if needed, starts a private redis-server on a free
# loopback port (unless MAESTRO_REDIS_URL is set), and cleans up on exit. Sourced, not run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAESTRO=${MAESTRO:-$ROOT/.build/debug/maestro}
if [ ! -x "$MAESTRO" ]; then
  echo "== building maestro (first time only)"
  (cd "$ROOT" && swift build --product maestro >/dev/null)
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/maestro-example.XXXXXX")
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

if [ -z "${MAESTRO_REDIS_URL:-}" ]; then
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  export MAESTRO_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
fi
REDIS_CLI=(redis-cli -u "$MAESTRO_REDIS_URL")

# wait_for "description" command...: retries the command for up to 20 s.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "FAILED: $what" >&2
  [ -f "$WORK/maestro.log" ] && tail -20 "$WORK/maestro.log" >&2
  exit 1
}

# check "description" command...: fails the example when the command fails.
check() {
  local what=$1
  shift
  if ! "$@"; then
    echo "FAILED: $what" >&2
    exit 1
  fi
  echo "ok: $what"
}

# start_maestro ARGS...: `maestro run` in the background, its log in $WORK/maestro.log.
start_maestro() {
  "$MAESTRO" run "$@" >"$WORK/maestro.log" 2>&1 &
  MAESTRO_PID=$!
  PIDS+=("$MAESTRO_PID")
}

stop_maestro() {
  kill -TERM "$MAESTRO_PID"
  local code=0
  wait "$MAESTRO_PID" || code=$?
  check "maestro stopped cleanly (exit $code)" test "$code" -eq 0
}
