"""Progress has limits wherever it enters (issue 15, item 7), and survives a storm of reports.

A message is cut to 1,000 characters with an ellipsis (the `jobrunner progress` CLI, its fast
path, $JOBRUNNER_PROGRESS lines, `job.report()`); NaN, infinities and values outside 0-1 are
refused in one line (exit 2) or with ValueError; `jobrunner progress` for a job that is unknown
or not running fails in one line (exit 2) and stores nothing. A job may report a million
times: only the latest report counts, and the last one the job made is the one stored.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import run_jobrunner, sql, wait_until

LIMIT = 1000
BIG = "x" * 5_000_000


# ---------------------------------------------------------------- jobs the daemon runs here
def _wait_for(marker: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(marker):
        if time.monotonic() > deadline:
            raise TimeoutError(marker)
        time.sleep(0.01)


def storm(n: int, marker: str = "", job=None) -> str:
    """n reports as fast as Python makes them, the last `n/n`; then wait for `marker`, if any."""
    for i in range(1, n + 1):
        job.report(i / n, f"{i}/{n}")
    if marker:
        _wait_for(marker)
    return "stormed"


def report_then_wait(fraction: float, message: str, marker: str, job=None) -> str:
    job.report(fraction, message)
    _wait_for(marker)
    return "reported"


def report_big_then_wait(marker: str, job=None) -> str:
    job.report(0.5, BIG)
    _wait_for(marker)
    return "reported"


def report_nan(job=None) -> str:
    job.report(float("nan"), "never stored")
    return "unreachable"


def progress_of(cli, job_id: int) -> tuple[str, float | None, str | None]:
    job = cli.job(job_id)
    return job["status"], job["progress"], job["progress_message"]


# ---------------------------------------------------------------- the Python API itself
@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf"), -0.01, 1.01, 1e400, "half", None]
)
def test_report_refuses_what_is_not_a_fraction(value):
    from jobrunner.jobcontext import JobContext

    sent = []
    context = JobContext(id=1, attempt=1, _send=lambda f, m: sent.append((f, m)))
    with pytest.raises(ValueError, match="progress must be a number from 0 to 1"):
        context.report(value, "x")
    assert sent == []
    context.report(0, None)
    context.report(1, "done")
    assert sent == [(0.0, None), (1.0, "done")]


def test_report_cuts_a_long_message_and_makes_it_storable():
    from jobrunner.jobcontext import JobContext

    sent = []
    context = JobContext(id=1, attempt=1, _send=lambda f, m: sent.append(m))
    context.report(0.5, BIG)
    context.report(0.5, "bad \udcff byte and a NUL\0")
    context.report(0.5, "")
    context.report(0.5, 42)
    long, odd, empty, number = sent
    assert len(long) == LIMIT and long.endswith("…") and long.startswith("xxx")
    assert odd == "bad \ufffd byte and a NUL\ufffd"
    odd.encode("utf-8")  # storable
    assert empty is None and number == "42"


# ---------------------------------------------------------------- through a real daemon
def test_a_python_job_reporting_nan_fails_with_the_reason(cli, daemon):
    daemon.start("--workers", "1")
    job = cli.submit("--call", "tests.test_progress_limits:report_nan", "--retries", "0")
    wait_until(lambda: cli.job(job)["status"] == "dead", timeout=30)
    shown = cli.job(job)
    assert shown["error"] == "ValueError: progress must be a number from 0 to 1, not nan"
    assert shown["progress"] is None


def test_a_five_megabyte_message_is_stored_cut(cli, daemon, tmp_path):
    daemon.start("--workers", "1")
    marker = tmp_path / "go-on"
    job = cli.submit("--call", "tests.test_progress_limits:report_big_then_wait", "--arg", f"marker={marker}")
    wait_until(lambda: progress_of(cli, job)[1] == 0.5, timeout=30)
    message = cli.job(job)["progress_message"]
    assert len(message) == LIMIT and message == "x" * (LIMIT - 1) + "…"
    marker.touch()
    wait_until(lambda: cli.job(job)["status"] == "succeeded", timeout=30)


def test_a_storm_of_reports_ends_with_the_last_one_stored(cli, daemon, tmp_path):
    """200,000 reports: the latest arrives while the job still runs (the worker passes it on
    within a moment), and the last of a storm that ends with the job is the one stored."""
    daemon.start("--workers", "2")
    marker = tmp_path / "go-on"
    waiting = cli.submit(
        "--call", "tests.test_progress_limits:storm", "--arg", "n=200000", "--arg", f"marker={marker}"
    )
    ending = cli.submit("--call", "tests.test_progress_limits:storm", "--arg", "n=200000")
    wait_until(lambda: progress_of(cli, waiting) == ("running", 1.0, "200000/200000"), timeout=60)
    wait_until(lambda: cli.job(ending)["status"] == "succeeded", timeout=60)
    assert progress_of(cli, ending) == ("succeeded", 1.0, "200000/200000")
    marker.touch()
    wait_until(lambda: cli.job(waiting)["status"] == "succeeded", timeout=30)
    assert cli.job(waiting)["progress_message"] == "200000/200000"


def test_shell_lines_storm_long_line_and_last_line_before_exit(cli, daemon, tmp_path):
    daemon.start("--workers", "2")
    marker = tmp_path / "go-on"
    storm_script = (
        'i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo "0.5 line $i" > "$JOBRUNNER_PROGRESS"; done; '
        'printf "0.9 %05000d\\n" 7 > "$JOBRUNNER_PROGRESS"; '
        f"while [ ! -e {marker} ]; do sleep 0.02; done"
    )
    stormy = cli.submit("--", "sh", "-c", storm_script)
    last = cli.submit("--", "sh", "-c", 'echo "0.8 final words" > "$JOBRUNNER_PROGRESS"')
    wait_until(lambda: progress_of(cli, stormy)[1] == 0.9, timeout=60)
    message = cli.job(stormy)["progress_message"]
    assert len(message) == LIMIT and message == "0" * (LIMIT - 1) + "…"
    # written just before the job exited: passed on before its end, never lost
    wait_until(lambda: cli.job(last)["status"] == "succeeded", timeout=30)
    assert progress_of(cli, last) == ("succeeded", 1.0, "final words")
    marker.touch()
    wait_until(lambda: cli.job(stormy)["status"] == "succeeded", timeout=30)


# ---------------------------------------------------------------- the `jobrunner progress` CLI
def in_job(job_id: int | str, attempt: int | str = 1, fifo: str = "") -> dict[str, str]:
    return {"JOBRUNNER_JOB_ID": str(job_id), "JOBRUNNER_ATTEMPT": str(attempt), "JOBRUNNER_PROGRESS": fifo}


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobrunner: error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    "fraction", ["nan", "NaN", "inf", "-inf", "1e400", "1.5", "150%", "-0.5", "half", "nan%"]
)
def test_progress_refuses_what_is_not_a_fraction(cli, fraction):
    job = cli.submit("--", "true")
    line = one_line_error(run_jobrunner("progress", fraction, "note", env=in_job(job)))
    assert fraction in line or (fraction.startswith("-") and "no such option" in line)
    assert cli.job(job)["progress"] is None


def test_progress_for_an_unknown_or_finished_job_fails_in_one_line(cli, db_path):
    queued = cli.submit("--", "true")
    line = one_line_error(run_jobrunner("progress", "0.5", "note", env=in_job(999)))
    assert "no job with id 999" in line
    line = one_line_error(run_jobrunner("progress", "0.5", "note", env=in_job(queued)))
    assert line.endswith(f"job {queued} is not running (queued)")
    # as a daemon would have claimed it, twice
    sql(db_path, "UPDATE job SET status='running', attempts=2, started_at=? WHERE id=?", (time.time(), queued))
    line = one_line_error(run_jobrunner("progress", "40%", "note", env=in_job(queued, attempt=1)))
    assert line.endswith(f"job {queued} attempt 1 is not running (attempt 2 is)")
    assert cli.job(queued)["progress"] is None  # nothing stored by any of them
    done = run_jobrunner("progress", "40%", "z" * 100_000, env=in_job(queued, attempt=2))
    assert done.returncode == 0, done.stderr
    assert progress_of(cli, queued) == ("running", 0.4, "z" * (LIMIT - 1) + "…")


def test_progress_from_a_shell_outside_the_job_is_not_passed_to_its_worker(cli, daemon, tmp_path):
    """A shell that kept a finished job's environment: the pipe belongs to a worker that runs
    another job now, so the report goes nowhere near it; the database says the job is done."""
    daemon.start("--workers", "1")
    finished = cli.submit("--", "true")
    wait_until(lambda: cli.job(finished)["status"] == "succeeded", timeout=30)
    fifo_file, marker = tmp_path / "fifo-path", tmp_path / "go-on"
    running = cli.submit("--", "sh", "-c", f'printf %s "$JOBRUNNER_PROGRESS" > {fifo_file}.tmp; '
                         f"mv {fifo_file}.tmp {fifo_file}; while [ ! -e {marker} ]; do sleep 0.02; done")  # fmt: skip
    wait_until(fifo_file.exists, timeout=30)
    fifo = fifo_file.read_text()
    assert Path(fifo).exists()
    line = one_line_error(run_jobrunner("progress", "0.5", "stolen", env=in_job(finished, fifo=fifo)))
    assert line.endswith(f"job {finished} is not running (succeeded)")
    assert cli.job(finished)["progress"] is None
    marker.touch()
    wait_until(lambda: cli.job(running)["status"] == "succeeded", timeout=30)
    assert cli.job(running)["progress"] is None  # nothing reached the job the worker ran
