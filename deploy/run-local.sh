#!/usr/bin/env bash
# Seed 004's topology natively on loopback, for machines without a Docker engine:
# nginx (127.0.0.1:$HTTP_PORT) → gunicorn/Flask → RabbitMQ → two celeriac workers, beat,
# PostgreSQL for the app's jobs and the results, and celeriac's dashboard (`celeriac web`).
#
#   run-local.sh up       start everything; returns once the API answers through nginx
#   run-local.sh stress   the seed's 50 POSTs (extra arguments go to stress.sh: -n N -c C)
#   run-local.sh status   which processes are running
#   run-local.sh down     stop everything that `up` started
#
# The services' addresses come from the environment (see examples/process_data/README.md):
# BROKER_URL, DATABASE_URL, DATABASE_SCHEMA, RESULT_BACKEND; ports HTTP_PORT (8888),
# WEB_PORT (8001), DASHBOARD_PORT (5555); RUN_DIR holds pid files and logs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
BIN="${BIN:-$repo/.venv/bin}"
RUN_DIR="${RUN_DIR:-$here/.run}"
HTTP_PORT="${HTTP_PORT:-8888}"
WEB_PORT="${WEB_PORT:-8001}"
DASHBOARD_PORT="${DASHBOARD_PORT:-5555}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
export PYTHONPATH="$repo/examples/process_data${PYTHONPATH:+:$PYTHONPATH}"
APP=process_data.tasks

start() {  # start NAME COMMAND...: run in its own session, remember its pid, log to RUN_DIR
    local name="$1"; shift
    setsid "$@" >"$RUN_DIR/$name.log" 2>&1 < /dev/null &
    echo $! >"$RUN_DIR/$name.pid"
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds
    local what="$1" seconds="$2"; shift 2
    for _ in $(seq 1 $(( seconds * 5 ))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "run-local: $what did not come up within ${seconds}s; see $RUN_DIR" >&2
    return 1
}

nginx_conf() {
    sed -e "s#@RUN_DIR@#$RUN_DIR#g" -e "s#@HTTP_PORT@#$HTTP_PORT#g" -e "s#@WEB_PORT@#$WEB_PORT#g" \
        "$here/nginx-local.conf.template" >"$RUN_DIR/nginx.conf"
}

up() {
    [ -x "$NGINX" ] || { echo "run-local: nginx is not installed (apt-get install nginx-light)" >&2; exit 1; }
    mkdir -p "$RUN_DIR"
    if [ -n "$(running)" ]; then echo "run-local: already up ($RUN_DIR); run down first" >&2; exit 1; fi
    "$BIN/python" -c 'from process_data.db import create_tables; create_tables()'
    start worker1 "$BIN/celeriac" -A "$APP" worker -n "worker1@%h" -c 2 -l info -E
    start worker2 "$BIN/celeriac" -A "$APP" worker -n "worker2@%h" -c 2 -l info -E
    start beat "$BIN/celeriac" -A "$APP" beat -l info
    start web "$BIN/gunicorn" --workers 4 --bind "127.0.0.1:$WEB_PORT" --access-logfile - \
        --graceful-timeout 5 --control-socket "$RUN_DIR/gunicorn.ctl" "process_data:create_app()"
    start dashboard "$BIN/celeriac" -A "$APP" web --port "$DASHBOARD_PORT" \
        --history "$RUN_DIR/dashboard-history.sqlite"
    nginx_conf
    start nginx "$NGINX" -p "$RUN_DIR" -c "$RUN_DIR/nginx.conf" -g "daemon off;"
    wait_for "worker1" 30 grep -q "ready" "$RUN_DIR/worker1.log"
    wait_for "worker2" 30 grep -q "ready" "$RUN_DIR/worker2.log"
    wait_for "the API through nginx" 30 curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz"
    wait_for "the dashboard" 30 curl -fsS "http://127.0.0.1:$DASHBOARD_PORT/api/workers"
    echo "run-local: up — API http://127.0.0.1:$HTTP_PORT/api/process_data, dashboard" \
        "http://127.0.0.1:$DASHBOARD_PORT, logs in $RUN_DIR"
}

running() {  # the names whose process is alive
    local pidfile
    for pidfile in "$RUN_DIR"/*.pid; do
        [ -e "$pidfile" ] || continue
        [ "$(basename "$pidfile")" = nginx-master.pid ] && continue  # nginx's own record
        kill -0 "$(cat "$pidfile")" 2>/dev/null && basename "$pidfile" .pid
    done
    return 0
}

down() {
    local name pid
    for name in nginx web dashboard beat worker1 worker2; do
        [ -e "$RUN_DIR/$name.pid" ] || continue
        pid="$(cat "$RUN_DIR/$name.pid")"
        # Each was started with setsid: signal its whole session (gunicorn's and the pool's children).
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for name in nginx web dashboard beat worker1 worker2; do
        [ -e "$RUN_DIR/$name.pid" ] || continue
        pid="$(cat "$RUN_DIR/$name.pid")"
        for _ in $(seq 1 75); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$RUN_DIR/$name.pid"
    done
    echo "run-local: down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) names="$(running)"; echo "${names:-nothing running}" ;;
    stress) shift; HTTP_PORT="$HTTP_PORT" "$here/stress.sh" "$@" ;;
    *) echo "usage: $0 up|stress|status|down" >&2; exit 2 ;;
esac
