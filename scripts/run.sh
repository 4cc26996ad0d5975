#!/usr/bin/env bash
# `make run`: migrate, build the demo studies if absent, then run the web server and a
# real Celery worker side by side until Ctrl-C, which stops both.
set -euo pipefail
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
PY=.venv/bin/python

$PY manage.py migrate --noinput -v0
$PY manage.py collectstatic --noinput -v0
$PY manage.py build_demo
$PY manage.py ensure_admin

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping web server and worker..."
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

# The embedded broker (kombu's file-system transport) is served by one solo-pool worker.
.venv/bin/celery -A config worker --pool solo --loglevel INFO --without-gossip --without-mingle &
pids+=($!)
.venv/bin/gunicorn config.wsgi --bind "$HOST:$PORT" --workers 2 --threads 4 \
  --no-control-socket --access-logfile - &
pids+=($!)

sleep 2
cat <<MSG

  The platform is running (Ctrl-C stops the web server and the worker):
    Studies:  http://$HOST:$PORT/
    Admin:    http://$HOST:$PORT/admin/   (user admin; password above)
    Health:   http://$HOST:$PORT/healthz
    API spec: http://$HOST:$PORT/api/schema/

MSG
wait -n "${pids[@]}"
