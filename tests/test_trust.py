"""The trust model (issue 14): what another local user can write is refused at every open.

A second local account plays the attacker; it is created here when the tests run as root (as
CI does) and the tests skip with a reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobrunner.errors import UsageError
from tests.conftest import ROOT, run_jobrunner

pytestmark = pytest.mark.sqlite_only(reason="trust in files another user could write: the SQLite file, its WAL, its directories")
OTHER = "jrtest2"


@pytest.fixture(scope="session")
def other_uid() -> int:
    """A second local user (the attacker), created if need be."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a second local user is created and files are given to it")
    if subprocess.run(["id", "-u", OTHER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", OTHER], check=True, capture_output=True)
    return int(subprocess.run(["id", "-u", OTHER], capture_output=True, text=True, check=True).stdout)


def as_other(*argv: str) -> None:
    subprocess.run(["runuser", "-u", OTHER, "--", *argv], check=True, capture_output=True)


@pytest.fixture
def shared(other_uid: int) -> Iterator[Path]:
    """A directory every local user can write (a shared project directory), outside root's 0700 tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="jrtrust-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def jr(db: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return run_jobrunner(*args, env={"JOBRUNNER_DB": str(db), "PYTHONPATH": str(ROOT)}, timeout=timeout)


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("jobrunner: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


COMMANDS = [
    ("submit", "--env", "API_TOKEN=s3cret-token", "--", "true"),
    ("list",),
    ("show", "1"),
    ("daemon", "--workers", "1"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_precreated_database_in_a_shared_directory_is_refused(home: Path, shared: Path, command: tuple) -> None:
    """Another user's 0666 jobs.db in a directory others can write: every command refuses it, writes nothing."""
    db = shared / "jobs.db"
    as_other("sh", "-c", f"umask 000 && : > {db}")
    result = jr(db, *command)
    # as root the daemon's own refusal speaks first (the file is another user's); both name it
    assert_refused(result, str(shared), *(() if command[0] == "daemon" else ("chmod go-w",)))
    assert db.read_bytes() == b""  # no token, no schema
    assert sorted(p.name for p in shared.iterdir()) == ["jobs.db"]  # no -wal, -shm, jobs.logs


def test_precreated_database_owned_by_another_user_is_refused(home: Path, tmp_path: Path, other_uid: int) -> None:
    """In a private directory, a database file belonging to someone else is refused too."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    db = private / "jobs.db"
    db.touch(mode=0o600)
    os.chown(db, other_uid, -1)
    assert_refused(jr(db, "submit", "--env", "API_TOKEN=s3cret-token", "--", "true"), str(db), OTHER)
    assert db.read_bytes() == b""
    doctor = jr(db, "doctor")
    assert doctor.returncode == 1 and f"fail  trust        the database {db} belongs to {OTHER}" in doctor.stdout


def test_sticky_world_writable_directory_is_refused_before_the_database_exists(home: Path, shared: Path) -> None:
    """/tmp-like (1777): another user could plant jobs.db-wal before the file exists."""
    shared.chmod(0o1777)
    db = shared / "jobs.db"
    result = jr(db, "submit", "--", "true")
    assert_refused(result, str(shared), "sticky does not help", "jobs.db-wal", "private directory")
    assert list(shared.iterdir()) == []


def test_a_symlink_as_the_database_is_refused(home: Path, tmp_path: Path, other_uid: int) -> None:
    real = tmp_path / "real.db"
    link = tmp_path / "jobs.db"
    link.symlink_to(real)  # dangling: following it would create real.db
    assert_refused(jr(link, "submit", "--", "true"), str(link), "symlink")
    assert not real.exists()


def _wal_adding_a_job(victim: Path, scratch: Path) -> bytes:
    """A valid WAL for `victim` that adds a job named `planted`, built on a copy as an attacker would."""
    scratch.mkdir()
    copy = scratch / "jobs.db"
    shutil.copy(victim, copy)
    holder = sqlite3.connect(copy)  # a reader open across the submit keeps its WAL from being checkpointed away
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM job").fetchone()
    try:
        assert jr(copy, "submit", "--name", "planted", "--", "id").returncode == 0
        return (scratch / "jobs.db-wal").read_bytes()
    finally:
        holder.close()


def test_a_planted_wal_is_refused_before_sqlite_replays_it(home: Path, tmp_path: Path, other_uid: int) -> None:
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir(mode=0o700)
    db = victim_dir / "jobs.db"
    assert jr(db, "submit", "--name", "mine", "--", "true").returncode == 0
    assert not (victim_dir / "jobs.db-wal").exists()
    wal = victim_dir / "jobs.db-wal"
    wal.write_bytes(_wal_adding_a_job(db, tmp_path / "attacker"))
    os.chown(wal, other_uid, -1)
    for command in (("list",), ("show", "2"), ("daemon", "--workers", "1")):
        result = jr(db, *command)
        assert_refused(result, str(wal), OTHER, "replay", f"rm {wal}")
        assert "planted" not in result.stdout
    doctor = jr(db, "doctor")
    assert doctor.returncode == 1 and f"fail  trust        the database's wal file {wal}" in doctor.stdout
    wal.unlink()  # what the message says to do: the owner's own database is intact
    listed = jr(db, "list")
    assert listed.returncode == 0 and "mine" in listed.stdout and "planted" not in listed.stdout


def test_a_log_directory_owned_by_another_user_is_refused(home: Path, tmp_path: Path, other_uid: int) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    db = private / "jobs.db"
    assert jr(db, "submit", "--", "true").returncode == 0
    logs = private / "jobs.logs"
    logs.mkdir(mode=0o777)
    logs.chmod(0o777)
    os.chown(logs, other_uid, -1)
    assert_refused(jr(db, "daemon", "--workers", "1"), str(logs), "log directory", OTHER)
    assert_refused(jr(db, "list"), str(logs))
    assert list(logs.iterdir()) == []
    doctor = jr(db, "doctor")
    assert doctor.returncode == 1 and f"fail  trust        the log directory {logs}" in doctor.stdout


def test_a_log_directory_that_is_a_symlink_is_refused(home: Path, tmp_path: Path, shared: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    db = private / "jobs.db"
    assert jr(db, "submit", "--", "true").returncode == 0
    (private / "jobs.logs").symlink_to(shared)
    assert_refused(jr(db, "daemon", "--workers", "1"), "jobs.logs", "symlink")
    assert list(shared.iterdir()) == []


def test_workers_do_not_follow_a_symlink_planted_in_the_log_directory(tmp_path: Path) -> None:
    """A symlink planted as a job's log or a worker's spare file: no write reaches its target."""
    from jobrunner.daemon.joblogs import Logs, spare_log_path

    logs_dir = tmp_path / "jobs.logs"
    logs_dir.mkdir(mode=0o700)
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (logs_dir / "5.log").symlink_to(target)
    Path(spare_log_path(str(logs_dir), os.getpid())).symlink_to(target)
    logs = Logs(str(logs_dir))
    try:
        logs.prepare()  # would O_TRUNC the target through the spare's symlink
        with pytest.raises(OSError):
            os.write(logs.open(str(logs_dir / "5.log"), attempt=2), b"attacker's line\n")
    finally:
        logs.close()
    assert target.read_text() == "keep me\n"


def test_workers_open_logs_in_the_log_directory_itself(tmp_path: Path) -> None:
    """The ordinary path still works: spare renamed into the job's log, relative to the directory."""
    from jobrunner.daemon.joblogs import Logs

    logs_dir = tmp_path / "jobs.logs"
    logs_dir.mkdir(mode=0o700)
    logs = Logs(str(logs_dir))
    try:
        logs.prepare()
        fd = logs.open(str(logs_dir / "7.log"), attempt=1)
        os.write(fd, b"hello\n")
        os.close(fd)
        fd = logs.open(str(logs_dir / "7.log"), attempt=2)
        os.write(fd, b"again\n")
        os.close(fd)
    finally:
        logs.close()
    assert (logs_dir / "7.log").read_text() == "hello\nagain\n"
    assert (logs_dir / "7.log").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in logs_dir.iterdir()] == ["7.log"]


# ---------------------------------------------------------------------------- root
@pytest.fixture
def other_dir(other_uid: int) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="jrtrust-other-", dir="/tmp"))
    path.chmod(0o755)
    os.chown(path, other_uid, -1)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _root_refusal(target: str, allowed: bool = False) -> None:
    from jobrunner.cli.rundaemon import refuse_foreign_database_as_root

    refuse_foreign_database_as_root(target, allowed)


def test_root_refuses_a_database_not_yet_created_in_another_users_directory(home: Path, other_dir: Path) -> None:
    db = other_dir / "jobs.db"
    with pytest.raises(UsageError, match=f"its directory {other_dir} belongs to {OTHER}"):
        _root_refusal(str(db))
    assert_refused(jr(db, "daemon", "--workers", "1"), "refusing to run as root", OTHER)
    assert list(other_dir.iterdir()) == []


def test_root_refuses_another_users_symlink_to_a_root_database(tmp_path: Path, other_uid: int) -> None:
    real = tmp_path / "root.db"
    real.touch(mode=0o600)
    link = tmp_path / "jobs.db"
    link.symlink_to(real)
    os.lchown(link, other_uid, -1)
    with pytest.raises(UsageError, match=f"the symlink {link} belongs to {OTHER}"):
        _root_refusal(str(link))


def test_root_refuses_a_dangling_symlink_into_another_users_directory(tmp_path: Path, other_dir: Path) -> None:
    link = tmp_path / "jobs.db"
    link.symlink_to(other_dir / "made-by-root.db")
    with pytest.raises(UsageError, match=f"{other_dir}, where it points, belongs to {OTHER}"):
        _root_refusal(str(link))
    assert not (other_dir / "made-by-root.db").exists()


def test_root_refuses_a_postgresql_url_without_allow_root(other_uid: int) -> None:
    with pytest.raises(UsageError, match="--allow-root"):
        _root_refusal("postgresql://jr@localhost/jobs")
    _root_refusal("postgresql://jr@localhost/jobs", allowed=True)


def test_root_runs_its_own_database(tmp_path: Path, other_uid: int) -> None:
    _root_refusal(str(tmp_path / "jobs.db"))  # not created yet, in root's own directory
    (tmp_path / "jobs.db").touch(mode=0o600)
    _root_refusal(str(tmp_path / "jobs.db"))


# ---------------------------------------------------------------------------- umask
def test_umask_000_creates_state_directories_owner_only(tmp_path: Path) -> None:
    """Every directory jobrunner makes is 0700, parents included, the database 0600."""
    home = tmp_path / "fresh-home"
    home.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_STATE_HOME", "JOBRUNNER_DB", "JOBRUNNER_CONFIG")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(home / ".config"))
    result = subprocess.run([sys.executable, "-m", "jobrunner", "submit", "--", "true"], env=env, cwd=home,
                            capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0))  # fmt: skip
    assert result.returncode == 0, result.stderr
    for directory in (home / ".local", home / ".local/state", home / ".local/state/jobrunner"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    assert (home / ".local/state/jobrunner/jobs.db").stat().st_mode & 0o777 == 0o600


def test_umask_000_creates_the_log_directory_and_its_parents_owner_only(tmp_path: Path) -> None:
    from jobrunner.trust import ensure_log_dir

    logs = tmp_path / "a" / "b" / "logs"
    previous = os.umask(0)
    try:
        ensure_log_dir(str(logs))
    finally:
        os.umask(previous)
    for directory in (tmp_path / "a", tmp_path / "a" / "b", logs):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    ensure_log_dir(str(logs))  # an existing one of ours passes
    logs.chmod(0o770)
    with pytest.raises(UsageError, match=f"chmod go-w {logs}"):
        ensure_log_dir(str(logs))


def test_a_jobs_toml_another_user_wrote_in_the_working_directory_is_not_read(home: Path, shared: Path, db_path) -> None:
    """Issue 14 item 4: in a shared directory another user's ./jobs.toml chose the database and
    added a schedule and a notifier command. Found, it is skipped with one warning; named with
    --config, it is refused."""
    planted = shared / "jobs.toml"
    as_other("sh", "-c", f"umask 000 && printf 'db = \"collect.db\"\\n[schedules.x]\\nevery = \"1s\"\\ncommand = \"id\"\\n' > {planted}")
    result = run_jobrunner("submit", "--", "true", cwd=shared, env={"JOBRUNNER_DB": ""})
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"jobrunner: warning: not reading {planted}: the config {planted} belongs to {OTHER}")
    assert not (shared / "collect.db").exists()  # the planted config chose nothing
    refused = run_jobrunner("--config", str(planted), "list", cwd=shared)
    assert_refused(refused, str(planted), OTHER)


def test_a_jobs_toml_of_ones_own_that_others_can_write_is_not_read(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "jobs.toml"
    config.write_text('[tasks.t]\ncommand = "true"\n')
    config.chmod(0o666)
    refused = run_jobrunner("--config", str(config), "submit", "t")
    assert_refused(refused, "writable by group or others", f"chmod go-w {config}")
    config.chmod(0o644)
    assert run_jobrunner("--config", str(config), "submit", "t").returncode == 0
