"""jobs.toml: the example loads, and every mistake names the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobrunner.config import load_config
from jobrunner.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads():
    config = load_config(ROOT / "jobs.example.toml")
    assert set(config.tasks) == {"nightly-report", "backup-home", "crunch", "vacuum"}
    assert config.queues["reports"].concurrency == 1
    assert set(config.schedules) == {"nightly", "tick"}
    spec = config.task_spec("nightly-report")
    assert spec.queue == "reports" and spec.priority == 7 and spec.max_retries == 3
    assert spec.backoff.base == 10 and spec.backoff.max == 600 and spec.timeout == 1800
    assert config.task_spec("vacuum").command[:2] == ["/bin/sh", "-c"]
    crunch = config.task_spec("crunch")
    assert (crunch.memory_limit, crunch.cpu_time_limit, crunch.max_log_size) == (2 << 30, 600, 50 << 20)
    assert config.max_log_size == 100 << 20


def test_python_path_is_relative_to_the_config_file(home, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "jobs.toml").write_text('[daemon]\npython_path = ["src", "/opt/app", "~/lib", "src"]\n')
    config = load_config(app / "jobs.toml")
    assert config.python_path == (str(app / "src"), "/opt/app", str(home / "lib"))  # once each, in order
    (app / "jobs.toml").write_text('[daemon]\npython_path = "src"\n')
    assert load_config(app / "jobs.toml").python_path == (str(app / "src"),)
    assert load_config(ROOT / "jobs.example.toml").python_path == (str(ROOT / "src"),)
    assert load_config().python_path == ()  # no config file: nothing added


def test_no_config_is_fine(home):
    config = load_config()
    assert config.path is None and config.tasks == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[tasks.a]\ncommand = ['x']\nretires = 3\n",
            "tasks.a.retires: unknown key 'retires' (did you mean 'retries'?)",
        ),
        ("[tasks.a]\ncommand = ['x']\npriority = 'urgent'\n", "tasks.a.priority: 'urgent' is not a priority"),
        ("[tasks.a]\ncommand = ['x']\ntimeout = 'forever'\n", "tasks.a.timeout: 'forever' is not a duration"),
        ("[tasks.a]\nqueue = 'x'\n", "tasks.a.command: a job needs a command"),
        ("[queues.q]\nconcurrency = 0\n", "queues.q.concurrency: 0 must be a whole number >= 1"),
        ("[schedules.s]\ncommand = ['x']\n", "schedules.s: give exactly one of cron, every or at"),
        ("[schedules.s]\nevery = '5m'\ntask = 'missing'\n", "schedules.s.task: unknown task 'missing'"),
        ("[schedules.s]\ncron = '0 3 * * 8'\ncommand = ['x']\n", "schedules.s.cron: cron field 5 (day-of-week) '8'"),
        ("[schedules.s]\nevery = 'often'\ncommand = ['x']\n", "schedules.s.every: 'often' is not a duration"),
        ("[schedules.s]\nevery = '5m'\ncommand = ['x']\ntimezone = 'Mars/Base'\n", "schedules.s.timezone"),
        ("[schedules.s]\nevery = '5m'\ncommand = ['x']\nmisfire = 'never'\n", "schedules.s.misfire"),
        ("durability = 'sometimes'\n", "durability: 'sometimes' must be one of normal, full"),
        ("colour = 1\n", "colour: unknown key 'colour'"),
        ("[notify.x]\ntype = 'webhook'\n", "notify.x.url: give an http:// or https:// URL"),
        ("[notify.x]\ntype = 'email'\nhost = 'h'\nto = 'a@b.c'\npassword = 'x'\n", "notify.x.password: a password"),
        ("retention = { succeeded = '7x' }\n", "retention.succeeded: '7x' is not a duration"),
        ("[daemon]\npython_path = 'src'\nworkers = 2\n", "daemon: unknown key 'workers'"),
        ("[daemon]\npython_path = [1]\n", "daemon.python_path: give a list of directories"),
        ('[daemon]\npython_path = ["a\\nb"]\n', "daemon.python_path: give a list of directories"),
        ("[tasks.a\n", "invalid TOML"),
    ],
)
def test_bad_config_names_file_and_key(home, text, message):
    Path("jobs.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "jobs.toml" in str(info.value)
    assert message in str(info.value)


def test_bad_config_from_cli_is_exit_2(cli, home):
    Path("jobs.toml").write_text("[tasks.a]\ncommand = ['x']\nretires = 3\n")
    result = cli("submit", "a")
    assert result.exit_code == 2
    assert "jobs.toml: tasks.a.retires" in result.stderr


def test_missing_explicit_config(cli, tmp_path):
    result = cli("--config", str(tmp_path / "nope.toml"), "list")
    assert result.exit_code == 2 and "does not exist" in result.stderr
