"""Resource limits (issue 18): memory, cpu_time and max_log_size, from every door to the daemon.

What a user checks: a job over its memory or CPU time fails with that reason while the job next
to it succeeds, a chatty job's log stays within max_log_size with its head and tail, `show`
prints the limits, and a bad value is refused in one line with nothing written.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

import pytest

from jobrunner.daemon.logcap import LogCap
from jobrunner.domain import edits
from jobrunner.domain.jobspec import build_spec
from jobrunner.domain.sizes import format_size, parse_size
from jobrunner.errors import UsageError
from tests.conftest import sql, wait_until

PY = sys.executable
FINISHED = ("succeeded", "dead", "cancelled")


def ended(cli, *ids: int) -> bool:
    return all(cli.job(job_id)["status"] in FINISHED for job_id in ids)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return False


# ---------------------------------------------------------------- the door
def test_sizes_read_as_ulimit_and_systemd_read_them():
    assert parse_size("2G") == 2 << 30 and parse_size("200M") == 200 << 20 and parse_size("512k") == 512 << 10
    assert parse_size("1.5G") == 1536 << 20 and parse_size("50MiB") == 50 << 20 and parse_size(4096) == 4096
    assert [format_size(n) for n in (2 << 30, 200 << 20, 1536 << 20, 1000)] == ["2G", "200M", "1536M", "1000"]
    for bad in ("2X", "-1", "", "1e3", True, float("nan"), "9999999999T"):
        with pytest.raises(ValueError):
            parse_size(bad)


@pytest.mark.parametrize(("args", "message"), [
    (["--memory", "2X"], '--memory: \'2X\' is not a size: use a number of bytes or units like "512K", "200M", "2G"'),
    (["--memory", "512"], "--memory: '512' is less than 1M"),
    (["--cpu-time", "soon"], "--cpu-time: 'soon' is not a duration"),
    (["--cpu-time", "0.5s"], "--cpu-time: '0.5s' is less than 1s (CPU time is counted in whole seconds)"),
    (["--max-log-size", "100"], "--max-log-size: '100' is less than 1K"),
    (["--max-log-size", "lots"], "--max-log-size: 'lots' is not a size"),
])  # fmt: skip
def test_a_bad_limit_is_refused_in_one_line_with_nothing_written(cli, db_path, args, message):
    result = cli("submit", *args, "--", "true")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobrunner: error: " + message), result.stderr
    cli.submit("--", "true")  # the database exists now: the refused submit left no job behind
    assert cli.count() == 1


def test_every_door_refuses_a_bad_limit_in_the_same_words(cli, db_path, tmp_path):
    lines = tmp_path / "jobs.jsonl"
    lines.write_text('{"command": ["true"]}\n{"command": ["true"], "memory": "lots"}\n')
    result = cli("submit", "--from-file", str(lines))
    assert result.exit_code == 2
    assert f"{lines}:2: memory: 'lots' is not a size" in result.stderr
    assert cli("submit", "--max-log-size", "5M", "--from-file", str(lines)).exit_code == 2  # per line, not per file

    Path("jobs.toml").write_text('[tasks.crunch]\ncommand = ["true"]\ncpu_time = "0.2s"\n')
    Path("jobs.toml").chmod(0o600)
    refused = cli("submit", "--", "true")  # a command that needs no task warns about the broken one
    assert "jobs.toml: tasks.crunch.cpu_time: '0.2s' is less than 1s" in refused.stderr

    import jobrunner

    with pytest.raises(UsageError, match="max_log_size: '1' is less than 1K"):
        jobrunner.submit(["true"], max_log_size="1", db=str(db_path))

    from tests.servehelpers import client_for

    with client_for(db_path) as api:
        response = api.post("/api/jobs", json={"command": ["true"], "memory": "2X"})
        assert response.status_code == 400
        assert response.json()["error"].startswith("memory: '2X' is not a size")
    assert cli.count() == 1  # only the plain submit above


def test_every_door_stores_the_limits_and_show_prints_them(cli, db_path, tmp_path):
    """CLI options, a --from-file line, a config task, the Python API and HTTP: the same limits."""
    by_cli = cli.submit("--memory", "2G", "--cpu-time", "10m", "--max-log-size", "50M", "--", "true")
    lines = tmp_path / "jobs.jsonl"
    lines.write_text('{"command": ["true"], "memory": "2G", "cpu_time": "10m", "max_log_size": "50M"}\n')
    [by_file] = [int(n) for n in cli.ok("submit", "--from-file", str(lines)).split()]
    Path("jobs.toml").write_text('[tasks.crunch]\ncommand = ["true"]\nmemory = "2G"\ncpu_time = "10m"\n'
                                 'max_log_size = "50M"\n')  # fmt: skip
    Path("jobs.toml").chmod(0o600)
    by_task = cli.submit("crunch")
    by_task_override = cli.submit("crunch", "--memory", "1G")

    import jobrunner

    by_api = jobrunner.submit(["true"], memory="2G", cpu_time=600, max_log_size=50 << 20, db=str(db_path))
    from tests.servehelpers import client_for

    with client_for(db_path) as api:
        response = api.post("/api/jobs", json={"command": ["true"], "memory": "2G", "cpu_time": "10m",
                                               "max_log_size": "50M"})  # fmt: skip
        by_http = response.json()["id"]
        assert api.get(f"/api/jobs/{by_http}").json() == cli.job(by_http)
    for job_id in (by_cli, by_file, by_task, by_api, by_http):
        job = cli.job(job_id)
        assert (job["memory"], job["cpu_time"], job["max_log_size"]) == (2 << 30, 600, 50 << 20), job_id
    assert cli.job(by_task_override)["memory"] == 1 << 30
    plain = cli.job(cli.submit("--", "true"))
    assert (plain["memory"], plain["cpu_time"], plain["max_log_size"]) == (None, None, None)
    assert all("memory" in job and "max_log_size" in job for job in cli.json("list"))
    text = cli.ok("show", str(by_cli))
    assert "limits     memory 2G, cpu time 10m, log 50M" in text
    assert "limits" not in cli.ok("show", str(plain["id"]))


def test_an_exported_job_reads_back_with_its_limits(cli):
    job = cli.job(cli.submit("--memory", "1536M", "--cpu-time", "90s", "--max-log-size", "1000000", "--", "true"))
    line = edits.for_user(edits.stored_fields(job, edits.export_keys()), defaults=False)
    assert (line["memory"], line["cpu_time"], line["max_log_size"]) == ("1536M", 90, 1000000)
    again = build_spec(line)
    assert (again.memory_limit, again.cpu_time_limit, again.max_log_size) == (1536 << 20, 90.0, 1000000)


def test_doctor_says_how_limits_are_enforced(cli):
    cli.submit("--", "true")
    checks = {c["check"]: (c["level"], c["message"]) for c in json.loads(cli("doctor", "--json").stdout)}
    level, message = checks["limits"]
    assert level == "ok" and message.startswith("resource limits: RLIMIT_AS/RLIMIT_CPU per job process")
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists():  # cgroup v1 (or hybrid without memory)
        assert message == "resource limits: RLIMIT_AS/RLIMIT_CPU per job process (no delegated cgroup v2)"


def test_the_v10_migration_adds_the_limit_columns_to_an_older_database(cli, db_path):
    from jobrunner.store import open_store
    from jobrunner.store.migrations import SCHEMA_VERSION

    job_id = cli.submit("--", "true")
    for column in ("memory_limit", "cpu_time_limit", "max_log_size"):
        sql(db_path, f"ALTER TABLE job DROP COLUMN {column}")
    sql(db_path, "UPDATE meta SET value='9' WHERE key='schema_version'")
    store = open_store(str(db_path))
    store.close()
    assert sql(db_path, "SELECT value FROM meta WHERE key='schema_version'") == [(str(SCHEMA_VERSION),)]
    assert cli.job(job_id)["memory"] is None
    assert cli.job(cli.submit("--memory", "3G", "--", "true"))["memory"] == 3 << 30  # a BIGINT on PostgreSQL


# ---------------------------------------------------------------- the log cap, without a daemon
def _capped(tmp_path: Path, limit: int, output: bytes, name: str = "job.log") -> tuple[bytes, bytes]:
    path = tmp_path / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, b"=== header ===\n")
        cap = LogCap(fd, limit)
        for at in range(0, len(output), 4096):
            os.write(cap.write_fd, output[at : at + 4096])
        recent = cap.finish()
    finally:
        os.close(fd)
    return path.read_bytes(), recent


def test_the_log_cap_keeps_whole_lines_of_the_head_and_the_tail(tmp_path):
    output = b"".join(b"line %06d\n" % n for n in range(20_000))
    log, recent = _capped(tmp_path, 16 << 10, output)
    assert len(log) <= 16 << 10
    head, _, after = log.partition(b"[jobrunner: ")
    assert head.startswith(b"=== header ===\nline 000000\n") and head.endswith(b"\n")
    cut, rest = after.split(b" bytes cut here; max_log_size 16K]\n", 1)
    assert rest.endswith(b"line 019999\n") and rest.startswith(b"line ")
    assert len(head) - len(b"=== header ===\n") + int(cut) + len(rest) == len(output)  # nothing lost unsaid
    assert recent.endswith(b"line 019999\n")
    small, _ = _capped(tmp_path, 16 << 10, b"just this\n", "small.log")
    assert small == b"=== header ===\njust this\n"  # under the limit: as written


def test_a_retry_appends_within_what_the_log_has_left(tmp_path):
    output = b"x" * 100_000
    path = tmp_path / "job.log"
    for attempt in (1, 2, 3):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(fd, b"=== attempt %d ===\n" % attempt)
        cap = LogCap(fd, 8192)
        os.write(cap.write_fd, output[:60_000])
        os.write(cap.write_fd, output[60_000:])
        cap.finish()
        os.close(fd)
    log = path.read_bytes()
    assert log.count(b"cut here") == 3 and log.startswith(b"=== attempt 1 ===\nxxx")
    assert len(log) <= 8192 + 2 * 100  # a full log still takes each later attempt's header and note


# ---------------------------------------------------------------- a real daemon
@pytest.mark.slow
def test_a_job_over_its_memory_limit_fails_with_the_reason_while_its_neighbour_succeeds(cli, daemon):
    grab = "x = bytearray(500_000_000); print('held', len(x))"
    limited = cli.submit("--memory", "200M", "--retries", "1", "--backoff", "0.1s", "--", PY, "-c", grab)
    neighbour = cli.submit("--", PY, "-c", grab)
    in_python = cli.submit("--memory", "200M", "--call", "tests.limitfuncs:allocate", "--arg", "megabytes=500")
    after_it = cli.submit("--call", "tests.limitfuncs:own_limits")  # the same worker, unlimited again
    within = cli.submit("--memory", "300M", "--call", "tests.limitfuncs:own_limits")
    daemon.start("--workers", "1")
    wait_until(lambda: ended(cli, limited, neighbour, in_python, after_it, within), timeout=90)

    job = cli.job(limited)
    assert job["status"] == "dead" and job["attempts"] == 2  # the retry policy had its say
    assert job["error"] == "memory limit 200M exceeded (exit code 1)"
    messages = [event["message"] for event in cli.job(limited)["events"]]
    assert any(m.startswith("memory limit 200M exceeded (exit code 1); retry 1/1") for m in messages), messages
    assert "MemoryError" in Path(job["log_path"]).read_text()
    assert cli.job(neighbour)["status"] == "succeeded"
    assert "held 500000000" in Path(cli.job(neighbour)["log_path"]).read_text()

    job = cli.job(in_python)
    assert job["status"] == "dead" and job["error"] == "memory limit 200M exceeded (MemoryError)"
    assert "MemoryError" in Path(job["log_path"]).read_text()
    unlimited = cli.job(after_it)["result"]
    assert unlimited["as"] == resource.RLIM_INFINITY and unlimited["cpu"] == resource.RLIM_INFINITY
    limited_here = cli.job(within)
    assert limited_here["status"] == "succeeded" and limited_here["result"]["as"] == 300 << 20
    assert limited_here["result"]["ppid"] == unlimited["pid"]  # a child of the worker, which stays unlimited
    assert limited_here["progress_message"] == "half way"  # job.report() from the child reached the daemon


@pytest.mark.slow
def test_cpu_time_exceeded_is_recorded_with_its_reason(cli, daemon, tmp_path):
    spin = cli.submit("--cpu-time", "1s", "--", PY, "-c", "while True: pass")
    through_a_shell = cli.submit("--cpu-time", "1s", "--", "sh", "-c", f"{PY} -c 'while True: pass'; exit $?")
    in_python = cli.submit("--cpu-time", "1", "--call", "tests.limitfuncs:burn_cpu")
    marker = tmp_path / "child.pid"
    stopped = cli.submit("--memory", "300M", "--timeout", "1s", "--call", "tests.jobfuncs:sleep_for",
                         "--arg", "seconds=300", "--arg", f"marker={marker}")  # fmt: skip
    daemon.start("--workers", "2")
    wait_until(lambda: ended(cli, spin, through_a_shell, in_python, stopped), timeout=90)
    assert cli.job(spin)["error"] == "cpu time limit 1s exceeded (killed by signal 24 (SIGXCPU))"
    assert cli.job(through_a_shell)["error"] == "cpu time limit 1s exceeded (exit code 152)"
    assert cli.job(in_python)["error"] == "cpu time limit 1s exceeded (killed by signal 24 (SIGXCPU))"
    assert all(cli.job(i)["status"] == "dead" for i in (spin, through_a_shell, in_python))
    # a limited Python job runs in a child of its worker: a timeout still ends it
    assert cli.job(stopped)["error"] == "timed out after 1s"
    wait_until(lambda: not alive(int(marker.read_text())), timeout=10)


@pytest.mark.slow
def test_a_log_stays_within_max_log_size_keeping_head_and_tail(cli, daemon, tmp_path):
    Path("jobs.toml").write_text('[daemon]\nmax_log_size = "16K"\n')  # for jobs that set none
    Path("jobs.toml").chmod(0o600)
    marker = tmp_path / "go"
    live = cli.submit("--max-log-size", "8K", "--", "sh", "-c",
                      f"echo first line; while [ ! -e {marker} ]; do sleep 0.02; done; seq 1 100000")  # fmt: skip
    default = cli.submit("--", "seq", "1", "100000")
    in_python = cli.submit("--max-log-size", "8K", "--call", "tests.limitfuncs:print_lines", "--arg", "count=50000")
    quiet = cli.submit("--max-log-size", "8K", "--", "echo", "short and sweet")
    daemon.start("--workers", "2")
    wait_until(lambda: ended(cli, default, in_python, quiet), timeout=60)

    log = Path(cli.job(live)["log_path"])  # its head is in the file while it runs: logs --follow shows it
    wait_until(lambda: log.exists() and b"first line\n" in log.read_bytes(), timeout=20)
    assert cli.job(live)["status"] == "running"
    marker.touch()
    wait_until(lambda: ended(cli, live), timeout=60)

    for job_id, limit, last in ((live, 8 << 10, b"100000\n"), (default, 16 << 10, b"100000\n"),
                                (in_python, 8 << 10, b"line 049999\n")):  # fmt: skip
        job = cli.job(job_id)
        assert job["status"] == "succeeded", job
        data = Path(job["log_path"]).read_bytes()
        assert len(data) <= limit, (job_id, len(data))
        assert data.startswith(b"=== jobrunner: job %d attempt 1 started" % job_id)
        assert data.endswith(last) and data.count(b" bytes cut here; max_log_size ") == 1
    assert b"first line\n" in Path(cli.job(live)["log_path"]).read_bytes()
    assert b"line 000000\n" in Path(cli.job(in_python)["log_path"]).read_bytes()
    assert cli.job(default)["max_log_size"] is None  # the daemon's default is the daemon's, not the job's
    assert Path(cli.job(quiet)["log_path"]).read_bytes().endswith(b"===\nshort and sweet\n")
    assert cli.ok("logs", str(quiet)).endswith("short and sweet\n")
