"""`jobrunner submit`: every way a user stores a job, and every bad input refused cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import database_exists, sql


def test_shell_submit_prints_only_the_id(cli, home):
    result = cli("submit", "--", "tar", "czf", "/tmp/a.tgz", "docs")
    assert result.exit_code == 0
    assert result.stdout.strip().isdigit()
    job = cli.job(int(result.stdout))
    assert job["kind"] == "shell"
    assert job["command"] == ["tar", "czf", "/tmp/a.tgz", "docs"]
    assert job["status"] == "queued"
    assert job["cwd"] == str(Path.cwd())
    assert job["name"] == "tar"


def test_ids_increase(cli):
    first = cli.submit("--", "true")
    second = cli.submit("--", "true")
    assert second == first + 1


def test_callable_with_args_and_priority(cli):
    job_id = cli.submit(
        "--call", "tests.jobfuncs:add", "--arg", "month=2026-11", "--arg", "n=5", "--priority", "high"
    )
    job = cli.job(job_id)
    assert job["kind"] == "python"
    assert job["callable"] == "tests.jobfuncs:add"
    assert job["kwargs"] == {"month": "2026-11", "n": 5}
    assert job["priority"] == 7 and job["priority_name"] == "high"
    assert job["name"] == "add"


def test_callable_positional_args_after_dashdash(cli):
    job = cli.job(cli.submit("--call", "tests.jobfuncs:add", "--", "1", "two", '{"a": 1}'))
    assert job["args"] == [1, "two", {"a": 1}]


def test_all_options_are_stored(cli):
    job = cli.job(
        cli.submit("--name", "nightly", "--queue", "reports", "--priority", "3", "--retries", "4",
                   "--timeout", "1h30m", "--backoff", "10s", "--tag", "a,b", "--tag", "c",
                   "--meta", "owner=ops", "--env", "X=1", "--cwd", "/tmp", "--", "echo", "hi")
    )  # fmt: skip
    assert job["name"] == "nightly"
    assert job["queue"] == "reports"
    assert job["priority"] == 3
    assert job["max_retries"] == 4 and job["retries_left"] == 4
    assert job["timeout"] == 5400
    assert job["backoff"]["base"] == 10
    assert job["tags"] == ["a", "b", "c"]
    assert job["metadata"] == {"owner": "ops"}
    assert job["env"] == {"X": "1"}
    assert job["cwd"] == "/tmp"


def test_delayed_submit_is_scheduled(cli):
    job = cli.job(cli.submit("--in", "10m", "--", "true"))
    assert job["status"] == "scheduled"
    from datetime import datetime

    delay = datetime.fromisoformat(job["scheduled_at"]) - datetime.fromisoformat(job["created_at"])
    assert 599 <= delay.total_seconds() <= 601


def test_at_with_offset(cli):
    job = cli.job(cli.submit("--at", "2099-12-01T03:00+01:00", "--", "true"))
    assert job["scheduled_at"] == "2099-12-01T02:00:00.000+00:00"
    assert job["status"] == "scheduled"


TOML = """
[tasks.nightly-report]
callable = "tests.jobfuncs:record"
kwargs = { format = "pdf" }
queue = "reports"
priority = "high"
retries = 3
timeout = "5m"
tags = ["reports"]

[tasks.backup]
command = ["tar", "czf", "/tmp/x.tgz", "."]
"""


def test_submit_named_task_uses_its_defaults(cli, home):
    Path("jobs.toml").write_text(TOML)
    job = cli.job(cli.submit("nightly-report"))
    assert job["task"] == "nightly-report" and job["name"] == "nightly-report"
    assert job["callable"] == "tests.jobfuncs:record"
    assert job["kwargs"] == {"format": "pdf"}
    assert (job["queue"], job["priority"], job["max_retries"], job["timeout"]) == ("reports", 7, 3, 300)
    assert job["tags"] == ["reports"]


def test_cli_options_override_task_defaults(cli, home):
    Path("jobs.toml").write_text(TOML)
    job = cli.job(cli.submit("nightly-report", "--priority", "low", "--arg", "month=2026-11"))
    assert job["priority"] == 2
    assert job["kwargs"] == {"format": "pdf", "month": "2026-11"}


def test_task_from_xdg_config(cli, home):
    config = home / ".config" / "jobrunner"
    config.mkdir(parents=True)
    (config / "jobs.toml").write_text(TOML)
    assert cli.job(cli.submit("backup"))["command"] == ["tar", "czf", "/tmp/x.tgz", "."]


def test_config_option_and_env(cli, home, tmp_path, monkeypatch):
    path = tmp_path / "other.toml"
    path.write_text(TOML)
    result = cli("--config", str(path), "submit", "backup")
    assert result.exit_code == 0
    monkeypatch.setenv("JOBRUNNER_CONFIG", str(path))
    assert cli("submit", "backup").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--priority", "urgent", "--", "true"], "--priority: 'urgent' is not a priority"),
        (["--priority", "12", "--", "true"], "out of range"),
        (["--timeout", "soon", "--", "true"], "--timeout: 'soon' is not a duration"),
        (["--in", "tomorrow", "--", "true"], "--in: 'tomorrow' is not a duration"),
        (["--at", "next week", "--", "true"], "--at: 'next week' is not a time"),
        (["--call", "not a path"], "--call: 'not a path' is not an import path"),
        (["--arg", "novalue", "--call", "a:b"], "--arg expects KEY=VALUE"),
        (["--arg", "x=1", "--", "echo"], "--arg is for Python callables"),
        (["--queue", "bad queue", "--", "true"], "--queue: 'bad queue' is not a queue name"),
        (["--retries", "-1", "--", "true"], "--retries"),
        (["nosuchtask"], "'nosuchtask' is not a task"),
        (["echo", "hi"], "put a shell command after --"),
        (["--queue", "q"], "nothing to run"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(cli, db_path, args, message):
    result = cli("submit", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert not database_exists(db_path)  # nothing written: not even an empty database (no schema)


def test_unknown_task_hint_mentions_dashdash(cli):
    result = cli("submit", "ls")
    assert "jobrunner submit -- ls" in result.stderr


def test_bulk_submit_from_file(cli, home):
    python = json.dumps({"callable": "tests.jobfuncs:add", "kwargs": {"x": 1}})
    lines = [
        json.dumps({"command": ["echo", str(i)], "priority": "high", "tags": ["bulk"]}) for i in range(50)
    ] + [python, "", json.dumps({"command": "echo hi | wc"})]
    Path("jobs.jsonl").write_text("\n".join(lines) + "\n")
    out = cli.ok("submit", "--from-file", "jobs.jsonl")
    ids = [int(x) for x in out.split()]
    assert len(ids) == 52 and ids == list(range(ids[0], ids[0] + 52))
    jobs = cli.json("list", "--limit", "0", "--oldest-first")
    assert [j["id"] for j in jobs] == ids
    assert jobs[0]["command"] == ["echo", "0"] and jobs[0]["priority"] == 7
    assert jobs[50]["kwargs"] == {"x": 1}
    assert jobs[51]["command"] == ["/bin/sh", "-c", "echo hi | wc"]
    assert all(cli.job(i)["events"][0]["to"] == "queued" for i in (ids[0], ids[-1]))


def test_bulk_submit_from_stdin_with_task(cli, home):
    Path("jobs.toml").write_text(TOML)
    data = "\n".join(json.dumps({"task": "nightly-report", "kwargs": {"month": m}}) for m in ("10", "11"))
    ids = cli.ok("submit", "--from-file", "-", input=data).split()
    jobs = [cli.job(int(i)) for i in ids]
    assert [j["kwargs"] for j in jobs] == [{"format": "pdf", "month": "10"}, {"format": "pdf", "month": "11"}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"command": ["true"]}\n{"command": ["true"], "priority": "urgent"}\n',
            "jobs.jsonl:2: priority: 'urgent'",
        ),
        ('{"command": ["true"]}\n{not json}\n', "jobs.jsonl:2: invalid JSON"),
        ("[1, 2]\n", "jobs.jsonl:1: expected a JSON object"),
        (
            '{"command": ["true"], "retires": 3}\n',
            "jobs.jsonl:1: retires: unknown key 'retires' (did you mean 'retries'?)",
        ),
        ('{"task": "nope"}\n', "jobs.jsonl:1: task: unknown task 'nope'"),
        ('{"queue": "x"}\n', "jobs.jsonl:1: command: a job needs a command"),
        ("\n\n", "no jobs in it"),
    ],
)
def test_bulk_bad_line_names_file_and_line_and_writes_nothing(cli, db_path, home, content, message):
    Path("jobs.jsonl").write_text(content)
    result = cli("submit", "--from-file", "jobs.jsonl")
    assert result.exit_code == 2
    assert message in result.stderr, result.stderr
    assert not database_exists(db_path)  # nothing written: not even an empty database (no schema)


def test_bulk_missing_file(cli):
    result = cli("submit", "--from-file", "nope.jsonl")
    assert result.exit_code == 2
    assert "cannot read nope.jsonl" in result.stderr


def test_bulk_ten_thousand_in_one_transaction(cli, home, store):
    Path("big.jsonl").write_text("".join(json.dumps({"command": ["true"]}) + "\n" for _ in range(10_000)))
    assert len(cli.ok("submit", "-f", "big.jsonl").split()) == 10_000
    assert cli.count("queued") == 10_000
    events = sql(store, "SELECT COUNT(*) FROM event")[0][0]
    assert events == 10_000
