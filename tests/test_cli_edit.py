"""`jobrunner edit` and `jobrunner retry ID --edit` (issue 18): every field, the words of submit,
refusals that change nothing, history naming each change, and $EDITOR played by a script."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import sql


def make_dead(store, job_id: int, error: str = "exit code 1") -> None:
    sql(store, "UPDATE job SET status='dead', attempts=1, finished_at=?, error=? WHERE id=?",
        (time.time(), error, job_id))  # fmt: skip


def history(cli, job_id: int) -> list[str]:
    return [e["message"] for e in cli.job(job_id)["events"]]


def snapshot(store, job_id: int) -> list[tuple]:
    """Everything stored about a job: its row and its history."""
    return sql(store, "SELECT * FROM job WHERE id=?", (job_id,)) + sql(
        store, "SELECT id, at, to_status, message FROM event WHERE job_id=? ORDER BY id", (job_id,)
    )


EVERY_FIELD = [
    # (options, key in `show --json`, value after, words in the history)
    (["--name", "renamed"], "name", "renamed", "name add → renamed"),
    (["--queue", "reports"], "queue", "reports", "queue default → reports"),
    (["--priority", "high"], "priority", 7, "priority normal → high"),
    (["--retries", "5"], "max_retries", 5, "retries 0 → 5"),
    (["--timeout", "10m"], "timeout", 600.0, "timeout none → 10m"),
    (["--backoff", "5s"], "backoff", {"base": 5.0, "factor": 2.0, "max": 300.0}, "backoff 1s/x2/5m → 5s/x2/5m"),
    (["--tag", "a,b", "--tag", "c"], "tags", ["a", "b", "c"], "tags none → a, b, c"),
    (["--meta", "owner=ann"], "metadata", {"owner": "ann"}, "metadata: owner=ann added"),
    (["--env", "TOKEN=s3cret"], "env", {"TOKEN": "s3cret"}, "env: TOKEN added"),
    (["--arg", "b=5", "--arg", "c=[1]"], "kwargs", {"a": 1, "b": 5, "c": [1]}, "kwargs: b 2 → 5, c=[1] added"),
    (["--call", "tests.jobfuncs:sleep_for"], "callable", "tests.jobfuncs:sleep_for", "callable tests.jobfuncs:add → tests.jobfuncs:sleep_for"),
    (["--", "echo", "hi"], "command", ["echo", "hi"], "command none → echo hi"),
    (["--memory", "1G"], "memory", 1 << 30, "memory none → 1G"),
    (["--cpu-time", "10m"], "cpu_time", 600.0, "cpu_time none → 10m"),
    (["--max-log-size", "5M"], "max_log_size", 5 << 20, "max_log_size none → 5M"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "key", "value", "words"), EVERY_FIELD, ids=[c[1] for c in EVERY_FIELD])
def test_edit_every_field_and_the_history_says_old_and_new(cli, options, key, value, words):
    job_id = cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=1", "--arg", "b=2")
    out = cli.ok("edit", str(job_id), *options)
    assert out.startswith(f"job {job_id}: ") and words in out
    job = cli.job(job_id)
    assert job[key] == value and job["status"] == "queued"
    assert history(cli, job_id)[-1] == f"edited: {out.strip().split(': ', 1)[1]}"
    assert cli.ok("edit", str(job_id), *options).strip() == f"job {job_id}: nothing changed"
    assert len(history(cli, job_id)) == 2  # an edit that changes nothing records nothing


def test_edit_cwd_and_a_new_command_keep_the_rest(cli, tmp_path):
    job_id = cli.submit("--name", "build", "--retries", "2", "--", "make")
    cli.ok("edit", str(job_id), "--cwd", str(tmp_path), "--", "make", "all")
    job = cli.job(job_id)
    assert job["cwd"] == str(tmp_path) and job["command"] == ["make", "all"]
    assert job["name"] == "build" and job["max_retries"] == 2 and job["callable"] is None
    assert cli.ok("edit", str(job_id), "--call", "tests.jobfuncs:add").strip().endswith("callable none → tests.jobfuncs:add")
    job = cli.job(job_id)
    assert job["kind"] == "python" and job["command"] is None


@pytest.mark.parametrize("option", [["--timeout", "abc"], ["--timeout", "0"], ["--priority", "urgent"],
                                    ["--retries", "5000"], ["--queue", "no spaces"], ["--tag", "a b"],
                                    ["--backoff", "-1"], ["--call", "not a path"], ["--cwd", "/nonexistent/dir"],
                                    ["--arg", "x"], ["--env", "=v"], ["--name", " "], ["--memory", "12X"],
                                    ["--cpu-time", "0"], ["--max-log-size", "1"]])  # fmt: skip
def test_a_bad_value_gets_submits_words_exit_2_and_nothing_changes(cli, store, option):
    job_id = cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=1")
    before = snapshot(store, job_id)
    submitted = cli("submit", "--call", "tests.jobfuncs:add", *option)
    edited = cli("edit", str(job_id), *option)
    assert edited.exit_code == submitted.exit_code
    if submitted.exit_code == 0:  # a database URL: the daemon may run elsewhere, neither looks here
        assert option[0] == "--cwd" and "://" in str(store.target)
        return
    assert edited.exit_code == 2
    assert edited.stderr == submitted.stderr and len(edited.stderr.splitlines()) == 1
    assert edited.stderr.startswith("jobrunner: error: ")
    assert snapshot(store, job_id) == before


def test_arg_on_a_shell_job_is_refused_as_submit_refuses_it(cli, store):
    job_id = cli.submit("--", "true")
    result = cli("edit", str(job_id), "--arg", "a=1")
    assert result.exit_code == 2 and result.stderr == cli("submit", "--arg", "a=1", "--", "true").stderr


@pytest.mark.parametrize("status", ["running", "succeeded"])
def test_a_running_or_succeeded_job_is_refused_in_one_line(cli, store, status):
    job_id = cli.submit("--", "sleep", "1")
    sql(store, "UPDATE job SET status=?, attempts=1 WHERE id=?", (status, job_id))
    before = snapshot(store, job_id)
    result = cli("edit", str(job_id), "--priority", "high")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"jobrunner: error: job {job_id} is {status}: only a job that has not started (queued, scheduled, "
        "waiting, retrying) or a dead or cancelled one can be edited"
    )
    assert snapshot(store, job_id) == before
    missing = cli("edit", "999", "--priority", "high")
    assert missing.exit_code == 2 and "no job with id 999" in missing.stderr


@pytest.mark.parametrize("status", ["scheduled", "waiting", "retrying", "dead", "cancelled"])
def test_jobs_not_started_and_dead_or_cancelled_ones_can_be_edited(cli, store, status):
    job_id = cli.submit("--", "true")
    sql(store, "UPDATE job SET status=? WHERE id=?", (status, job_id))
    cli.ok("edit", str(job_id), "--queue", "later")
    job = cli.job(job_id)
    assert job["queue"] == "later" and job["status"] == status


def test_env_values_never_reach_the_history_or_the_output(cli, store):
    job_id = cli.submit("--env", "TOKEN=first-secret", "--", "true")
    out = cli.ok("edit", str(job_id), "--env", "TOKEN=second-secret", "--env", "MORE=third-secret")
    assert out.strip() == f"job {job_id}: env: TOKEN changed, MORE added"
    stored = json.dumps(sql(store, "SELECT message, details FROM event WHERE job_id=?", (job_id,)))
    assert "secret" not in stored and "***" in stored
    assert cli.job(job_id)["env"] == {"TOKEN": "second-secret", "MORE": "third-secret"}


def test_edit_json_and_the_python_api(cli, store):
    from jobrunner.editing import edit, edit_and_retry
    from jobrunner.errors import UsageError

    job_id = cli.submit("--", "true")
    data = cli.json("edit", str(job_id), "--priority", "critical")
    assert data == {"id": job_id, "status": "queued", "changed": ["priority"],
                    "message": "priority normal → critical", "retried": []}  # fmt: skip
    assert edit(job_id, timeout="1h", tags=["x"]) == {
        "id": job_id, "status": "queued", "changed": ["timeout", "tags"], "message": "timeout none → 1h; tags none → x",
    }  # fmt: skip
    assert edit(job_id, timeout=None)["changed"] == ["timeout"]  # None: back to the default
    with pytest.raises(UsageError, match=r"^priority: 'urgent' is not a priority"):
        edit(job_id, priority="urgent")
    with pytest.raises(UsageError, match="retires: unknown key 'retires' \\(did you mean 'retries'\\?\\)"):
        edit(job_id, retires=3)
    with pytest.raises(UsageError, match="cannot be edited"):
        edit(job_id, unique_key="k")
    make_dead(store, job_id)
    done = edit_and_retry(job_id, queue="again")
    assert done["status"] == "queued" and done["retried"][0]["from"] == "dead"
    assert cli.job(job_id)["queue"] == "again"


# -- retry --edit: $EDITOR played by a script that changes the JSON it is given


@pytest.fixture
def editor(tmp_path, monkeypatch):
    """Set EDITOR to a script doing `action` (python code over `fields`, the parsed file, or
    `text`, the raw file) and recording that it ran; returns a function to set the action."""
    script = tmp_path / "editor.py"
    ran = tmp_path / "editor-ran"

    def use(action: str) -> Path:
        script.write_text(
            f"#!{sys.executable}\nimport json, pathlib, subprocess, sys\n"
            f"path = pathlib.Path(sys.argv[1])\ntext = path.read_text()\nfields = json.loads(text)\n"
            f"pathlib.Path({str(ran)!r}).write_text(text)\n{action}\n"
        )
        script.chmod(0o755)
        return ran

    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(script))
    return use


def test_retry_edit_stores_the_edited_fields_and_retries(cli, store, editor):
    job_id = cli.submit("--name", "report", "--retries", "1", "--", "./report.sh", "--month", "11")
    make_dead(store, job_id)
    ran = editor(
        "fields['queue'] = 'reports'; fields['priority'] = 'high'; fields['timeout'] = '10m'\n"
        "fields['command'] = ' '.join(fields['command']).replace('11', '12'); path.write_text(json.dumps(fields))"
    )
    out = cli.ok("retry", str(job_id), "--edit")
    shown = json.loads(ran.read_text())
    assert shown["command"] == ["./report.sh", "--month", "11"] and shown["name"] == "report" and shown["retries"] == 1
    assert "unique_key" not in shown and "on_conflict" not in shown
    assert f"job {job_id}: dead -> queued" in out
    job = cli.job(job_id)
    assert job["status"] == "queued" and job["queue"] == "reports" and job["priority"] == 7
    assert job["timeout"] == 600 and job["command"] == ["/bin/sh", "-c", "./report.sh --month 12"]
    assert history(cli, job_id)[-2:] == [
        "edited: command ./report.sh --month 11 → ./report.sh --month 12; queue default → reports; "
        "priority normal → high; timeout none → 10m",
        "retried by user",
    ]


@pytest.mark.parametrize(
    ("action", "code", "words"),
    [
        ("path.write_text(text[:-5])", 2, "job-{id}.json: invalid JSON: "),
        ("path.write_text('[1, 2]')", 2, "job-{id}.json: expected a JSON object, got list"),
        ("fields['priority'] = 'urgent'; path.write_text(json.dumps(fields))", 2,
         "job-{id}.json: priority: 'urgent' is not a priority: use low, normal, high, critical or 0-9"),
        ("fields['retires'] = 3; path.write_text(json.dumps(fields))", 2,
         "job-{id}.json: retires: unknown key 'retires' (did you mean 'retries'?)"),
        ("fields['unique_key'] = 'k'; path.write_text(json.dumps(fields))", 2, "job-{id}.json: unique_key: cannot be edited"),
        ("sys.exit(3)", 1, "the editor (" ),
        ("subprocess.run([sys.executable, '-m', 'jobrunner', 'edit', sys.argv[1][-7:-5].strip('-'), '--name', 'x'],"
         " check=True, capture_output=True); fields['queue'] = 'q'; path.write_text(json.dumps(fields))", 2,
         "changed while it was being edited (name)"),
    ],
    ids=["broken-json", "not-an-object", "bad-value", "unknown-key", "unique-key", "editor-fails", "changed-meanwhile"],
)  # fmt: skip
def test_retry_edit_refuses_a_bad_file_in_one_line_and_leaves_the_job(cli, store, editor, action, code, words):
    for _ in range(9):  # two-digit ids, for the changed-meanwhile editor to read from its file's name
        cli.submit("--", "true")
    job_id = cli.submit("--", "false")
    make_dead(store, job_id)
    editor(action)
    before = snapshot(store, job_id)
    result = cli("retry", str(job_id), "--edit")
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobrunner: error: ") and words.format(id=job_id) in lines[0]
    after = snapshot(store, job_id)
    if "changed-meanwhile" not in words and "while" not in words:
        assert after == before
    else:  # the other edit went in; this one did not
        assert cli.job(job_id)["name"] == "x" and cli.job(job_id)["queue"] == "default"
    assert cli.job(job_id)["status"] == "dead"


def test_retry_edit_of_a_job_that_cannot_be_retried_opens_no_editor(cli, store, editor):
    job_id = cli.submit("--", "true")
    ran = editor("pass")
    result = cli("retry", str(job_id), "--edit")
    assert result.exit_code == 2 and f"nothing retried: job {job_id} is queued" in result.stderr
    assert not ran.exists()
    assert cli("retry", str(job_id), "7", "--edit").exit_code == 2  # one job at a time


def test_an_unchanged_file_retries_the_job_as_it_was(cli, store, editor):
    job_id = cli.submit("--", "false")
    make_dead(store, job_id)
    editor("pass")
    assert cli.ok("retry", str(job_id), "--edit").splitlines() == [
        f"job {job_id}: nothing changed", f"job {job_id}: dead -> queued"
    ]


def test_edit_with_no_option_opens_the_editor(cli, store, editor):
    job_id = cli.submit("--call", "tests.jobfuncs:add", "--arg", "a=1", "--env", "K=v")
    editor("fields['kwargs']['a'] = 2; del fields['env']; path.write_text(json.dumps(fields))")
    assert cli.ok("edit", str(job_id)).strip() == f"job {job_id}: kwargs: a 1 → 2; env: K removed"
    job = cli.job(job_id)
    assert job["kwargs"] == {"a": 2} and job["env"] == {} and job["status"] == "queued"


def test_help_of_every_new_option_says_what_it_does(cli):
    for command, options in (("edit", ["--arg", "--tag", "--env", "--call"]),
                             ("retry", ["--edit", "--status", "--queue", "--since", "--dry-run"]),
                             ("cancel", ["--status", "--queue", "--tag", "--search", "--dry-run"]),
                             ("purge", ["--queue", "--tag", "--search", "--dry-run"])):  # fmt: skip
        text = cli.ok(command, "--help")
        for option in options:
            line = next(line for line in text.splitlines() if line.strip().startswith(option) or f" {option} " in line)
            assert len(line.split(option, 1)[1].split()) >= 3, (command, option, line)
    assert "submit --from-file" in cli.ok("dlq", "export", "--help")


def test_ctrl_c_in_the_editor_belongs_to_the_editor(cli, store, editor):
    """vi takes Ctrl-C for itself: jobrunner, in the same process group, must not die of it."""
    job_id = cli.submit("--", "false")
    make_dead(store, job_id)
    editor(
        "import os, signal\n"
        "assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the editor's own Ctrl-C works\n"
        "os.kill(os.getppid(), signal.SIGINT)  # what the terminal sends the whole foreground group\n"
        "fields['queue'] = 'after-ctrl-c'; path.write_text(json.dumps(fields))"
    )
    assert f"job {job_id}: dead -> queued" in cli.ok("retry", str(job_id), "--edit")
    assert cli.job(job_id)["queue"] == "after-ctrl-c"
