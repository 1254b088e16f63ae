"""Unique keys (issue 18): at most one unfinished job holds a key, because the database's partial
unique index says so, whoever submits at once; `--on-conflict` settles a submit that finds the
key held; a finished job frees it. Every test runs on the backend the run chose (db_path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobrunner import submit
from jobrunner.errors import KeyHeldError, UsageError
from tests.conftest import ROOT, sql, wait_until


def _holders(db_path, key: str) -> list[tuple[int, str]]:
    return sql(db_path, "SELECT id, status FROM job WHERE unique_key = ? ORDER BY id", (key,))


def _submit_at_once(db_path, count: int, *args: str) -> list[subprocess.CompletedProcess]:
    """`count` real `jobrunner submit ... -- true` processes started together."""
    env = {**os.environ, "JOBRUNNER_DB": str(db_path), "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "jobrunner", "submit", *args, "--", "true"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        for _ in range(count)
    ]  # fmt: skip
    try:
        return [subprocess.CompletedProcess(p.args, p.wait(timeout=60), *p.communicate()) for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_eight_processes_with_one_key_make_one_job(db_path):
    results = _submit_at_once(db_path, 8, "--unique-key", "report:2026-11")
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    ids = {int(r.stdout) for r in results}
    assert len(ids) == 1  # every process printed the same id
    assert _holders(db_path, "report:2026-11") == [(ids.pop(), "queued")]
    assert sql(db_path, "SELECT COUNT(*) FROM job")[0][0] == 1


def test_eight_replacing_processes_leave_one_unfinished_job(db_path):
    results = _submit_at_once(db_path, 8, "--unique-key", "k", "--on-conflict", "replace")
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    statuses = [status for _, status in _holders(db_path, "k")]
    assert len(statuses) == 8 and statuses.count("queued") == 1 and statuses.count("cancelled") == 7


def test_reuse_is_the_default_and_prints_the_holders_id(cli):
    first = cli.submit("--unique-key", "k", "--", "true")
    result = cli("submit", "--unique-key", "k", "--", "echo", "other")
    assert result.exit_code == 0 and int(result.stdout) == first
    assert f"job {first} holds unique key 'k'" in result.stderr
    assert cli.submit("--unique-key", "k", "--on-conflict", "reuse", "--", "true") == first
    assert cli.count() == 1
    assert cli.submit("--unique-key", "other", "--", "true") != first  # another key, another job


def test_reject_exits_2_naming_the_holder_and_stores_nothing(cli):
    first = cli.submit("--unique-key", "k", "--", "true")
    result = cli("submit", "--unique-key", "k", "--on-conflict", "reject", "--", "true")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"jobrunner: error: unique key 'k' is held by job {first} (queued)")
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli.count() == 1


def test_replace_cancels_the_waiting_job_and_submits(cli):
    old = cli.submit("--unique-key", "k", "--in", "1h", "--", "true")  # scheduled: it has not started
    dependent = cli.submit("--after", str(old), "--", "true")
    result = cli("submit", "--unique-key", "k", "--on-conflict", "replace", "--", "echo", "new")
    assert result.exit_code == 0
    new = int(result.stdout)
    assert new != old and f"cancelled job {old}" in result.stderr
    replaced = cli.job(old)
    assert replaced["status"] == "cancelled" and "replaced" in replaced["error"]
    assert replaced["events"][-1]["to"] == "cancelled"
    assert cli.job(dependent)["status"] == "cancelled"  # as a cancel would: it cannot run after it
    job = cli.job(new)
    assert (job["status"], job["unique_key"], job["command"]) == ("queued", "k", ["echo", "new"])


def test_replace_refuses_a_running_job(cli, store):
    running = cli.submit("--unique-key", "k", "--", "true")
    sql(store, "UPDATE job SET status='running', attempts=1, started_at=? WHERE id=?", (1.0, running))
    result = cli("submit", "--unique-key", "k", "--on-conflict", "replace", "--", "true")
    assert result.exit_code == 2 and result.stdout == ""
    assert f"held by job {running}, which is running: not replaced" in result.stderr
    assert cli.count() == 1 and cli.job(running)["status"] == "running"


@pytest.mark.parametrize("status", ["succeeded", "dead", "cancelled"])
def test_the_key_is_free_again_once_the_job_ended(cli, store, status):
    first = cli.submit("--unique-key", "k", "--", "true")
    if status == "cancelled":
        cli.ok("cancel", str(first))
    else:
        sql(store, "UPDATE job SET status=?, finished_at=? WHERE id=?", (status, 1.0, first))
    second = cli.submit("--unique-key", "k", "--on-conflict", "reject", "--", "true")
    assert second != first
    assert _holders(store, "k") == [(first, status), (second, "queued")]


def test_a_job_the_daemon_ran_frees_its_key(cli, daemon):
    daemon.start("--workers", "1")
    first = cli.submit("--unique-key", "nightly", "--", "true")
    wait_until(lambda: cli.job(first)["status"] == "succeeded", timeout=20)
    assert cli.submit("--unique-key", "nightly", "--on-conflict", "reject", "--", "true") != first


def test_a_retry_that_would_share_a_key_is_refused(cli):
    first = cli.submit("--unique-key", "k", "--", "true")
    cli.ok("cancel", str(first))
    cli.submit("--unique-key", "k", "--", "true")
    result = cli("retry", str(first))
    assert result.exit_code == 2 and "holds the unique key" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli.job(first)["status"] == "cancelled"


@pytest.mark.parametrize(("args", "message"), [
    (["--unique-key", ""], "--unique-key: must be a non-empty string"),
    (["--unique-key", "x" * 501], "--unique-key: is 501 characters long: at most 500"),
    (["--unique-key", "a\x00b"], "--unique-key: must not contain a NUL byte"),
    (["--unique-key", "k", "--on-conflict", "keep"], "--on-conflict: 'keep' is not one of reuse, replace, reject"),
    (["--on-conflict", "reject"], "--on-conflict: goes with a unique key"),
])  # fmt: skip
def test_bad_values_are_one_line_and_store_nothing(cli, args, message):
    result = cli("submit", *args, "--", "true")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"jobrunner: error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_show_and_json_carry_the_key(cli):
    keyed = cli.submit("--unique-key", "report:2026-11", "--", "true")
    plain = cli.submit("--", "true")
    assert cli.job(keyed)["unique_key"] == "report:2026-11"
    assert {j["id"]: j["unique_key"] for j in cli.json("list")} == {keyed: "report:2026-11", plain: None}
    assert "unique key  report:2026-11" in cli.ok("show", str(keyed))


def test_tui_detail_shows_the_key(cli):
    from rich.console import Console

    from jobrunner.present import detail_fields

    job = cli.job(cli.submit("--unique-key", "k-in-tui", "--", "true"))
    console = Console(record=True, width=100)
    console.print(detail_fields(job, 0.0))
    assert "unique key  k-in-tui" in console.export_text()


def test_bulk_lines_carry_keys(cli, tmp_path: Path):
    held = cli.submit("--unique-key", "held", "--", "true")
    lines = tmp_path / "jobs.jsonl"
    lines.write_text(
        '{"command": "true", "unique_key": "a"}\n'
        '{"command": "true", "unique_key": "a"}\n'  # the same key twice: the first line's job
        '{"command": "true"}\n'
        '{"command": "true", "unique_key": "held"}\n'  # held already: that job's id
        '{"command": "true", "unique_key": "b", "ref": "b"}\n'
        '{"command": "true", "after": ["b"]}\n'
    )
    ids = [int(line) for line in cli.ok("submit", "--from-file", str(lines)).split()]
    assert ids[0] == ids[1] and ids[3] == held and len(set(ids)) == 5
    assert cli.job(ids[5])["after"] == [ids[4]]
    assert cli.count() == 5

    lines.write_text('{"command": "true", "unique_key": "new"}\n{"command": "true", "unique_key": "held", '
                     '"on_conflict": "reject"}\n')  # fmt: skip
    result = cli("submit", "--from-file", str(lines))
    assert result.exit_code == 2 and f"held by job {held}" in result.stderr
    assert cli.count() == 5  # all or nothing


def test_a_task_may_carry_a_key(cli):
    Path("jobs.toml").write_text('[tasks.nightly]\ncommand = "true"\nunique_key = "nightly"\n')
    first = cli.submit("nightly")
    assert cli.submit("nightly") == first
    assert cli("submit", "nightly", "--on-conflict", "reject").exit_code == 2
    assert cli.submit("nightly", "--unique-key", "nightly:2") != first  # an option wins over the task
    Path("jobs.toml").write_text('[tasks.nightly]\ncommand = "true"\nunique_key = 5\n')
    result = cli("submit", "nightly")
    assert result.exit_code == 2 and "tasks.nightly.unique_key: must be a non-empty string" in result.stderr


def test_a_schedule_skips_a_fire_while_its_key_is_held(cli, db_path):
    from datetime import datetime

    from jobrunner.config import load_config
    from jobrunner.daemon.scheduler import Scheduler
    from jobrunner.store import open_store

    Path("jobs.toml").write_text('[tasks.nightly]\ncommand = "true"\nunique_key = "nightly"\n')
    cli.ok("schedule", "add", "n", "--every", "1h", "--max-running", "10", "--task", "nightly")
    first = int(cli.ok("schedule", "run", "n"))
    result = cli("schedule", "run", "n")
    assert result.exit_code == 2 and f"schedule 'n' not run: unique key 'nightly' is held by job {first}" in result.stderr
    due = datetime.fromisoformat(cli.json("schedule", "list")[0]["next_fire_at"]).timestamp()
    store = open_store(str(db_path))
    try:
        assert Scheduler(store, load_config()).run_due(due + 1) == 0  # skipped, not broken
    finally:
        store.close()
    [view] = cli.json("schedule", "list")
    assert view["error"] is None and "unique key 'nightly' is held" in view["last_note"]
    assert cli.count() == 1


def test_the_python_api(cli):
    first = submit(["true"], unique_key="api")
    assert submit(["true"], unique_key="api") == first
    with pytest.raises(KeyHeldError) as refused:
        submit(["true"], unique_key="api", on_conflict="reject")
    assert refused.value.job_id == first and refused.value.status == "queued"
    second = submit(["true"], unique_key="api", on_conflict="replace")
    assert second != first and cli.job(first)["status"] == "cancelled"
    with pytest.raises(UsageError, match="on_conflict: 'sometimes' is not one of"):
        submit(["true"], unique_key="api", on_conflict="sometimes")
    assert cli.count() == 2
