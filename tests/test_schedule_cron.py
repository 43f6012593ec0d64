"""Schedules as pure functions of a clock passed in: cron and simple forms, DST, catch-up."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import ScheduleError
from newsletter.schedule.cron import (
    DEFAULT_GRACE,
    get_zone,
    next_after,
    occurrences,
    parse_instant,
    parse_local_time,
    parse_schedule,
    plan_due,
)

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")


def local(dt: datetime) -> str:
    return dt.astimezone(PARIS).isoformat()


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS)


# --- parsing -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, cron", [
    ("weekly mon 08:00", "0 8 * * mon"),
    ("weekly mon,thu 08:00", "0 8 * * mon,thu"),
    ("daily 07:30", "30 7 * * *"),
    ("monthly 1 09:00", "0 9 1 * *"),
    ("weekdays 06:05", "5 6 * * 1-5"),
    ("Weekly  MON  at 8:00", "0 8 * * mon"),
    ("0 8 * * MON", "0 8 * * MON"),
    ("@daily", "0 0 * * *"),
])
def test_simple_forms_and_cron_parse_to_the_same_fields(text, cron):
    assert parse_schedule(text).cron == cron
    assert parse_schedule(text).minutes == parse_schedule(cron).minutes


@pytest.mark.parametrize("bad, words", [
    ("0 8 * *", "5 fields"),
    ("61 * * * *", "minute 61 is out of range"),
    ("0 25 * * *", "hour 25"),
    ("0 8 * * FUNDAY", "day of week 'FUNDAY'"),
    ("0 0 30 2 *", "never matches"),
    ("*/0 * * * *", "step"),
    ("5-1 * * * *", "backwards"),
    ("weekly xyz 08:00", "'xyz'"),
    ("daily 25:00", "not a time of day"),
    ("", "empty"),
])
def test_invalid_schedules_raise_one_line_errors(bad, words):
    with pytest.raises(ScheduleError) as e:
        parse_schedule(bad)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("bad", ["Mars/Olympus", "", " Europe/Paris", "../etc/passwd"])
def test_invalid_time_zones_are_refused(bad):
    with pytest.raises(ScheduleError):
        get_zone(bad)


def test_sunday_is_0_or_7_and_mon_sun_spans_the_week():
    assert parse_schedule("0 8 * * 7").weekdays == parse_schedule("0 8 * * 0").weekdays == {0}
    assert parse_schedule("0 8 * * MON-SUN").weekdays == set(range(7))


def test_day_of_month_and_weekday_together_mean_either_like_vixie_cron():
    s = parse_schedule("0 9 13 * FRI")
    got = [local(o) for o in occurrences(s, PARIS, paris(2026, 2, 1), paris(2026, 2, 28))]
    assert got == [f"2026-02-{d:02d}T09:00:00+01:00" for d in (6, 13, 20, 27)]


def test_monthly_on_the_31st_skips_short_months():
    s = parse_schedule("monthly 31 09:00")
    got = [o.astimezone(PARIS).month for o in occurrences(s, PARIS, paris(2026, 1, 1), paris(2026, 12, 31, 23))]
    assert got == [1, 3, 5, 7, 8, 10, 12]


# --- DST -----------------------------------------------------------------------------------

def test_weekly_schedule_keeps_local_time_across_both_dst_changes():
    s = parse_schedule("weekly sun 08:00")
    got = [local(o) for o in occurrences(s, PARIS, paris(2026, 3, 20), paris(2026, 4, 6))]
    assert got == ["2026-03-22T08:00:00+01:00", "2026-03-29T08:00:00+02:00", "2026-04-05T08:00:00+02:00"]
    got = [local(o) for o in occurrences(s, PARIS, paris(2026, 10, 17), paris(2026, 11, 2))]
    assert got == ["2026-10-18T08:00:00+02:00", "2026-10-25T08:00:00+01:00", "2026-11-01T08:00:00+01:00"]


def test_0230_on_spring_forward_day_runs_once_at_the_end_of_the_gap():
    s = parse_schedule("30 2 * * SUN")
    got = [local(o) for o in occurrences(s, PARIS, paris(2026, 3, 21), paris(2026, 4, 6))]
    # 2026-03-29 02:30 does not exist in Paris (02:00 → 03:00): it runs once, at 03:00+02:00.
    assert got == ["2026-03-22T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-04-05T02:30:00+02:00"]


def test_0230_on_fall_back_day_runs_once_at_its_first_occurrence():
    s = parse_schedule("30 2 * * *")
    got = [local(o) for o in occurrences(s, PARIS, paris(2026, 10, 24, 12), paris(2026, 10, 26, 12))]
    # 2026-10-25 02:30 happens twice (+02:00, then +01:00): one run, at the first.
    assert got == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_asking_from_inside_the_repeated_hour_does_not_run_it_again():
    s = parse_schedule("30 2 * * *")
    inside_second_pass = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10+01:00, after the first 02:30
    assert local(next_after(s, PARIS, inside_second_pass)) == "2026-10-26T02:30:00+01:00"


def test_hourly_schedules_follow_elapsed_time_through_the_repeated_hour():
    s = parse_schedule("*/30 * * * *")
    got = [local(o) for o in occurrences(s, PARIS, datetime(2026, 10, 24, 23, 45, tzinfo=UTC),
                                         datetime(2026, 10, 25, 2, 0, tzinfo=UTC))]
    assert got == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
                   "2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00"]


def test_every_half_hour_collapses_the_missing_hour_into_one_run():
    s = parse_schedule("*/30 * * * *")
    got = [local(o) for o in occurrences(s, PARIS, datetime(2026, 3, 29, 0, 15, tzinfo=UTC),
                                         datetime(2026, 3, 29, 1, 45, tzinfo=UTC))]
    assert got == ["2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"]


ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "UTC", "Asia/Kolkata"]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    minute=st.integers(0, 59), hour=st.integers(0, 23),
    start=st.datetimes(datetime(2024, 1, 1), datetime(2030, 1, 1)),
)
def test_daily_schedule_runs_exactly_once_per_local_day(zone, minute, hour, start):
    tz = ZoneInfo(zone)
    s = parse_schedule(f"{minute} {hour} * * *")
    after = start.replace(tzinfo=UTC)
    got = occurrences(s, tz, after, after + timedelta(days=20))
    days = [o.astimezone(tz).date() for o in got]
    assert len(days) == len(set(days))  # never twice on one local day
    assert all(b > a for a, b in zip(got, got[1:]))
    assert 19 <= len(got) <= 21
    for o in got:
        w = o.astimezone(tz)
        # on its time, or later the same day (only when that time fell in a gap)
        assert (w.hour, w.minute) >= (hour, minute) and w.date() in days


# --- catch-up ------------------------------------------------------------------------------

WEEKLY = parse_schedule("weekly mon 08:00")
LAST = paris(2026, 11, 2, 8, 0)  # handled up to this occurrence
BACK = paris(2026, 11, 23, 9, 30)  # worker returns after three missed Mondays (9, 16, 23)


def test_catch_up_latest_sends_only_the_newest_missed_occurrence():
    plan = plan_due(WEEKLY, PARIS, LAST, BACK, "latest")
    assert [local(o) for o in plan.run] == ["2026-11-23T08:00:00+01:00"]
    assert plan.missed == 2 and plan.cursor == plan.run[0]


def test_catch_up_all_sends_every_missed_occurrence_oldest_first():
    plan = plan_due(WEEKLY, PARIS, LAST, BACK, "all")
    assert [local(o)[:10] for o in plan.run] == ["2026-11-09", "2026-11-16", "2026-11-23"]


def test_catch_up_none_sends_nothing_stale_but_an_on_time_occurrence_still_runs():
    assert plan_due(WEEKLY, PARIS, LAST, BACK, "none").run == []
    assert plan_due(WEEKLY, PARIS, LAST, BACK, "none").missed == 3
    on_time = paris(2026, 11, 23, 8, 0) + DEFAULT_GRACE - timedelta(seconds=1)
    assert len(plan_due(WEEKLY, PARIS, LAST, on_time, "none").run) == 1


def test_nothing_is_due_before_the_occurrence_and_it_is_due_at_it():
    assert plan_due(WEEKLY, PARIS, LAST, paris(2026, 11, 9, 7, 59, 59), "latest").run == []
    assert plan_due(WEEKLY, PARIS, LAST, paris(2026, 11, 9, 8, 0), "latest").run == [paris(2026, 11, 9, 8, 0)]


def test_an_unknown_catch_up_policy_is_refused():
    with pytest.raises(ScheduleError, match="catch-up 'sometimes'"):
        plan_due(WEEKLY, PARIS, LAST, BACK, "sometimes")


def test_per_minute_schedule_after_a_week_down_plans_quickly_and_runs_once():
    plan = plan_due(parse_schedule("* * * * *"), PARIS, paris(2026, 10, 20), paris(2026, 10, 27), "latest")
    assert len(plan.run) == 1 and plan.missed == 1000  # counted up to 1000


# --- times given by people -----------------------------------------------------------------

def test_local_times_are_read_in_their_zone_with_the_dst_rules():
    assert local(parse_local_time("2026-12-01 08:00", "Europe/Paris")) == "2026-12-01T08:00:00+01:00"
    assert local(parse_local_time("2026-03-29 02:30", "Europe/Paris")) == "2026-03-29T03:00:00+02:00"
    assert local(parse_local_time("2026-10-25 02:30", "Europe/Paris")) == "2026-10-25T02:30:00+02:00"
    assert parse_local_time("2026-12-01T08:00:00+00:00", "Europe/Paris") == datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_instants_need_an_offset():
    assert parse_instant("2026-12-07T08:00:05+01:00") == datetime(2026, 12, 7, 7, 0, 5, tzinfo=UTC)
    assert parse_instant("2026-12-07T07:00:05Z") == datetime(2026, 12, 7, 7, 0, 5, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="offset"):
        parse_instant("2026-12-07T08:00:05")
    with pytest.raises(ScheduleError):
        parse_local_time("next tuesday", "UTC")
