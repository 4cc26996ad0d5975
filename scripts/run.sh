#!/usr/bin/env bash
# `make run`: migrate, build the demo studies if absent, then run the web server and a
# real Celery workers (one for imports) and beat side by side until Ctrl-C, which stops
# them all.
set -euo pipefail
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
PY=.venv/bin/python

$PY manage.py migrate --noinput -v0
$PY manage.py collectstatic --noinput -v0
$PY manage.py ensure_admin
$PY manage.py build_demo

source scripts/supervise.sh
# The embedded broker (kombu's file-system transport) is served by one solo-pool worker,
# started by scoring.worker: celery in the environment that points the metric libraries
# at the weights folder, offline.
supervise_start worker \
  $PY -m scoring.worker --pool solo --loglevel INFO --without-gossip --without-mingle \
  --hostname "default@%h"
# Imports get a worker of their own (IQA_IMPORT_QUEUE): an export or a report never waits
# behind another researcher's import.
supervise_start "import worker" \
  $PY -m scoring.worker --pool solo --loglevel INFO --without-gossip --without-mingle \
  --queues "${IQA_IMPORT_QUEUE:-imports}" --hostname "imports@%h"
# celery beat runs the periodic scoring sweep (batches whose message was lost are sent again).
supervise_start beat \
  .venv/bin/celery -A config beat --loglevel WARNING --schedule "${IQA_DATA_DIR:-var}/celerybeat-schedule"
# A short graceful timeout: Ctrl-C must not wait on a browser's idle keep-alive connection.
supervise_start "web server" \
  .venv/bin/gunicorn config.wsgi --bind "$HOST:$PORT" --workers 2 --threads 4 \
  --graceful-timeout 5 --no-control-socket --access-logfile -

# Print the URLs once the web server answers.
$PY - "$HOST" "$PORT" <<'PYEOF'
import sys, time, urllib.request
host = "127.0.0.1" if sys.argv[1] in ("0.0.0.0", "::") else sys.argv[1]
for _ in range(120):
    try:
        urllib.request.urlopen(f"http://{host}:{sys.argv[2]}/healthz", timeout=2)
        break
    except Exception:
        time.sleep(0.25)
PYEOF
# The admin's password: generated once and kept in the data folder, unless the operator
# set DJANGO_ADMIN_PASSWORD (then it is theirs, and not printed).
PASSWORD_FILE="${IQA_DATA_DIR:-var}/admin_password"
if [[ -n ${DJANGO_ADMIN_PASSWORD:-} ]]; then
  PASSWORD="(DJANGO_ADMIN_PASSWORD)"
else
  PASSWORD=$(cat "$PASSWORD_FILE" 2>/dev/null || echo "(see $PASSWORD_FILE)")
fi
cat <<MSG

  The platform is running (Ctrl-C stops the web server, the workers and beat):
    Researchers: http://$HOST:$PORT/login/
    Studies:     http://$HOST:$PORT/studies/
    Admin:       http://$HOST:$PORT/admin/
    Health:      http://$HOST:$PORT/healthz
    API spec:    http://$HOST:$PORT/api/schema/ (drawn at /api/docs/)
    Annotate:    http://$HOST:$PORT/annotate/demo/
                 http://$HOST:$PORT/annotate/demo-pairwise/
    Annotator API: POST http://$HOST:$PORT/api/v1/studies/demo/sessions

  Log in as:     user admin, password $PASSWORD

MSG
# Until Ctrl-C, which stops them all; if one of them dies, the others are stopped too.
supervise_wait
