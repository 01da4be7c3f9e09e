"""CronJob controller: which scheduled time is due, the Job it creates, history cleanup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.api import cron, objmeta
from kubesvc.controllers import cronjob

NOW = datetime(2026, 1, 1, 12, 30, 20, tzinfo=UTC)


def a_cronjob(schedule: str = "*/10 * * * *", created: float = 3600, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "cj",
            "namespace": "ns",
            "uid": "u",
            "creationTimestamp": objmeta.format_time(NOW - timedelta(seconds=created)),
        },
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}},
            },
            **spec,
        },
        "status": {},
    }


def test_most_recent_missed_time_is_due() -> None:
    due = cronjob.due_time(a_cronjob(), NOW)
    assert due.scheduled == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert due.next_time == datetime(2026, 1, 1, 12, 40, tzinfo=UTC)
    assert not due.missed_many


def test_nothing_due_after_the_last_schedule_time() -> None:
    cj = a_cronjob()
    cj["status"]["lastScheduleTime"] = "2026-01-01T12:30:00Z"
    assert cronjob.due_time(cj, NOW).scheduled is None


def test_nothing_due_before_creation() -> None:
    assert cronjob.due_time(a_cronjob(created=10), NOW).scheduled is None


def test_starting_deadline_limits_the_window() -> None:
    cj = a_cronjob(startingDeadlineSeconds=10)
    assert cronjob.due_time(cj, NOW).scheduled is None
    cj = a_cronjob(startingDeadlineSeconds=60)
    assert cronjob.due_time(cj, NOW).scheduled == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


def test_many_missed_times_still_give_the_latest() -> None:
    due = cronjob.due_time(a_cronjob("* * * * *", created=86400 * 3), NOW)
    assert due.missed_many and due.scheduled == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


def test_time_zone() -> None:
    cj = a_cronjob("0 13 * * *", created=86400, timeZone="Europe/Paris")
    assert cronjob.due_time(cj, NOW).scheduled == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    job = cronjob.new_job(cj, datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    assert (
        job["metadata"]["annotations"][cronjob.SCHEDULED_ANNOTATION] == "2026-01-01T13:00:00+01:00"
    )
    with pytest.raises(cron.CronError):
        cronjob.due_time(a_cronjob(timeZone="Mars/Olympus"), NOW)


def test_new_job() -> None:
    job = cronjob.new_job(a_cronjob(), datetime(2026, 1, 1, 12, 30, tzinfo=UTC))
    assert (
        job["metadata"]["name"]
        == f"cj-{int(datetime(2026, 1, 1, 12, 30, tzinfo=UTC).timestamp()) // 60}"
    )
    assert job["metadata"]["labels"] == {"a": "b"}
    ref = job["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "CronJob" and ref["controller"] is True
    assert job["spec"]["template"]["spec"]["containers"] == [{"name": "c"}]


def finished(name: str, kind: str, at: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": name},
        "status": {
            "completionTime": at,
            "conditions": [{"type": kind, "status": "True", "lastTransitionTime": at}],
        },
    }


def test_history_limits() -> None:
    cj = a_cronjob(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0)
    jobs = [
        finished("a", "Complete", "2026-01-01T10:00:00Z"),
        finished("b", "Complete", "2026-01-01T11:00:00Z"),
        finished("c", "Failed", "2026-01-01T09:00:00Z"),
        {"metadata": {"name": "d", "uid": "d"}, "status": {}},
    ]
    assert [j["metadata"]["name"] for j in cronjob.history_to_delete(cj, jobs)] == ["a", "c"]
    status = cronjob.active_status(cj, jobs)
    assert [r["name"] for r in status["active"]] == ["d"]
    assert status["lastSuccessfulTime"] == "2026-01-01T11:00:00Z"


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=20) | st.sampled_from(["@hourly", "*/7 * * * *", "0 0 29 2 *", "@every 1m"]),
    st.none() | st.integers(-100, 10**6) | st.just(2**63 - 1),
    st.none() | st.sampled_from(["UTC", "Asia/Tokyo", "Nowhere", "Local", ""]),
    st.none() | st.text(max_size=25),
)
def test_due_time_survives_anything(schedule: str, deadline: Any, zone: Any, last: Any) -> None:
    cj = a_cronjob(schedule)
    if deadline is not None:
        cj["spec"]["startingDeadlineSeconds"] = deadline
    if zone is not None:
        cj["spec"]["timeZone"] = zone
    if last is not None:
        cj["status"]["lastScheduleTime"] = last
    try:
        due = cronjob.due_time(cj, NOW)
    except cron.CronError:
        return
    if due.scheduled is not None:
        assert due.scheduled <= NOW
        cronjob.new_job(cj, due.scheduled)
