"""The Python API reads and steers (issue 17, part 1): get, wait, wait_async, cancel, retry,
list_jobs, stats, submit_many, submit_async, JobFailed; safe from many threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

import jobrunner
from jobrunner.errors import NotFoundError, UsageError


def test_wait_returns_the_result_and_raises_jobfailed(daemon, db_path):
    daemon.start("--workers", "2")
    ok = jobrunner.submit("tests.jobfuncs:add", args=[2, 3])
    assert jobrunner.wait(ok, timeout=30) == 5
    assert jobrunner.wait(ok, timeout=0) == 5  # a finished job: at once
    bad = jobrunner.submit("tests.jobfuncs:fail_with", args=["value", "no month"])
    with pytest.raises(jobrunner.JobFailed) as failed:
        jobrunner.wait(bad, timeout=30)
    assert failed.value.job["status"] == "dead" and "no month" in failed.value.error
    assert asyncio.run(jobrunner.wait_async(ok, timeout=5)) == 5


def test_get_list_stats_cancel_retry_without_a_daemon(db_path):
    first = jobrunner.submit(["true"], queue="reports", tags=["monthly"])
    second, third = jobrunner.submit_many([{"command": ["true"]}, {"callable": "tests.jobfuncs:add", "args": [1, 2]}])
    assert jobrunner.get(first)["queue"] == "reports" and jobrunner.get(first)["events"][0]["to"] == "queued"
    assert jobrunner.get(10**6) is None
    assert [j["id"] for j in jobrunner.list_jobs(queue="reports")] == [first]
    assert [j["id"] for j in jobrunner.list_jobs(tag="monthly", status=["queued"])] == [first]
    assert [j["id"] for j in jobrunner.list_jobs(limit=None, oldest_first=True)] == [first, second, third]
    assert jobrunner.stats()["by_status"]["queued"] == 3
    assert jobrunner.cancel(first, second) == [
        {"id": first, "from": "queued", "to": "cancelled", "message": "cancelled"},
        {"id": second, "from": "queued", "to": "cancelled", "message": "cancelled"},
    ]
    with pytest.raises(jobrunner.JobFailed, match="cancelled"):
        jobrunner.wait(first, timeout=1)
    assert jobrunner.retry([first])[0]["to"] == "queued"
    with pytest.raises(TimeoutError, match="still queued"):
        jobrunner.wait(first, timeout=0.05)


def test_user_mistakes_are_jobrunner_errors_with_one_line(db_path):
    jobrunner.submit(["true"])
    for call, words in [
        (lambda: jobrunner.get("1"), "not a job id"),
        (lambda: jobrunner.wait(2**70), "out of range"),
        (lambda: jobrunner.wait(1, timeout=-1), "timeout"),
        (lambda: jobrunner.list_jobs(status="nope"), "not a status"),
        (lambda: jobrunner.list_jobs(limit=0), "limit"),
        (lambda: jobrunner.cancel(), "at least one"),
        (lambda: jobrunner.submit_many([{"command": []}]), "job 1"),
        (lambda: jobrunner.submit_many({"command": ["true"]}), "list of job dicts"),
    ]:
        with pytest.raises(UsageError, match=words) as raised:
            call()
        assert "\n" not in str(raised.value)
    with pytest.raises(NotFoundError):
        jobrunner.wait(999)
    with pytest.raises(UsageError):  # all or nothing: one finished job refuses the whole cancel
        jobrunner.cancel(1, 999)
    assert jobrunner.get(1)["status"] == "queued"


def test_submit_async_does_not_block_the_loop(db_path):
    async def main() -> list[int]:
        return list(await asyncio.gather(*(jobrunner.submit_async(["true"]) for _ in range(20))))

    ids = asyncio.run(main())
    assert sorted(ids) == list(range(1, 21))


def test_eight_threads_submit_to_a_new_database_and_none_fails(db_path):
    """Threads of one process on a database that does not exist yet: one opens and migrates it,
    the others wait; then they take turns at the write lock (Store.write_lock)."""
    errors: list[BaseException] = []

    def work() -> None:
        for _ in range(100):
            try:
                jobrunner.submit(["true"])
            except BaseException as exc:  # every failure is a finding
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert jobrunner.stats()["by_status"]["queued"] == 800


def test_a_forked_child_opens_its_own_store_and_leaves_the_parents_alone(db_path):
    """gunicorn --preload: the master submitted at import, then forked workers submit too."""
    import os

    from jobrunner.api import connect

    parent_store = connect()
    first = jobrunner.submit(["true"])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own store; the parent's untouched
        try:
            child_id = jobrunner.submit(["true"])
            ok = connect() is not parent_store and jobrunner.get(child_id) is not None
            os.write(write, f"{child_id} {int(ok)}".encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child_id, ok = os.read(read, 100).decode().split()
    os.close(read)
    assert status == 0 and ok == "1"
    assert connect() is parent_store
    assert [j["id"] for j in jobrunner.list_jobs(oldest_first=True)] == [first, int(child_id)]
    assert jobrunner.submit(["true"]) == int(child_id) + 1  # the parent's store still works


def test_two_databases_in_one_process_from_threads_never_mix(home, tmp_path):
    """No process-wide state is re-pointed by an open: each thread's jobs land in its database."""
    paths = [str(tmp_path / f"db{n}.db") for n in range(4)]
    errors: list[BaseException] = []

    def work(path: str) -> None:
        try:
            for _ in range(50):
                jobrunner.submit(["true"], db=path, name=path.rsplit("/", 1)[1])
        except BaseException as exc:  # every failure is a finding
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(path,)) for path in paths for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    for path in paths:
        names = {job["name"] for job in jobrunner.list_jobs(limit=None, db=path)}
        assert names == {path.rsplit("/", 1)[1]} and jobrunner.stats(db=path)["total"] == 100
