"""Cron across daylight saving, checked against expected values written by others.

The facts (timezone, expression, start, the fire times that follow) are transcribed from
the test suites of cronsim 2.6 (tests/test_cronsim.py, which follows Debian's cron) and
croniter 7.0.0 (src/croniter/tests/test_croniter.py); no code of theirs is used. Vixie
cron(8) states the rule they share: a job at a fixed time whose time is skipped runs
right after the jump, one whose time repeats runs once; a job with '*' in its minute or
hour field runs on the clock as it reads. Starts are local times in the case's zone, the
first of two when clocks go back (fold=0, as in the originals); each expected time is the
next fire strictly after the one before, as both libraries count.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from jobrunner.triggers import due_times, make_trigger, next_fire
from tests.conftest import sql


def local(text: str, tz: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def fires_after(expression: str, tz: str, start: str, count: int) -> list[str]:
    """The next `count` fire times strictly after the local time `start`, as ISO times in `tz`."""
    trigger = make_trigger("cron", expression, tz, 0)
    current: float | None = local(start, tz)
    out = []
    for _ in range(count):
        current = next_fire(trigger, current, current)
        assert current is not None
        out.append(datetime.fromtimestamp(current, ZoneInfo(tz)).isoformat())
    return out


# cronsim 2.6, tests/test_cronsim.py, class TestDstTransitions: Europe/Riga, where in 2021
# clocks jump 03:00 -> 04:00 on March 28 and go back 04:00 -> 03:00 on October 31.
CRONSIM_RIGA = [
    ("test_001_every_hour_mar", "0 * * * *", "2021-03-28T01:30", ['2021-03-28T02:00:00+02:00', '2021-03-28T04:00:00+03:00']),
    ("test_001_every_hour_oct", "0 * * * *", "2021-10-31T01:30", ['2021-10-31T02:00:00+03:00', '2021-10-31T03:00:00+03:00', '2021-10-31T03:00:00+02:00', '2021-10-31T04:00:00+02:00']),
    ("test_002_every_30_minutes_mar", "*/30 * * * *", "2021-03-28T02:10", ['2021-03-28T02:30:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-28T04:30:00+03:00']),
    ("test_002_every_30_minutes_oct", "*/30 * * * *", "2021-10-31T02:10", ['2021-10-31T02:30:00+03:00', '2021-10-31T03:00:00+03:00', '2021-10-31T03:30:00+03:00', '2021-10-31T03:00:00+02:00', '2021-10-31T03:30:00+02:00', '2021-10-31T04:00:00+02:00']),
    ("test_003_every_15_minutes_mar", "*/15 * * * *", "2021-03-28T02:40", ['2021-03-28T02:45:00+02:00', '2021-03-28T04:00:00+03:00']),
    ("test_003_every_15_minutes_oct", "*/15 * * * *", "2021-10-31T02:40", ['2021-10-31T02:45:00+03:00', '2021-10-31T03:00:00+03:00', '2021-10-31T03:15:00+03:00', '2021-10-31T03:30:00+03:00', '2021-10-31T03:45:00+03:00', '2021-10-31T03:00:00+02:00', '2021-10-31T03:15:00+02:00', '2021-10-31T03:30:00+02:00', '2021-10-31T03:45:00+02:00', '2021-10-31T04:00:00+02:00']),
    ("test_004_every_2_hours_mar", "0 */2 * * *", "2021-03-28T01:30", ['2021-03-28T02:00:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-28T06:00:00+03:00']),
    ("test_004_every_2_hours_oct", "0 */2 * * *", "2021-10-31T01:30", ['2021-10-31T02:00:00+03:00', '2021-10-31T04:00:00+02:00', '2021-10-31T06:00:00+02:00']),
    ("test_005_30_minutes_past_every_2_hours_mar", "30 */2 * * *", "2021-03-28T01:30", ['2021-03-28T02:30:00+02:00', '2021-03-28T04:30:00+03:00']),
    ("test_005_30_minutes_past_every_2_hours_oct", "30 */2 * * *", "2021-10-31T01:30", ['2021-10-31T02:30:00+03:00', '2021-10-31T04:30:00+02:00']),
    ("test_006_every_3_hours_oct", "0 */3 * * *", "2021-10-31T01:30", ['2021-10-31T03:00:00+03:00', '2021-10-31T03:00:00+02:00', '2021-10-31T06:00:00+02:00']),
    ("test_008_at_1_2_3_4_5_mar", "0 1,2,3,4,5 * * *", "2021-03-28T01:30", ['2021-03-28T02:00:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-28T05:00:00+03:00']),
    ("test_008_at_1_2_3_4_5_oct", "0 1,2,3,4,5 * * *", "2021-10-31T01:30", ['2021-10-31T02:00:00+03:00', '2021-10-31T03:00:00+03:00', '2021-10-31T04:00:00+02:00']),
    ("test_009_30_past_1_2_3_4_5_mar", "30 1,2,3,4,5 * * *", "2021-03-28T01:30", ['2021-03-28T02:30:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-28T04:30:00+03:00']),
    ("test_009_30_past_1_2_3_4_5_oct", "30 1,2,3,4,5 * * *", "2021-10-31T01:30", ['2021-10-31T02:30:00+03:00', '2021-10-31T03:30:00+03:00', '2021-10-31T04:30:00+02:00']),
    ("test_010_at_2_mar", "0 2 * * *", "2021-03-28T01:30", ['2021-03-28T02:00:00+02:00', '2021-03-29T02:00:00+03:00']),
    ("test_010_at_2_oct", "0 2 * * *", "2021-10-31T01:30", ['2021-10-31T02:00:00+03:00', '2021-11-01T02:00:00+02:00']),
    ("test_011_at_3_mar", "0 3 * * *", "2021-03-27T01:30", ['2021-03-27T03:00:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-29T03:00:00+03:00']),
    ("test_011_at_3_oct", "0 3 * * *", "2021-10-31T01:30", ['2021-10-31T03:00:00+03:00', '2021-11-01T03:00:00+02:00']),
    ("test_012_at_4_mar", "0 4 * * *", "2021-03-27T01:30", ['2021-03-27T04:00:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-29T04:00:00+03:00']),
    ("test_012_at_4_oct", "0 4 * * *", "2021-10-30T01:30", ['2021-10-30T04:00:00+03:00', '2021-10-31T04:00:00+02:00', '2021-11-01T04:00:00+02:00']),
    ("test_014_every_hour_enumerated_mar", "0 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23 * * *", "2021-03-28T01:30", ['2021-03-28T02:00:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-28T05:00:00+03:00']),
    ("test_014_every_hour_enumerated_oct", "0 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23 * * *", "2021-10-31T01:30", ['2021-10-31T02:00:00+03:00', '2021-10-31T03:00:00+03:00', '2021-10-31T04:00:00+02:00']),
    ("test_015_every_other_hour_enumerated_mar", "0 1,3,5,7,9,11,13,15,17,19,21,23 * * *", "2021-03-28T00:30", ['2021-03-28T01:00:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-28T05:00:00+03:00']),
    ("test_015_every_other_hour_enumerated_oct", "0 1,3,5,7,9,11,13,15,17,19,21,23 * * *", "2021-10-31T00:30", ['2021-10-31T01:00:00+03:00', '2021-10-31T03:00:00+03:00', '2021-10-31T05:00:00+02:00']),
    ("test_016_at_1_to_5_mar", "0 1-5 * * *", "2021-03-28T01:30", ['2021-03-28T02:00:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-28T05:00:00+03:00']),
    ("test_016_at_1_to_5_oct", "0 1-5 * * *", "2021-10-31T01:30", ['2021-10-31T02:00:00+03:00', '2021-10-31T03:00:00+03:00', '2021-10-31T04:00:00+02:00']),
    ("test_at_3_15_mar", "15 3 * * *", "2021-03-27T00:00", ['2021-03-27T03:15:00+02:00', '2021-03-28T04:00:00+03:00', '2021-03-29T03:15:00+03:00']),
    ("test_at_3_15_oct", "15 3 * * *", "2021-10-30T00:00", ['2021-10-30T03:15:00+03:00', '2021-10-31T03:15:00+03:00', '2021-11-01T03:15:00+02:00']),
    ("test_every_minute_mar", "* * * * *", "2021-03-28T02:58", ['2021-03-28T02:59:00+02:00', '2021-03-28T04:00:00+03:00']),
    ("test_every_minute_oct", "* * * * *", "2021-10-31T03:58", ['2021-10-31T03:59:00+03:00', '2021-10-31T03:00:00+02:00', '2021-10-31T03:01:00+02:00']),
    ("test_every_minute_from_1_to_6_mar", "* 1-6 * * *", "2021-03-28T02:58", ['2021-03-28T02:59:00+02:00', '2021-03-28T04:00:00+03:00']),
    ("test_every_minute_from_1_to_6_oct", "* 1-6 * * *", "2021-10-31T03:58", ['2021-10-31T03:59:00+03:00', '2021-10-31T03:00:00+02:00', '2021-10-31T03:01:00+02:00']),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "expression", "start", "expected"), CRONSIM_RIGA, ids=[c[0] for c in CRONSIM_RIGA]
)
def test_cronsim_dst_transitions(case, expression, start, expected):
    assert fires_after(expression, "Europe/Riga", start, len(expected)) == expected


# croniter 7.0.0, src/croniter/tests/test_croniter.py, class CroniterTest (the zoneinfo
# variants; the pytz ones state the same facts). Only get_next is transcribed.
CRONITER = [
    ("test_timezone_winter_time", "Europe/Athens", "*/30 * * * *", "2013-10-27T02:00", ["2013-10-27T02:30:00+03:00", "2013-10-27T03:00:00+03:00", "2013-10-27T03:30:00+03:00", "2013-10-27T03:00:00+02:00", "2013-10-27T03:30:00+02:00", "2013-10-27T04:00:00+02:00", "2013-10-27T04:30:00+02:00"]),
    ("test_timezone_summer_time", "Europe/Athens", "*/30 * * * *", "2013-03-31T01:00", ["2013-03-31T01:30:00+02:00", "2013-03-31T02:00:00+02:00", "2013-03-31T02:30:00+02:00", "2013-03-31T04:00:00+03:00", "2013-03-31T04:30:00+03:00"]),
    ("test_std_dst daily mar", "Europe/Warsaw", "0 0 * * *", "2017-03-26T00:00", ["2017-03-27T00:00:00+02:00"]),
    ("test_std_dst hourly mar", "Europe/Warsaw", "0 * * * *", "2017-03-26T01:00", ["2017-03-26T03:00:00+02:00"]),
    ("test_std_dst daily oct", "Europe/Warsaw", "0 0 * * *", "2017-10-29T00:00", ["2017-10-30T00:00:00+01:00"]),
    ("test_std_dst hourly oct", "Europe/Warsaw", "0 * * * *", "2017-10-29T01:59", ["2017-10-29T02:00:00+02:00", "2017-10-29T02:00:00+01:00", "2017-10-29T03:00:00+01:00", "2017-10-29T04:00:00+01:00"]),
    ("test_std_dst2 17-21:00", "America/Sao_Paulo", "0 0 * * *", "2018-02-17T21:00", ["2018-02-18T00:00:00-03:00"]),
    ("test_std_dst2 17-22:00", "America/Sao_Paulo", "0 0 * * *", "2018-02-17T22:00", ["2018-02-18T00:00:00-03:00"]),
    ("test_std_dst2 17-23:00", "America/Sao_Paulo", "0 0 * * *", "2018-02-17T23:00", ["2018-02-18T00:00:00-03:00"]),
    ("test_std_dst2 18-00:00", "America/Sao_Paulo", "0 0 * * *", "2018-02-18T00:00", ["2018-02-19T00:00:00-03:00"]),
    ("test_std_dst2 17-21:05", "America/Sao_Paulo", "0 0 * * *", "2018-02-17T21:05", ["2018-02-18T00:00:00-03:00"]),
    ("test_std_dst2 17-22:05", "America/Sao_Paulo", "0 0 * * *", "2018-02-17T22:05", ["2018-02-18T00:00:00-03:00"]),
    ("test_std_dst2 17-23:05", "America/Sao_Paulo", "0 0 * * *", "2018-02-17T23:05", ["2018-02-18T00:00:00-03:00"]),
    ("test_std_dst2 18-00:05", "America/Sao_Paulo", "0 0 * * *", "2018-02-18T00:05", ["2018-02-19T00:00:00-03:00"]),
    ("test_std_dst3", "Australia/Adelaide", "0 0 24 * *", "2020-04-15T00:00", ["2020-04-24T00:00:00+09:30"]),
    ("test_dst_daily", "Europe/London", "7 0 * * *", "2025-03-30T00:00", ["2025-03-30T00:07:00+00:00", "2025-03-31T00:07:00+01:00", "2025-04-01T00:07:00+01:00"]),
    ("test_dst_hourly", "Europe/London", "7 * * * *", "2025-03-30T00:00", ["2025-03-30T00:07:00+00:00", "2025-03-30T02:07:00+01:00", "2025-03-30T03:07:00+01:00"]),
    ("test_dst_issue90_st31ny", "Europe/Paris", "1 2 * * *", "2020-03-29T01:59:55", ["2020-03-29T03:00:00+02:00", "2020-03-30T02:01:00+02:00", "2020-03-31T02:01:00+02:00"]),
    ("test_dst_iter", "Asia/Hebron", "0 0 * * *", "2022-03-25T00:00", ["2022-03-26T00:00:00+02:00", "2022-03-27T01:00:00+03:00", "2022-03-28T00:00:00+03:00"]),
    ("test_dst_gap_shift_is_not_a_fire_time from 01:43", "Australia/Lord_Howe", "0 * * * *", "2019-10-06T01:43", ["2019-10-06T03:00:00+11:00"]),
    ("test_dst_gap_shift_is_not_a_fire_time from 01:03", "Australia/Lord_Howe", "0 * * * *", "2019-10-06T01:03", ["2019-10-06T03:00:00+11:00"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "tz", "expression", "start", "expected"), CRONITER, ids=[c[0] for c in CRONITER]
)
def test_croniter_dst_cases(case, tz, expression, start, expected):
    assert fires_after(expression, tz, start, len(expected)) == expected


def test_croniter_range_through_lord_howe_half_hour_jump():
    """croniter test_dst_gap_shift_is_not_a_fire_time, its croniter_range part: from 00:00 to
    05:00 inclusive. Clocks jump 02:00 -> 02:30; 02:30 is not a time `0 * * * *` names."""
    tz = "Australia/Lord_Howe"
    trigger = make_trigger("cron", "0 * * * *", tz, 0)
    end = local("2019-10-06T05:00", tz)
    current = next_fire(trigger, None, local("2019-10-06T00:00", tz))  # the start itself counts
    listed = []
    while current is not None and current <= end:
        listed.append(datetime.fromtimestamp(current, ZoneInfo(tz)).isoformat())
        current = next_fire(trigger, current, current)
    assert listed == [
        "2019-10-06T00:00:00+10:30", "2019-10-06T01:00:00+10:30", "2019-10-06T03:00:00+11:00",
        "2019-10-06T04:00:00+11:00", "2019-10-06T05:00:00+11:00",
    ]  # fmt: skip


def test_where_croniter_and_debian_cron_differ_debian_wins():
    """croniter test_dst_negative_dst_zone_ambiguous_pytz expects `0 1 * * *` in Europe/Dublin
    to fire twice on 2019-10-27, when 01:00 happens twice. Vixie cron(8) and cronsim's
    test_010_at_2_oct and test_at_3_15_oct say a fixed time that repeats runs once (the first)."""
    assert fires_after("0 1 * * *", "Europe/Dublin", "2019-10-26T12:00", 2) == [
        "2019-10-27T01:00:00+01:00", "2019-10-28T01:00:00+00:00",
    ]  # fmt: skip


# The reproductions in issue 13: after a fire at `start`, the fires that follow.
ISSUE_13 = [
    ("Europe/Warsaw", "0 0 * * *", "2017-03-26T00:00", ["2017-03-27T00:00:00+02:00", "2017-03-28T00:00:00+02:00"]),
    ("America/New_York", "@daily", "2024-03-10T00:00", ["2024-03-11T00:00:00-04:00", "2024-03-12T00:00:00-04:00"]),
    ("Europe/Berlin", "@daily", "2024-03-31T00:00", ["2024-04-01T00:00:00+02:00", "2024-04-02T00:00:00+02:00"]),
    ("Europe/Berlin", "0 0 * * mon", "2024-03-25T00:00", ["2024-04-01T00:00:00+02:00", "2024-04-08T00:00:00+02:00"]),
    ("America/New_York", "0,30 1 * * *", "2024-11-03T00:00", ["2024-11-03T01:00:00-04:00", "2024-11-03T01:30:00-04:00", "2024-11-04T01:00:00-05:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("tz", "expression", "start", "expected"), ISSUE_13)
def test_issue_13_reproductions(tz, expression, start, expected):
    assert fires_after(expression, tz, start, len(expected)) == expected


def test_a_daemon_down_over_the_repeated_hour_fires_each_time_once():
    """Every missed fire of `0,30 1 * * *` through the New York night clocks went back:
    two, not four (the daemon's catch-up goes through due_times)."""
    tz = "America/New_York"
    trigger = make_trigger("cron", "0,30 1 * * *", tz, 0)
    first = local("2024-11-03T01:00", tz)
    times, following = due_times(trigger, first, local("2024-11-03T06:00", tz))
    shown = [datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat() for t in times]
    assert shown == ["2024-11-03T01:00:00-04:00", "2024-11-03T01:30:00-04:00"]
    assert following == local("2024-11-04T01:00", tz)


def year_of_fires(expression: str, tz: str, year: int) -> list[float]:
    """Every fire from local midnight on January 1st of `year` to the next January 1st."""
    trigger = make_trigger("cron", expression, tz, 0)
    end = local(f"{year + 1}-01-01T00:00", tz)
    current = next_fire(trigger, None, local(f"{year}-01-01T00:00", tz))
    out = []
    while current is not None and current < end:
        out.append(current)
        current = next_fire(trigger, current, current)
    return out


# Zones with both changes at 02:00 or 03:00, a southern one, a half-hour one, and Havana,
# whose clocks change at midnight.
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "America/Havana"]


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 0 * * *", "45 1 * * *"])
def test_a_fixed_time_fires_once_on_every_day_of_a_year(tz, expression):
    zone = ZoneInfo(tz)
    fires = year_of_fires(expression, tz, 2023)
    assert len(fires) == 365
    assert [datetime.fromtimestamp(t, zone).date() for t in fires] == [
        date(2023, 1, 1) + timedelta(days=n) for n in range(365)
    ]
    minute, hour = (int(field) for field in expression.split()[:2])
    for stamp in fires:
        moment = datetime.fromtimestamp(stamp, zone)
        named = datetime.combine(moment.date(), time(hour, minute))
        if exists(named, zone):  # at that time, the first time it happens
            assert stamp == named.replace(tzinfo=zone, fold=0).timestamp(), moment.isoformat()
        else:  # skipped by the clocks: the instant they jumped
            assert datetime.fromtimestamp(stamp - 1, zone).utcoffset() != moment.utcoffset(), (
                moment.isoformat()
            )


def exists(wall: datetime, zone: ZoneInfo) -> bool:
    return datetime.fromtimestamp(wall.replace(tzinfo=zone).timestamp(), zone).replace(tzinfo=None) == wall


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Australia/Sydney"])
def test_hourly_fires_every_real_hour_of_a_year(tz):
    fires = year_of_fires("0 * * * *", tz, 2023)
    assert len(fires) == 8760
    assert {b - a for a, b in pairwise(fires)} == {3600.0}


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York"])
def test_every_quarter_hour_fires_every_real_quarter_of_a_year(tz):
    fires = year_of_fires("*/15 * * * *", tz, 2023)
    assert len(fires) == 8760 * 4
    assert {b - a for a, b in pairwise(fires)} == {900.0}


@pytest.mark.parametrize(
    ("expression", "start", "gap"),
    [
        ("1h", "2024-11-03T00:30", 3600.0),
        ("1h", "2024-03-10T00:30", 3600.0),
        ("1d", "2024-03-09T12:00", 86400.0),
    ],
)
def test_every_is_elapsed_time_across_clock_changes(expression, start, gap):
    tz = "America/New_York"
    anchor = local(start, tz)
    trigger = make_trigger("every", expression, tz, anchor)
    current = next_fire(trigger, None, anchor)
    times = [current]
    for _ in range(4):
        current = next_fire(trigger, current, current)
        times.append(current)
    assert times[0] == anchor + gap
    assert {b - a for a, b in pairwise(times)} == {gap}


def test_utc_schedules_are_plain():
    assert fires_after("30 2 * * *", "UTC", "2024-03-31T00:00", 2) == [
        "2024-03-31T02:30:00+00:00", "2024-04-01T02:30:00+00:00",
    ]  # fmt: skip
    assert len(year_of_fires("30 2 * * *", "UTC", 2024)) == 366


@pytest.mark.parametrize(
    ("kind", "expression"),
    [("cron", "*/7 * * * *"), ("cron", "30 2 * * *"), ("every", "7m"), ("every", "1h")],
)
@pytest.mark.parametrize("on_a_fire", [False, True])
def test_catching_up_past_the_limit_lands_on_the_next_fire(kind, expression, on_a_fire):
    """More fires missed than due_times lists (across both clock changes): it jumps ahead to
    the same next fire as stepping one by one would, even when `now` is a fire time itself."""
    tz = "America/New_York"
    trigger = make_trigger(kind, expression, tz, local("2024-03-01T00:00", tz))
    first = next_fire(trigger, None, local("2024-03-01T00:00", tz))
    fires = [first]
    while fires[-1] <= local("2024-11-04T00:00", tz):
        fires.append(next_fire(trigger, fires[-1], fires[-1]))
    now = fires[-2] if on_a_fire else fires[-2] + 1
    times, following = due_times(trigger, first, now, limit=3)
    assert times == fires[:3]
    assert following == fires[-1]


def test_the_daemons_scheduler_enqueues_each_named_time_once_through_the_night(cli, store):
    """A daemon turning every 5 minutes (its clock passed in) from the evening before New York's
    clocks go back to the next night: `0,30 1 * * *` enqueues four jobs, not six."""
    from jobrunner.config import Config
    from jobrunner.daemon.scheduler import Scheduler

    tz = "America/New_York"
    cli.ok("schedule", "add", "night", "--cron", "0,30 1 * * *", "--tz", tz, "--misfire", "all",
           "--max-running", "10", "--", "true")  # fmt: skip
    evening = local("2024-11-02T23:00", tz)
    with store.write():
        sql(store,
            "UPDATE schedule SET next_fire_at=? WHERE name='night'", (local("2024-11-03T01:00", tz),)
        )
    scheduler = Scheduler(store, Config())
    fired = []
    for now in range(int(evening), int(local("2024-11-04T03:00", tz)), 300):
        if scheduler.run_due(float(now)):
            fired.append(datetime.fromtimestamp(now, ZoneInfo(tz)).isoformat())
    assert fired == [
        "2024-11-03T01:00:00-04:00", "2024-11-03T01:30:00-04:00",
        "2024-11-04T01:00:00-05:00", "2024-11-04T01:30:00-05:00",
    ]  # fmt: skip
    assert len([j for j in cli.json("list") if j["name"] == "night"]) == 4
