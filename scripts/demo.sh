#!/usr/bin/env bash
# Quick start: install jobrunner into .venv and show it working on an embedded SQLite file.
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

set -x
jobrunner submit --name hello -- echo "hello from jobrunner"
jobrunner submit --call json:dumps --arg obj='{"a": 1}' --priority high
jobrunner submit --name flaky --retries 2 --backoff 1s -- sh -c 'echo failing >&2; exit 3'
jobrunner submit --in 1h --tag later -- date
jobrunner list
jobrunner stats
