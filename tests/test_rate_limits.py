"""`[queues.NAME] rate = "5/s"` (issue 18): a token bucket per queue in the database, taken from
inside the claim's transaction, so the rate holds across restarts and any number of daemons.
Jobs the rate holds back stay queued; the daemon sleeps until the next token is due; `status`
and the TUI say the queue is rate-limited. Every test runs on the backend the run chose."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from jobrunner.config import parse_config
from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.rates import parse_rate
from jobrunner.errors import ConfigError
from tests.conftest import sql, wait_until


@pytest.mark.parametrize(("text", "per_second", "capacity"), [
    ("5/s", 5.0, 1.0), ("30/m", 0.5, 1.0), ("1000/h", 1000 / 3600, 1.0), ("1/10s", 0.1, 1.0),
    (" 2 / h ", 2 / 3600, 1.0), ("100/s", 100.0, 10.0), ("48/d", 48 / 86400, 1.0),
])  # fmt: skip
def test_rates_are_read_as_written(text, per_second, capacity):
    rate = parse_rate(text)
    assert rate.per_second == pytest.approx(per_second) and rate.capacity == capacity


@pytest.mark.parametrize("value", ["5", "5/x", "five/s", "0/s", "-1/s", "5/0s", 5, "1e3/s", "", "1000001/s"])
def test_a_bad_rate_is_one_error_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"^config: queues\.api\.rate: ") as refused:
        parse_config({"queues": {"api": {"rate": value}}})
    assert "\n" not in str(refused.value)


def test_a_bad_rate_in_the_config_file_is_one_line_from_the_cli(cli):
    Path("jobs.toml").write_text('[tasks.t]\ncommand = "true"\n[queues.api]\nrate = "30/min"\n')
    result = cli("submit", "t")
    assert result.exit_code == 2
    assert re.fullmatch(r"jobrunner: error: \S*jobs\.toml: queues\.api\.rate: '30/min' is not a rate: .*\n", result.stderr)
    assert parse_config({"queues": {"api": {"rate": "30/m", "concurrency": 2}}}).queues["api"].rate.text == "30/m"


def _claim(store, owner: str, now: float, limit: int, rate: str = "1/s"):
    from jobrunner.store import rates

    with store.write():
        return rates.claim(store, owner, now, limit, 30.0, "/tmp/logs", "r", parse_rate(rate))


def test_the_bucket_is_shared_and_outlives_its_daemon(store, db_path):
    """Two stores (two daemons, or one restarted) spend the one bucket of the database: `now`
    is passed in, so no test waits for tokens."""
    from jobrunner.store import open_store, rates, repo

    repo.submit_many(store, [build_spec({"command": ["true"], "queue": "r"})] * 5, time.time())
    t = time.time()
    claims, due = _claim(store, "a", t, 5)
    assert len(claims) == 1 and due == pytest.approx(t + 1)  # the full bucket's one token
    other = open_store(str(db_path))
    try:
        assert _claim(other, "b", t + 0.5, 5) == ([], pytest.approx(t + 1))  # half a token: none
        assert len(_claim(other, "b", t + 1.0, 5)[0]) == 1
        claims, due = _claim(store, "a", t + 3.5, 5)  # 2.5 s idle: still one token, the capacity
        assert len(claims) == 1 and due == pytest.approx(t + 4.5)
        assert _claim(store, "a", t + 4.5, 0) == ([], None)  # no room: nothing asked, nothing due
        assert len(_claim(other, "b", t + 9, 5)[0]) == 1
        assert len(_claim(store, "a", t + 20, 5)[0]) == 1
        assert _claim(store, "a", t + 40, 5) == ([], None)  # the queue is empty: nothing waits
        assert sql(store, "SELECT COUNT(*) FROM job WHERE queue='r' AND status='running'") == [(5,)]
        assert rates.states(store, t + 40)["r"] == {"rate": "1/s", "tokens": 1.0, "next_token_in": None}
    finally:
        other.close()


def test_status_says_a_queue_is_rate_limited(cli, store):
    ids = [cli.submit("--queue", "r", "--", "true") for _ in range(3)]
    cli.submit("--queue", "free", "--", "true")
    assert len(_claim(store, "a", time.time(), 3, rate="1/m")[0]) == 1  # the only token for a minute
    result = cli("status", "--json")  # exit 3: no daemon runs
    data = json.loads(result.stdout)
    assert (data["queues"]["r"]["rate"], data["queues"]["r"]["rate_limited"]) == ("1/m", True)
    assert 50 < data["queues"]["r"]["next_start_in"] <= 60
    assert (data["queues"]["free"]["rate"], data["queues"]["free"]["rate_limited"]) == (None, False)
    text = cli("status").stdout
    assert re.search(r"queue     r: 1 running, 2 queued  \(rate-limited: 1/m, next start in \d+s\)", text), text
    assert [cli.job(i)["status"] for i in ids].count("queued") == 2

    from jobrunner.tui.data import PageRequest, fetch_page

    assert fetch_page(store, PageRequest(), time.time()).rate_limited == ["r"]


def _starts(db_path) -> list[float]:
    return sorted(row[0] for row in sql(db_path, "SELECT started_at FROM job WHERE started_at IS NOT NULL"))


def test_two_daemons_keep_to_five_starts_a_second(cli, daemon, db_path):
    """50 jobs, two daemons, rate 5/s with a bucket of one token: in any 1 s at most 5 + 1 start,
    and the last starts no sooner than 49 intervals of 0.2 s after the first."""
    Path("jobs.toml").write_text('[queues.r]\nrate = "5/s"\n')
    for process in (daemon, daemon.make()):
        process.start("--workers", "3")
    lines = Path("jobs.jsonl")
    lines.write_text('{"command": "true", "queue": "r"}\n' * 50)
    cli.ok("submit", "--from-file", str(lines))
    wait_until(lambda: "rate-limited: 5/s" in cli("status").stdout, timeout=10)
    wait_until(lambda: cli.count("succeeded") == 50, timeout=60)

    starts = _starts(db_path)
    assert len(starts) == 50
    most = max(sum(1 for s in starts if first <= s <= first + 1.0) for first in starts)
    assert most <= 5 + 1, most
    assert starts[-1] - starts[0] >= 49 / 5 - 0.05
    owners = {re.sub(r"^attempt 1 started by ", "", m) for (m,) in sql(db_path, "SELECT message FROM event WHERE to_status='running'")}
    assert len(owners) == 2  # both daemons took tokens from the one bucket


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_idle(pid: int) -> None:
    """Until a process used at most one clock tick in half a second."""
    seen = [(time.monotonic(), _cpu_seconds(pid))]

    def idle() -> bool:
        seen.append((time.monotonic(), _cpu_seconds(pid)))
        while len(seen) > 2 and seen[-1][0] - seen[1][0] >= 0.5:
            seen.pop(0)
        return seen[-1][0] - seen[0][0] >= 0.5 and seen[-1][1] - seen[0][1] <= 0.01

    wait_until(idle, timeout=15, interval=0.05)


def test_a_restarted_daemon_keeps_to_the_rate_and_sleeps_until_the_next_token(cli, daemon):
    Path("jobs.toml").write_text('[queues.r]\nrate = "1/m"\n')
    daemon.start("--workers", "2")
    first, second = cli.submit("--queue", "r", "--", "true"), cli.submit("--queue", "r", "--", "true")
    wait_until(lambda: cli.job(first)["status"] == "succeeded", timeout=20)
    daemon.stop()
    daemon.start()  # the bucket is in the database: the restart brings no new token
    wait_until(lambda: "rate-limited: 1/m" in cli("status").stdout, timeout=10)
    _wait_idle(daemon.proc.pid)  # its start-up done, it sleeps (a busy loop would never get here)
    before, since = _cpu_seconds(daemon.proc.pid), time.monotonic()
    wait_until(lambda: time.monotonic() - since >= 2.0, timeout=5)  # two seconds of waiting for a token
    assert _cpu_seconds(daemon.proc.pid) - before <= 0.05  # asleep, not polling
    assert cli.job(second)["status"] == "queued"
