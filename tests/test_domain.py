"""The pure rules: durations, priorities, statuses, backoff, job specs."""

from __future__ import annotations

import random

import pytest

from jobrunner.domain.durations import format_duration, parse_duration
from jobrunner.domain.jobspec import SpecError, build_spec
from jobrunner.domain.priority import parse_priority, priority_label
from jobrunner.domain.retry import Backoff
from jobrunner.domain.states import Status, can_transition, parse_status


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h30m", 5400), ("7d", 604800), ("1.5h", 5400), ("90", 90),
     (45, 45), ("250ms", 0.25), ("1w", 604800), ("2h 5m", 7500)],
)  # fmt: skip
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "m10", "-5s", "1h-", True, "inf"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration():
    assert format_duration(0.25) == "250ms"
    assert format_duration(65) == "1m05s"
    assert format_duration(7500) == "2h05m"
    assert format_duration(90000) == "1d1h"


def test_priorities():
    assert [parse_priority(p) for p in ("low", "normal", "high", "critical", "0", 9, " HIGH ")] == [
        2,
        5,
        7,
        9,
        0,
        9,
        7,
    ]
    assert priority_label(7) == "high" and priority_label(3) == "3"
    for bad in ("urgent", "10", -1, True, "1.5"):
        with pytest.raises(ValueError):
            parse_priority(bad)


def test_statuses_are_the_contract_words():
    assert [s.value for s in Status] == [
        "queued", "scheduled", "waiting", "running", "retrying", "succeeded", "dead", "cancelled",
    ]  # fmt: skip
    assert can_transition(Status.QUEUED, Status.RUNNING)
    assert not can_transition(Status.SUCCEEDED, Status.QUEUED)
    assert parse_status("Dead") is Status.DEAD
    with pytest.raises(ValueError, match="use one of queued"):
        parse_status("done")


def test_backoff_full_jitter_within_ceiling():
    backoff = Backoff(base=1, factor=2, max=10)
    assert [backoff.ceiling(n) for n in (1, 2, 3, 4, 5, 100_000)] == [1, 2, 4, 8, 10, 10]
    rng = random.Random(7)
    delays = [backoff.delay(3, rng) for _ in range(500)]
    assert all(0 <= d <= 4 for d in delays)
    assert max(delays) > 3 and min(delays) < 1  # spread over the whole range


def test_spec_rejects_both_command_and_callable():
    with pytest.raises(SpecError, match="either a command or a callable"):
        build_spec({"command": ["x"], "callable": "a:b"})


def test_spec_names():
    assert build_spec({"command": ["/usr/bin/tar", "x"]}).name == "tar"
    assert build_spec({"command": "pg_dump db | gzip"}).name == "pg_dump"
    assert build_spec({"callable": "a.b:build"}).name == "build"
    assert build_spec({"callable": "a.b:build"}, task="nightly").name == "nightly"


def test_durations_have_a_ceiling_where_asked():
    from jobrunner.domain.durations import MAX_DURATION_S

    assert parse_duration("3650d", MAX_DURATION_S) == MAX_DURATION_S
    for too_long in ("3651d", "1e12", 1e12, 10**30):
        with pytest.raises(ValueError, match="too long: at most 3650d"):
            parse_duration(too_long, MAX_DURATION_S)
    assert parse_duration("5000d") == 5000 * 86400  # no ceiling unless the caller asks for one
    for bad in ([5], None, {"s": 1}, 10**400):  # ValueError, never TypeError or OverflowError
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_names_and_import_paths_end_where_they_seem_to():
    from jobrunner.domain.jobspec import CALLABLE_PATTERN, NAME_PATTERN

    assert NAME_PATTERN.match("reports") and not NAME_PATTERN.match("reports\n")
    assert CALLABLE_PATTERN.match("a.b:c") and not CALLABLE_PATTERN.match("a.b:c\n")


def test_spec_names_derived_from_bytes_that_are_not_utf8_can_be_stored():
    assert build_spec({"command": ["/opt/caf\udce9", "x"]}).name == "caf\ufffd"


def test_stored_times_out_of_range_read_as_a_placeholder():
    from jobrunner.present import local_time, parse_iso, short_time
    from jobrunner.store.queries import OUT_OF_RANGE, iso

    assert iso(0) == "1970-01-01T00:00:00.000+00:00" and iso(None) is None
    assert iso(1e15) == iso(-1e15) == iso(1e300) == OUT_OF_RANGE == "out of range"
    assert parse_iso(OUT_OF_RANGE) is None
    assert local_time(OUT_OF_RANGE) == short_time(OUT_OF_RANGE) == "out of range"
    assert local_time(None) == short_time("") == "-"
    assert local_time(iso(0)).startswith(("1970-01-01", "1969-12-31"))  # epoch 0 is a time, not "none"
