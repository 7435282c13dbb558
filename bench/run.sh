#!/usr/bin/env bash
# Runs every benchmark on PostgreSQL and SQLite, each against a fresh database and a server
# started here, and writes bench/RESULTS.md. Takes 15-30 minutes on a 2-core machine.
#   bench/run.sh                 # everything
#   PATIENTS=200 RESOURCES=20000 BOOKERS=200 bench/run.sh   # a quicker, smaller run
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PATIENTS=${PATIENTS:-500}
RESOURCES=${RESOURCES:-100000}
SAMPLES=${SAMPLES:-500}
BOOKERS=${BOOKERS:-1000}  # bench.booking: patients storming BOOKERS/10 single-place slots
# Threads per server process: 2 on this 2-core machine (one process per core; more only queue
# for the interpreter lock: docs/fhir-server.md#serving). The product default is 4.
THREADS=${THREADS:-2}
export CARENET_REQUEST_THREADS=$THREADS  # the servers', and named in RESULTS.md by the benchmarks
PG_ADMIN=${PG_ADMIN:-postgresql://postgres@127.0.0.1:5432/postgres}
PG_DB=carenet_bench_$$
PG_URL="${PG_ADMIN%/*}/$PG_DB"
SQLITE_DIR=$(mktemp -d)
SQLITE_URL="sqlite:///$SQLITE_DIR/bench.db"
SERVER_PID=

cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$SQLITE_DIR"
}
trap cleanup EXIT

start_server() {  # url port workers
  CARENET_DATABASE_URL=$1 $BIN/carenet migrate >/dev/null
  CARENET_DATABASE_URL=$1 CARENET_BASE_URL=http://127.0.0.1:$2 $BIN/carenet serve --port "$2" --workers "$3" >"$SQLITE_DIR/server-$2.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && return 0; sleep 0.5; done
  echo "server did not start"; cat "$SQLITE_DIR/server-$2.log"; exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

token_for() {  # url port: a backend-service token (client credentials) for the benchmarks
  local creds id secret
  creds=$(CARENET_DATABASE_URL=$1 $BIN/carenet client create --name "bench-$$" --scope "system/*.cruds" --json)
  id=$($BIN/python -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$creds")
  secret=$($BIN/python -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$creds")
  curl -sf -u "$id:$secret" -d grant_type=client_credentials -d "scope=system/*.cruds" \
    "http://127.0.0.1:$2/auth/token" | $BIN/python -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
start_server "$PG_URL" 8301 2
export CARENET_BENCH_TOKEN=$(token_for "$PG_URL" 8301)
$BIN/python -m bench.ingest --label postgresql --base-url http://127.0.0.1:8301/fhir --database-url "$PG_URL" \
  --patients "$PATIENTS" --concurrency 4 --repeat 3
$BIN/python -m bench.latency --label postgresql --base-url http://127.0.0.1:8301/fhir --database-url "$PG_URL" \
  --resources "$RESOURCES" --samples "$SAMPLES"
$BIN/python -m bench.booking --label postgresql --base-url http://127.0.0.1:8301/fhir --database-url "$PG_URL" \
  --patients "$BOOKERS" --slots "$((BOOKERS / 10))" --repeat 3
stop_server

start_server "$SQLITE_URL" 8302 1
export CARENET_BENCH_TOKEN=$(token_for "$SQLITE_URL" 8302)
$BIN/python -m bench.ingest --label sqlite --base-url http://127.0.0.1:8302/fhir --database-url "$SQLITE_URL" \
  --patients "$PATIENTS" --concurrency 2 --repeat 3
$BIN/python -m bench.latency --label sqlite --base-url http://127.0.0.1:8302/fhir --database-url "$SQLITE_URL" \
  --resources "$RESOURCES" --samples "$SAMPLES"
stop_server
