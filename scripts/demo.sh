#!/usr/bin/env bash
# The demo, one command from a fresh clone:  bash scripts/demo.sh   (--help for the options)
#
# 1. Sets up .venv (once: a stamp keyed on pyproject.toml skips the install when nothing changed).
# 2. Starts the examples' local cloud: AWS as moto in server mode and a fake payment provider,
#    both on loopback (examples/devstack.py).
# 3. Runs the examples through the local runner, `lambdascope invoke` (real awslambdaric, one
#    process per sandbox): cold and warm sandboxes, an error, a timeout, an out-of-memory kill,
#    and one trace across two functions through SQS. Reports go to the embedded store.
# 4. Starts the collector on that store, prints the dashboard's address, the stats of the run
#    and one invocation's waterfall with its trace. From a terminal the collector keeps running
#    (stop it with `bash scripts/demo.sh --stop`); otherwise it is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bash scripts/demo.sh [--no-setup] [--keep | --no-keep] [--port N] [--db FILE]
                            [--state DIR]
       bash scripts/demo.sh --stop

Sets up .venv, runs the examples (examples/README.md) through `lambdascope invoke` against a
local AWS (moto) and payment service, then starts the collector and prints the dashboard's
address and the stats of the run.

  --no-setup   use the interpreter as it is: $LAMBDASCOPE_DEMO_PYTHON, else .venv/bin/python
  --keep       leave the collector running at the end (the default from a terminal)
  --no-keep    stop the collector at the end (the default when not run from a terminal)
  --port N     the collector's port (default 8585, or a free one when 8585 is taken;
               0: a free one)
  --db FILE    the store the runner writes and the collector reads
               (default .lambdascope/reports.db)
  --state DIR  where the demo keeps its logs, pid files and generated events
               (default .lambdascope/demo)
  --stop       stop the collector a previous demo left running, and exit
Environment: PYTHON, the interpreter .venv is made with (default python3, 3.10 or newer).
EOF
}

SETUP=1
KEEP=auto
PORT=8585
DB=.lambdascope/reports.db
STATE=.lambdascope/demo
ACTION=run
while [ $# -gt 0 ]; do
  case "$1" in
    --no-setup) SETUP=0 ;;
    --keep) KEEP=1 ;;
    --no-keep) KEEP=0 ;;
    --port|--db|--state)
      if [ $# -lt 2 ]; then echo "demo.sh: $1 needs a value" >&2; exit 2; fi
      case "$1" in --port) PORT=$2 ;; --db) DB=$2 ;; --state) STATE=$2 ;; esac
      shift ;;
    --stop) ACTION=stop ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (bash scripts/demo.sh --help lists them)" >&2; exit 2 ;;
  esac
  shift
done
case "$PORT" in ''|*[!0-9]*) echo "demo.sh: --port $PORT: a number expected" >&2; exit 2 ;; esac
COLLECTOR_PIDFILE=$STATE/collector.pid

if [ -t 1 ]; then BOLD=$'\033[1m'; DIM=$'\033[2m'; OFF=$'\033[0m'; else BOLD=; DIM=; OFF=; fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$OFF"; }
say() { printf '    %s\n' "$*"; }
die() { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }

stop_pidfile() {  # stop_pidfile FILE: end the process it names, if it is still running
  local pid
  pid=$(cat "$1" 2>/dev/null || true)
  rm -f "$1"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  return 0
}

if [ "$ACTION" = stop ]; then
  if [ -f "$COLLECTOR_PIDFILE" ]; then
    stop_pidfile "$COLLECTOR_PIDFILE"
    echo "the demo's collector is stopped"
  else
    echo "no collector of the demo is running"
  fi
  exit 0
fi

# -- 1. set-up ------------------------------------------------------------------------------
# What the demo needs: lambdascope with the runner (local) and collector extras, boto3, and moto
# with its server for the three services the examples use.
DEMO_REQUIREMENTS=(-e ".[local,collector]" "boto3>=1.34" "moto[s3,sqs,dynamodb]>=5.0" "flask"
                   "flask-cors")
mkdir -p "$STATE" "$(dirname "$DB")"
install() {  # uv when it works here (seconds), pip otherwise (a minute or two)
  local log=$STATE/install.log
  : > "$log"
  # uv reads no pip configuration: pass on an index given to pip through the environment.
  [ -z "${PIP_INDEX_URL:-}" ] || export UV_INDEX_URL=${UV_INDEX_URL:-$PIP_INDEX_URL}
  [ -z "${PIP_EXTRA_INDEX_URL:-}" ] || export UV_EXTRA_INDEX_URL=${UV_EXTRA_INDEX_URL:-$PIP_EXTRA_INDEX_URL}
  if [ "${LAMBDASCOPE_DEMO_INSTALLER:-uv}" = uv ] \
     && "$PY" -m pip install -q --disable-pip-version-check uv >> "$log" 2>&1 \
     && .venv/bin/uv pip install --python "$PY" -q "${DEMO_REQUIREMENTS[@]}" >> "$log" 2>&1; then
    return 0
  fi
  say "installing with pip (this takes a minute or two; log in $log)"
  "$PY" -m pip install -q --disable-pip-version-check "${DEMO_REQUIREMENTS[@]}" >> "$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "the installation failed (the whole log: $log)"; }
}
if [ "$SETUP" = 1 ]; then
  BASE=${PYTHON:-python3}
  command -v "$BASE" >/dev/null 2>&1 || die "no $BASE: install Python 3.10 or newer, or set PYTHON"
  "$BASE" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$BASE is Python $("$BASE" -c 'import platform; print(platform.python_version())'); 3.10 or newer is needed"
  if [ ! -x .venv/bin/python ]; then
    step "creating .venv"
    "$BASE" -m venv .venv
  fi
  PY=.venv/bin/python
  STAMP=.venv/.lambdascope-demo-stamp
  KEY=$({ cat pyproject.toml; printf '%s\n' "${DEMO_REQUIREMENTS[@]}"; "$PY" -VV; } \
        | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$STAMP" 2>/dev/null || true)" = "$KEY" ]; then
    step "set-up: .venv is ready (nothing changed since it was made)"
  else
    step "set-up: installing lambdascope (local and collector extras), boto3 and moto into .venv"
    install
    echo "$KEY" > "$STAMP"
  fi
else
  PY=${LAMBDASCOPE_DEMO_PYTHON:-.venv/bin/python}
  [ -x "$PY" ] || command -v "$PY" >/dev/null 2>&1 || die "no interpreter $PY (drop --no-setup)"
fi

DEVSTACK_PID=
COLLECTOR_PID=
KEEP_COLLECTOR=0
cleanup() {
  if [ -n "$DEVSTACK_PID" ]; then
    kill "$DEVSTACK_PID" 2>/dev/null || true
    wait "$DEVSTACK_PID" 2>/dev/null || true
  fi
  if [ -n "$COLLECTOR_PID" ] && [ "$KEEP_COLLECTOR" != 1 ]; then
    stop_pidfile "$COLLECTOR_PIDFILE"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A collector left running by an earlier demo is restarted at the end, on this run's store.
[ -f "$COLLECTOR_PIDFILE" ] && stop_pidfile "$COLLECTOR_PIDFILE"
now_ms() { "$PY" -c 'import time; print(int(time.time() * 1000))'; }
BEGAN_MS=$(now_ms)

# -- 2. the local cloud ---------------------------------------------------------------------------
step "starting the local cloud: AWS (moto in server mode) and the payment service, on loopback"
ENV_FILE=$STATE/devstack.env
rm -f "$ENV_FILE"
"$PY" examples/devstack.py --env-file "$ENV_FILE" > "$STATE/devstack.log" 2>&1 &
DEVSTACK_PID=$!
for _ in $(seq 1 600); do
  [ -f "$ENV_FILE" ] && break
  kill -0 "$DEVSTACK_PID" 2>/dev/null || { cat "$STATE/devstack.log" >&2; die "the local cloud did not start"; }
  sleep 0.1
done
[ -f "$ENV_FILE" ] || { cat "$STATE/devstack.log" >&2; die "the local cloud did not start within 60 s"; }
say "$(head -n 1 "$STATE/devstack.log")"
# shellcheck disable=SC1090
. "$ENV_FILE"  # AWS_ENDPOINT_URL, fake credentials, PAYMENT_URL, QUEUE_URL, ...: the runner passes them on

# -- 3. the examples, through the runner ----------------------------------------------------------
# Each run prints its invocations (the stats of the whole demo come at the end).
invoke() {  # invoke TITLE ARGS...: one `lambdascope invoke ARGS` run
  local title=$1
  shift
  step "$title"
  say "${DIM}\$ lambdascope invoke $*${OFF}"
  "$PY" -m lambdascope.cli invoke "$@" --db "$DB" --quiet \
    | awk 'done { next } /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] .* to / { done = 1; next } { print }'
}

invoke "image pipeline: 4 photos on 2 sandboxes (2 cold starts, then warm; S3 -> a tool run from /tmp -> S3)" \
  examples/image_pipeline/thumbnailer.py:handler --event examples/image_pipeline/events/photo_uploaded.json \
  --times 4 --containers 2 --timeout 10
invoke "image pipeline: an 80 MB upload read into memory at 128 MB (killed: out of memory)" \
  examples/image_pipeline/thumbnailer.py:handler --event examples/image_pipeline/events/huge_image.json \
  --memory 128 --timeout 10
invoke "orders API: 6 orders, 2 at a time (DynamoDB and an HTTP call to the payment service)" \
  examples/orders_api/orders.py:handler --event examples/orders_api/events/create_order.json \
  --times 6 --concurrency 2
invoke "orders API: a declined card (answered 402: the HTTP span is an error, the invocation is not)" \
  examples/orders_api/orders.py:handler --event examples/orders_api/events/declined_card.json
invoke "orders API: an order for a product not in the catalogue (the bug left in: KeyError)" \
  examples/orders_api/orders.py:handler --event examples/orders_api/events/unknown_product.json \
  --times 2
invoke "orders API: a slow payment provider and a 1 s timeout (killed at the deadline)" \
  examples/orders_api/orders.py:handler --event examples/orders_api/events/slow_payment.json \
  --timeout 1
invoke "queue pipeline: checkout queues a cart's 3 shipments on SQS" \
  examples/queue_pipeline/checkout.py:handler --event examples/queue_pipeline/events/checkout.json

step "queue pipeline: Lambda's SQS poller, played by sqs_poller.py: the messages become fulfilment's batch"
say "${DIM}\$ python examples/queue_pipeline/sqs_poller.py --out $STATE/shipments.json${OFF}"
"$PY" examples/queue_pipeline/sqs_poller.py --out "$STATE/shipments.json" --wait-s 5 2>&1 | sed 's/^/    /'

invoke "queue pipeline: fulfilment takes the batch (one shipment fails alone) in checkout's trace" \
  examples/queue_pipeline/fulfilment.py:handler --event "$STATE/shipments.json"

kill "$DEVSTACK_PID" 2>/dev/null || true
wait "$DEVSTACK_PID" 2>/dev/null || true
DEVSTACK_PID=

# -- 4. the collector, the stats, one trace ---------------------------------------------------
step "starting the collector on the store ($DB)"
if [ "$PORT" = 8585 ] && ! "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 8585))' 2>/dev/null; then
  say "port 8585 is taken: using a free one"
  PORT=0
fi
nohup "$PY" -m lambdascope.cli collector --db "$DB" --port "$PORT" > "$STATE/collector.log" 2>&1 &
COLLECTOR_PID=$!
echo "$COLLECTOR_PID" > "$COLLECTOR_PIDFILE"
URL=
for _ in $(seq 1 300); do
  URL=$(grep -o 'http://[^ ]*' "$STATE/collector.log" | head -n 1 || true)
  [ -n "$URL" ] && break
  kill -0 "$COLLECTOR_PID" 2>/dev/null || { cat "$STATE/collector.log" >&2; die "the collector did not start"; }
  sleep 0.1
done
[ -n "$URL" ] || { cat "$STATE/collector.log" >&2; die "the collector did not start within 30 s"; }
URL=${URL%/}
say "dashboard: ${BOLD}$URL${OFF}"

step "the stats of this run: lambdascope stats --since <the demo's start>"
"$PY" -m lambdascope.cli stats --db "$DB" --since "$BEGAN_MS" --top 5

# The newest fulfilment invocation, asked of the collector's JSON API.
FULFILMENT_ID=$("$PY" - "$URL" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/invocations?function=fulfilment&limit=1",
                            timeout=10) as answer:
    found = json.load(answer)["invocations"]
print(found[0]["request_id"] if found else "")
EOF
)
if [ -n "$FULFILMENT_ID" ]; then
  step "one trace across two functions: lambdascope show $FULFILMENT_ID"
  "$PY" -m lambdascope.cli show --db "$DB" --width 40 "$FULFILMENT_ID"
fi

step "done in ${SECONDS}s"
say "dashboard:            $URL"
say "the service map:      $URL/map   (checkout -> SQS shipments -> fulfilment)"
say "what went wrong:      $URL/invocations?status=error  (and status=timeout, status=crashed)"
[ -z "$FULFILMENT_ID" ] || say "the trace above:      $URL/invocations/$FULFILMENT_ID"
say "from the shell:       .venv/bin/lambdascope stats --since 1h | show REQUEST_ID | check --function orders ..."
if [ "$KEEP" = 1 ] || { [ "$KEEP" = auto ] && [ -t 1 ]; }; then
  KEEP_COLLECTOR=1
  say "the collector keeps running (pid $COLLECTOR_PID); stop it with: bash scripts/demo.sh --stop"
else
  say "the collector stops now (not run from a terminal; --keep leaves it running)"
fi
