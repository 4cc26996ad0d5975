# Process supervision for scripts/run.sh (sourced, not run): start commands in the
# background, stop them all together, and never hang on the way out. Ctrl-C always
# returns: what has not exited STOP_GRACE seconds after SIGTERM is killed with its
# children. (Killing the Celery worker loses no vote; the scoring sweep sends again the
# batches the database still records as pending.)
#
#   source scripts/supervise.sh
#   supervise_start NAME COMMAND [ARGS...]   # as many as needed
#   supervise_wait                           # until Ctrl-C, or until one process exits

STOP_GRACE=${STOP_GRACE:-15}
supervised_pids=()
supervised_names=()
# Installed before the first process starts: Ctrl-C at any moment stops what has started.
trap 'supervise_stop; exit 0' INT TERM
trap supervise_stop EXIT

supervise_start() {
  local name=$1
  shift
  "$@" &
  supervised_pids+=($!)
  supervised_names+=("$name")
}

# The supervised processes still running, one "pid name" per line.
supervise_alive() {
  local i
  for i in "${!supervised_pids[@]}"; do
    if kill -0 "${supervised_pids[$i]}" 2>/dev/null; then
      echo "${supervised_pids[$i]} ${supervised_names[$i]}"
    fi
  done
}

supervise_stop() {
  trap - INT TERM EXIT
  ((${#supervised_pids[@]})) || return 0
  local names
  names=$(printf ', %s' "${supervised_names[@]}")
  echo
  echo "Stopping ${names:2}..."
  kill "${supervised_pids[@]}" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_GRACE)) left pid name
  while left=$(supervise_alive) && [[ -n $left ]] && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if [[ -n $left ]]; then
    while read -r pid name; do
      echo "$name (pid $pid) did not stop ${STOP_GRACE}s after SIGTERM; killing it." >&2
      pkill -KILL -P "$pid" 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
    done <<<"$left"
  fi
  wait "${supervised_pids[@]}" 2>/dev/null || true
}

# Blocks until Ctrl-C (or SIGTERM), which stops everything and exits 0, or until one
# process exits by itself, which stops the others and exits with its status (0 when it
# stopped cleanly because Ctrl-C reached it before this shell ran its trap).
supervise_wait() {
  local status=0
  wait -n "${supervised_pids[@]}" || status=$?
  # Status 0: it stopped cleanly, as on Ctrl-C (which reaches every process of the
  # group, often before this shell's trap runs): nothing to report.
  if ((status != 0)); then
    echo "A process exited (status $status); stopping the others." >&2
  fi
  exit "$status"
}
