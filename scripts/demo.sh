#!/usr/bin/env bash
# Quick start: install jobrunner into .venv, run a daemon on an embedded SQLite file,
# submit a few jobs (one fails into the dead-letter queue), and show what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p .demo
export JOBRUNNER_DB="${JOBRUNNER_DB:-$PWD/.demo/jobs.db}"
echo "# database: $JOBRUNNER_DB"

jobrunner daemon --workers 2 2> .demo/daemon.log &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT

set -x
hello=$(jobrunner submit --name hello -- sh -c 'echo "hello from jobrunner"; jobrunner progress 1 done')
json=$(jobrunner submit --call json:dumps --arg obj='{"a": 1}' --priority high)
flaky=$(jobrunner submit --name flaky --retries 2 --backoff 0.5s -- sh -c 'echo failing >&2; exit 3')
later=$(jobrunner submit --in 1h --tag later -- date)
jobrunner wait "$hello" "$json" --timeout 60
jobrunner wait "$flaky" --timeout 60 || echo "job $flaky is in the dead-letter queue, as expected"
jobrunner logs "$hello"
jobrunner list
jobrunner show "$flaky"
jobrunner stats
