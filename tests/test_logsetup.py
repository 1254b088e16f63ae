"""The daemon's log lines: timestamps on a terminal, `<N>` levels under journald, JSON on request."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator

import pytest

from jobrunner.daemon.logsetup import configure_logging, syslog_priority, under_journald
from jobrunner.errors import UsageError


@pytest.fixture
def restore_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("jobrunner")
    handlers, level = logger.handlers[:], logger.level
    yield logging.getLogger("jobrunner.daemon")
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_terminal_lines_carry_timestamps(restore_logger):
    out = io.StringIO()
    configure_logging("info", "text", stream=out, env={})
    restore_logger.info("job %d succeeded after %s", 12, "3s")
    restore_logger.debug("not shown at info")
    line = out.getvalue().splitlines()
    assert len(line) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO job 12 succeeded after 3s", line[0])


def test_under_journald_lines_start_with_syslog_levels_and_no_timestamp(restore_logger):
    out = io.StringIO()
    configure_logging("debug", "text", stream=out, env={"JOURNAL_STREAM": "8:1234"})
    restore_logger.debug("claiming")
    restore_logger.info("job 1 started")
    restore_logger.warning("worker died")
    restore_logger.error("config not reloaded")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        restore_logger.exception("notifier failed")
    lines = out.getvalue().splitlines()
    assert lines[:5] == ["<7>claiming", "<6>job 1 started", "<4>worker died", "<3>config not reloaded",
                         "<3>notifier failed"]  # fmt: skip
    assert all(line.startswith("<3>") for line in lines[5:])  # the traceback keeps its level
    assert lines[-1] == "<3>RuntimeError: boom"


def test_journal_stream_must_be_our_stderr(tmp_path):
    """JOURNAL_STREAM inherited by a daemon whose stderr goes elsewhere does not count."""
    with open(tmp_path / "log", "w") as f:
        info = os.fstat(f.fileno())
        assert under_journald(f, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        assert not under_journald(f, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"})
        assert not under_journald(f, {})


def test_json_format_is_one_object_per_line(restore_logger):
    out = io.StringIO()
    configure_logging("info", "json", stream=out, env={"JOURNAL_STREAM": "8:1234"})
    restore_logger.info("job %d dead", 7, extra={"job_id": 7, "duration": 1.5})
    restore_logger.warning("second")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "job 7 dead"
    assert first["level"] == "info"
    assert first["logger"] == "jobrunner.daemon"
    assert first["job_id"] == 7 and first["duration"] == 1.5
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "warning"


def test_configuring_twice_does_not_double_lines(restore_logger):
    out = io.StringIO()
    configure_logging("info", "text", stream=out, env={})
    configure_logging("info", "text", stream=out, env={})
    restore_logger.info("once")
    assert out.getvalue().count("once") == 1


def test_bad_level_or_format_is_a_usage_error():
    with pytest.raises(UsageError, match="--log-level: 'loud'"):
        configure_logging("loud", "text", stream=io.StringIO(), env={})
    with pytest.raises(UsageError, match="--log-format: 'xml'"):
        configure_logging("info", "xml", stream=io.StringIO(), env={})


def test_syslog_priorities():
    assert [syslog_priority(n) for n in (5, 10, 20, 25, 30, 40, 50)] == [7, 7, 6, 6, 4, 3, 2]
