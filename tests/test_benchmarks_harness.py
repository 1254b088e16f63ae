"""Smoke tests of the benchmark harness: the helpers work; no figure is judged here."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from benchmarks import scale
from benchmarks.__main__ import NAMES, main
from benchmarks.common import Figure, table
from benchmarks.procs import cpu_seconds, descendants, status_kb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_table_formats_new_units_and_verdicts():
    rss = Figure("daemon RSS", "MB", [30.0, 31.5, 29.0], higher_is_better=False, bar=60.0)
    cpu = Figure("idle CPU", "% core", [0.02, 0.04, 0.03], higher_is_better=False, bar=1.0)
    text = table([rss, cpu])
    assert "30.0" in text and "<= 60.0" in text
    assert "0.03" in text and "<= 1.00" in text
    assert rss.verdict == cpu.verdict == "ok"


def test_proc_readings_of_a_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in descendants(os.getpid())
        assert status_kb(child.pid) > 0
        assert cpu_seconds([os.getpid()]) > 0
    finally:
        child.kill()
        child.wait()
    assert status_kb(child.pid) == 0  # gone: no reading, no error


def test_scale_builds_a_database_with_the_real_indexes(tmp_path):
    from jobrunner.store import open_store

    reference = tmp_path / "reference.db"
    open_store(str(reference)).close()
    built = tmp_path / "built.db"
    scale.build(built, finished=50, queued=7)
    index_sql = "SELECT name, sql FROM sqlite_master WHERE type='index' ORDER BY name"
    with sqlite3.connect(reference) as a, sqlite3.connect(built) as b:
        assert a.execute(index_sql).fetchall() == b.execute(index_sql).fetchall()
        counts = dict(b.execute("SELECT status, COUNT(*) FROM job GROUP BY status").fetchall())
        assert counts == {"succeeded": 50, "queued": 7}
        assert b.execute("SELECT COUNT(*) FROM event").fetchone()[0] == 50 * 3 + 7


def test_every_benchmark_is_registered():
    assert {"huey", "shell", "idle", "memory", "scale", "http", "postgres"} <= set(NAMES)
    with pytest.raises(SystemExit):
        main(["--only", "nonsense"])


def test_postgres_without_procrastinate_says_so_and_keeps_jobrunners_figures(monkeypatch, capsys):
    """procrastinate is a bench extra, not a test dependency: without it the PostgreSQL benchmark
    says it skipped it and still reports jobrunner's own figures (measurements stubbed here: the
    real ones start daemons for a minute even at --quick sizes)."""
    from contextlib import contextmanager

    from benchmarks import postgres

    @contextmanager
    def place(self, tag, backend):
        yield ("postgresql://nowhere/x" if backend == "pg" else "x.db"), None

    monkeypatch.setattr(postgres, "server_problem", lambda: None)
    monkeypatch.setattr(postgres, "procrastinate_installed", lambda: False)
    monkeypatch.setattr(postgres.Runs, "place", place)
    monkeypatch.setattr(postgres, "jobrunner_enqueue", lambda jobs, target, work: 1000.0)
    monkeypatch.setattr(postgres, "jobrunner_e2e", lambda jobs, target, work: 500.0)
    monkeypatch.setattr(
        postgres, "jobrunner_pickup", lambda count, target, work, seed, notify_only=False: [0.002] * 5
    )
    monkeypatch.setattr(
        postgres, "jobrunner_scaling", lambda jobs, daemons, workers, target, work: 70.0 * daemons
    )
    figures = postgres.measure(jobs=5, e2e_jobs=5, latency_jobs=5, scale_jobs=5, runs=3)
    assert "skipped: procrastinate not installed" in capsys.readouterr().err
    names = [f.name for f in figures]
    assert not [name for name in names if "procrastinate" in name]
    assert any("PostgreSQL" in name for name in names) and any("SQLite" in name for name in names)
    verdicts = {f.name.strip(): f.verdict for f in figures if f.bar is not None}
    assert verdicts == {"pickup (5 jobs, idle gaps): jobrunner PostgreSQL median": "ok",
                        "jobrunner PostgreSQL p99": "ok", "ratio 3 daemons / 1, PostgreSQL": "ok"}  # fmt: skip


@pytest.mark.slow
def test_http_benchmark_runs_in_quick_mode(tmp_path, capsys):
    """`python -m benchmarks --only http --quick`: real `jobrunner serve` processes, a daemon, the
    clients; every figure comes out (none is judged here: a smoke run, not a measurement)."""
    import json

    out = tmp_path / "http.json"
    main(["--only", "http", "--quick", "--json", str(out)])
    figures = {f["name"]: f for f in json.loads(out.read_text())["figures"]}
    assert any(name.startswith("HTTP: single submits") for name in figures)
    assert any(name.startswith("HTTP: bulk submit") for name in figures)
    assert any(name.startswith("HTTP: GET /api/jobs page of 50") for name in figures)
    assert any(name.startswith("HTTP: SSE") for name in figures)
    assert any(name.startswith("wait()") for name in figures)
    assert all(f["runs"] == 3 and f["min"] >= 0 for f in figures.values())
    assert "HTTP: single submits" in capsys.readouterr().out
