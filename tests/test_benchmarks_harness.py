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
    assert {"huey", "shell", "idle", "memory", "scale"} <= set(NAMES)
    with pytest.raises(SystemExit):
        main(["--only", "nonsense"])
