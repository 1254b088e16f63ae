#!/usr/bin/env bash
# Set up a virtualenv with the project and its test tools, then run the whole suite twice: on
# SQLite, then the tests that use a database again on the PostgreSQL server at 127.0.0.1:5432
# (user postgres, database `test`), each in a fresh database of its own. An unreachable server
# fails the run. JOBRUNNER_TEST_BACKENDS=sqlite (or =postgresql) runs one pass only.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
BACKENDS="${JOBRUNNER_TEST_BACKENDS:-sqlite postgresql}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
"$VENV/bin/ruff" check jobrunner tests benchmarks

if [[ " $BACKENDS " == *" postgresql "* ]]; then  # say so now, not after the SQLite pass
    "$VENV/bin/python" - <<'EOF'
import sys
try:
    import psycopg2

    psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=5).close()
except Exception as exc:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    sys.exit(f"scripts/test.sh: no PostgreSQL server on 127.0.0.1:5432 for the PostgreSQL pass ({reason})")
EOF
fi

failed=0
for backend in $BACKENDS; do
    echo "=== tests on $backend"
    code=0
    JOBRUNNER_TEST_BACKEND="$backend" "$VENV/bin/python" -m pytest "$@" || code=$?
    # 5: nothing collected, as when the tests named all belong to the other pass
    if [ "$code" -ne 0 ] && [ "$code" -ne 5 ]; then
        echo "=== tests on $backend failed (exit $code)"
        failed=1
    fi
done
exit "$failed"
