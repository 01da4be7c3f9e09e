"""CronJob schedules: parsing as robfig/cron's ParseStandard and the next activation times."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.api import cron

T0 = datetime(2026, 3, 4, 10, 17, 30, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        pytest.param("* * * * *", T0, datetime(2026, 3, 4, 10, 18, tzinfo=UTC), id="every-minute"),
        pytest.param("*/5 * * * *", T0, datetime(2026, 3, 4, 10, 20, tzinfo=UTC), id="step"),
        pytest.param("@hourly", T0, datetime(2026, 3, 4, 11, 0, tzinfo=UTC), id="hourly"),
        pytest.param("@daily", T0, datetime(2026, 3, 5, 0, 0, tzinfo=UTC), id="daily"),
        pytest.param("@midnight", T0, datetime(2026, 3, 5, 0, 0, tzinfo=UTC), id="midnight"),
        pytest.param("@weekly", T0, datetime(2026, 3, 8, 0, 0, tzinfo=UTC), id="weekly-sunday"),
        pytest.param("@monthly", T0, datetime(2026, 4, 1, 0, 0, tzinfo=UTC), id="monthly"),
        pytest.param("@yearly", T0, datetime(2027, 1, 1, 0, 0, tzinfo=UTC), id="yearly"),
        pytest.param("@annually", T0, datetime(2027, 1, 1, 0, 0, tzinfo=UTC), id="annually"),
        pytest.param("0 9 * * mon-fri", T0, datetime(2026, 3, 5, 9, 0, tzinfo=UTC), id="weekdays"),
        pytest.param("30 2 1 jan,jul *", T0, datetime(2026, 7, 1, 2, 30, tzinfo=UTC), id="names"),
        pytest.param("0 0 13 * 5", T0, datetime(2026, 3, 6, 0, 0, tzinfo=UTC), id="dom-or-dow"),
        pytest.param("0 0 13 * *", T0, datetime(2026, 3, 13, 0, 0, tzinfo=UTC), id="dom-only"),
        pytest.param("0 0 */10 * 5", T0, datetime(2026, 3, 6, 0, 0, tzinfo=UTC), id="step-no-star"),
        pytest.param("0 0 * * 5", T0, datetime(2026, 3, 6, 0, 0, tzinfo=UTC), id="dow-star-dom"),
        pytest.param(
            "15 10 * * *", T0, datetime(2026, 3, 5, 10, 15, tzinfo=UTC), id="passed-today"
        ),
        pytest.param(
            "5-10/2 * * * ?", T0, datetime(2026, 3, 4, 11, 5, tzinfo=UTC), id="range-step"
        ),
        pytest.param(
            "@every 90s", T0, T0.replace(microsecond=0) + timedelta(seconds=90), id="every"
        ),
    ],
)
def test_next_after(spec: str, after: datetime, expected: datetime) -> None:
    assert cron.parse(spec).next_after(after) == expected


def test_time_zone_is_wall_clock() -> None:
    zone = cron.load_zone("America/New_York")
    got = cron.parse("0 9 * * *").next_after(T0, zone)
    assert got is not None
    assert got.astimezone(UTC) == datetime(2026, 3, 4, 14, 0, tzinfo=UTC)


def test_dst_gap_skips_the_missing_hour() -> None:
    zone = cron.load_zone("America/New_York")  # 2026-03-08 02:00 -> 03:00
    start = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    got = cron.parse("30 2 * * *").next_after(start, zone)
    assert got is not None
    assert got.astimezone(zone).day == 9


def test_never_matching_schedule_gives_none() -> None:
    assert cron.parse("0 0 30 2 *").next_after(T0) is None


def test_times_between_is_bounded() -> None:
    times, more = cron.parse("* * * * *").times_between(T0, T0 + timedelta(hours=5), None, 100)
    assert len(times) == 100 and more
    times, more = cron.parse("0 * * * *").times_between(T0, T0 + timedelta(hours=5), None, 100)
    assert len(times) == 5 and not more


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* 24 * * *", "end of range (24) above maximum (23): 24"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("* * * 13 *", "end of range (13) above maximum (12): 13"),
        ("* * * * 7", "end of range (7) above maximum (6): 7"),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("1/2/3 * * * *", "too many slashes: 1/2/3"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("x * * * *", "failed to parse int from x"),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("TZ=UTC * * * * *", "time zones in the schedule are not supported"),
    ],
)
def test_parse_errors(spec: str, message: str) -> None:
    with pytest.raises(cron.CronError) as e:
        cron.parse(spec)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "name", ["Nowhere/City", "../../etc/passwd", "", "/etc/localtime", "a\x00b"]
)
def test_unknown_zones(name: str) -> None:
    with pytest.raises(cron.CronError, match="unknown time zone"):
        cron.load_zone(name)


_FIELD = st.one_of(
    st.just("*"),
    st.just("?"),
    st.integers(0, 70).map(str),
    st.tuples(st.integers(0, 70), st.integers(0, 70)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.tuples(st.sampled_from(["*", "1", "2-40"]), st.integers(0, 70)).map(
        lambda t: f"{t[0]}/{t[1]}"
    ),
    st.text(max_size=8),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_FIELD, min_size=0, max_size=7).map(" ".join), st.datetimes(timezones=st.just(UTC)))
def test_hostile_schedules_parse_or_fail_cleanly(spec: str, after: datetime) -> None:
    try:
        schedule = cron.parse(spec)
    except cron.CronError:
        return
    got = schedule.next_after(after)
    if got is not None:
        assert got > after
        assert got.minute in schedule.minutes or schedule.every is not None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.binary(max_size=20))
def test_anything_as_a_schedule(text: str, raw: bytes) -> None:
    for spec in (text, raw.decode("latin-1"), "@every " + text):
        with contextlib.suppress(cron.CronError):
            cron.parse(spec)


def test_end_of_the_calendar_has_no_next_time() -> None:
    late = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    assert cron.parse("* * * * *").next_after(late) is None
    assert cron.parse("@every 1h").next_after(late) is None
