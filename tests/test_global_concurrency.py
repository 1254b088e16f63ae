"""`[queues.NAME] concurrency = N, scope = "global"` (issue 16): at most N of the queue's jobs
run at once across every daemon on the database, checked inside the claim's transaction. Each
job writes its start and end to a ledger; no two intervals may overlap beyond the limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobrunner.config import parse_config
from jobrunner.errors import ConfigError
from tests.conftest import run_jobrunner, wait_until

CONFIG = '[queues.one]\nconcurrency = 1\nscope = "global"\n'


def _most_at_once(ledger: Path) -> int:
    events = []
    for line in ledger.read_text().splitlines():
        kind, stamp = line.split()
        events.append((float(stamp), 1 if kind == "start" else -1))
    running = most = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        most = max(most, running)
    return most


def _submit_all(env: dict[str, str], ledger: Path, count: int) -> list[int]:
    script = f'echo "start $(date +%s.%N)" >> {ledger}; sleep 0.3; echo "end $(date +%s.%N)" >> {ledger}'
    ids = []
    for _ in range(count):
        result = run_jobrunner("submit", "--queue", "one", "--", "sh", "-c", script, env=env)
        assert result.returncode == 0, result.stderr
        ids.append(int(result.stdout))
    return ids


def test_the_scope_is_checked():
    with pytest.raises(ConfigError, match="scope"):
        parse_config({"queues": {"one": {"concurrency": 1, "scope": "cluster"}}})
    with pytest.raises(ConfigError, match="needs a concurrency"):
        parse_config({"queues": {"one": {"scope": "global"}}})
    assert parse_config({"queues": {"one": {"concurrency": 2, "scope": "global"}}}).queues["one"].scope == "global"


def test_two_daemons_run_one_job_of_a_global_queue_at_a_time(daemon, db_path, tmp_path):
    Path("jobs.toml").write_text(CONFIG)
    for process in (daemon, daemon.make()):
        process.start("--workers", "2")
    ledger = tmp_path / "ledger"
    _submit_all({"JOBRUNNER_DB": str(db_path)}, ledger, 6)
    wait_until(lambda: ledger.exists() and ledger.read_text().count("end") == 6, timeout=60)
    assert _most_at_once(ledger) == 1


@pytest.mark.postgres
def test_three_daemons_on_postgresql_respect_a_global_limit(daemon, postgres_url, tmp_path):
    Path("jobs.toml").write_text(CONFIG)
    env = {"JOBRUNNER_DB": postgres_url}
    flags = ["--allow-root"] if os.geteuid() == 0 else []
    for process in (daemon, daemon.make(), daemon.make()):
        process.start("--workers", "2", *flags, env=env)
    ledger = tmp_path / "ledger"
    _submit_all(env, ledger, 6)
    wait_until(lambda: ledger.exists() and ledger.read_text().count("end") == 6, timeout=60)
    assert _most_at_once(ledger) == 1
