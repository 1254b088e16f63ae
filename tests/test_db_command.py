"""`jobrunner db migrate|version` (issue 16, migrations once): explicit schema steps, and on
PostgreSQL ten processes migrating an empty database at once do it once, under a lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jobrunner.store.migrations import SCHEMA_VERSION
from tests.conftest import ROOT, run_jobrunner


@pytest.mark.sqlite_only(reason="no SQLite file yet; an empty PostgreSQL database is version 0 (the test below)")
def test_version_changes_nothing_and_migrate_creates(home, tmp_path):
    db = tmp_path / "fresh.db"
    result = run_jobrunner("--db", str(db), "db", "version")
    assert result.returncode == 2 and "no database at" in result.stderr and not db.exists()
    assert run_jobrunner("--db", str(db), "db", "migrate").returncode == 0
    shown = json.loads(run_jobrunner("--db", str(db), "db", "version", "--json").stdout)
    assert shown == {"database": str(db), "version": SCHEMA_VERSION, "latest": SCHEMA_VERSION}


@pytest.mark.postgres
def test_ten_processes_migrate_an_empty_postgresql_database_once(postgres_url):
    before = run_jobrunner("db", "version", "--json", env={"JOBRUNNER_DB": postgres_url})
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["version"] == 0
    env = {**os.environ, "JOBRUNNER_DB": postgres_url, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "jobrunner", "db", "migrate"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(10)]  # fmt: skip
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    after = json.loads(run_jobrunner("db", "version", "--json", env={"JOBRUNNER_DB": postgres_url}).stdout)
    assert after["version"] == SCHEMA_VERSION
    submitted = run_jobrunner("submit", "--", "true", env={"JOBRUNNER_DB": postgres_url})
    assert submitted.returncode == 0 and submitted.stdout.strip() == "1", submitted.stderr
