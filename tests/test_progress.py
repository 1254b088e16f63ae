"""Progress from inside a job without a database write: a line to the worker's progress FIFO,
by `echo` (no process start) or by `jobrunner progress` (a cheap entry point)."""

from __future__ import annotations

from tests.conftest import run_jobrunner, wait_until


def progress_of(cli, job_id: int) -> tuple[str, float | None, str | None]:
    job = cli.job(job_id)
    return job["status"], job["progress"], job["progress_message"]


def test_a_shell_job_reports_progress_by_echo_and_by_the_cli(cli, daemon, tmp_path):
    daemon.start("--workers", "1")
    step = tmp_path / "step"
    script = (
        f'echo "0.25 a quarter, by echo" > "$JOBRUNNER_PROGRESS"; touch {step}.1; '
        f"while [ ! -e {step}.2 ]; do sleep 0.02; done; "
        f'jobrunner progress 60% "step 3/5"; touch {step}.3; '
        f"while [ ! -e {step}.4 ]; do sleep 0.02; done"
    )
    job = cli.submit("--", "sh", "-c", script)
    wait_until(lambda: progress_of(cli, job) == ("running", 0.25, "a quarter, by echo"), timeout=20)
    (tmp_path / "step.2").touch()
    wait_until(lambda: progress_of(cli, job) == ("running", 0.6, "step 3/5"), timeout=20)
    (tmp_path / "step.4").touch()
    wait_until(lambda: cli.job(job)["status"] == "succeeded", timeout=20)
    assert cli.job(job)["progress"] == 1.0  # done is done


def test_a_python_jobs_child_reports_for_the_job(cli, daemon, tmp_path):
    daemon.start("--workers", "1")
    marker = tmp_path / "go-on"
    job = cli.submit("--call", "tests.jobfuncs:report_through_a_child", "--arg", f"marker={marker}")
    wait_until(lambda: progress_of(cli, job) == ("running", 0.5, "from a child"), timeout=20)
    marker.touch()
    wait_until(lambda: cli.job(job)["status"] == "succeeded", timeout=20)


def test_lines_that_are_not_progress_are_ignored(cli, daemon):
    daemon.start("--workers", "1")
    script = (
        'printf "nonsense\\n1.5 too much\\nNaN\\n\\n" > "$JOBRUNNER_PROGRESS"; '
        'printf "0.7 last" > "$JOBRUNNER_PROGRESS"; echo " word" > "$JOBRUNNER_PROGRESS"; sleep 30'
    )
    job = cli.submit("--", "sh", "-c", script)
    wait_until(lambda: progress_of(cli, job) == ("running", 0.7, "last word"), timeout=20)
    cli.ok("cancel", str(job))
    wait_until(lambda: cli.job(job)["status"] == "cancelled", timeout=20)


def test_progress_outside_a_job_is_a_usage_error(db_path, cli):
    cli.submit("--", "true")
    result = run_jobrunner("progress", "0.4", env={"JOBRUNNER_JOB_ID": "", "JOBRUNNER_PROGRESS": ""})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("jobrunner: error: not inside a jobrunner job")
    bad = run_jobrunner("progress", "140%", env={"JOBRUNNER_JOB_ID": "1", "JOBRUNNER_ATTEMPT": "1"})
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
