from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runs.options import (
    OptionError,
    format_duration,
    parse_duration,
    parse_payload,
    parse_task_id,
    parse_trigger_options,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("10m", 600), ("2h30m", 9000), ("1hr", 3600), ("1d", 86400), ("1w2d", 777600), ("0s", 0)],
)
def test_duration_grammar_of_the_reference(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "m", "1.5h", "10 m", "1y", "-1h", "1h" * 60])
def test_invalid_durations_are_none(text):
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(600, "10m"), (3661, "1h1m1s"), (90000, "1d1h"), (604800, "1w"), (0, "")]
)
def test_durations_are_stringified_like_the_reference(seconds, text):
    assert format_duration(seconds) == text


def test_no_options_give_the_defaults():
    options = parse_trigger_options(None)
    assert (options.queue, options.tags, options.ttl, options.machine, options.raw) == (None, [], None, None, {})


def test_raw_options_are_kept_as_given():
    raw = {"payloadType": "application/json", "delay": "1h", "idempotencyKey": "k", "lockToVersion": "v1"}
    assert parse_trigger_options(raw).raw == raw


def test_null_options_are_treated_as_absent():
    options = parse_trigger_options({"ttl": None, "tags": None, "machine": None})
    assert (options.ttl, options.tags, options.machine) == (None, [], None)


@pytest.mark.parametrize(("value", "seconds"), [("1h", 3600), (600, 600), (0, 0), (600.0, 600)])
def test_ttl_is_a_duration_or_seconds(value, seconds):
    assert parse_trigger_options({"ttl": value}).ttl == seconds


def test_single_tag_string_becomes_a_list_and_duplicates_go():
    assert parse_trigger_options({"tags": "one"}).tags == ["one"]
    assert parse_trigger_options({"tags": ["a", "b", "a"]}).tags == ["a", "b"]


def test_max_duration_is_clamped_like_the_reference_server():
    assert parse_trigger_options({"maxDuration": 1}).max_duration == 5
    assert parse_trigger_options({"maxDuration": 2.5e10}).max_duration == 2**31 - 1
    assert parse_trigger_options({"maxDuration": 300.2}).max_duration == 301


def test_booleans_are_not_numbers():
    with pytest.raises(OptionError):
        parse_trigger_options({"maxAttempts": True})
    with pytest.raises(OptionError):
        parse_trigger_options({"concurrencyKey": True})


@pytest.mark.parametrize(
    ("raw", "field", "status"),
    [
        ({"tags": [str(i) for i in range(11)]}, "tags", 422),
        ({"tags": ["x" * 129]}, "tags", 400),
        ({"tags": [1]}, "tags", 400),
        ({"metadata": {"big": "x" * 300_000}}, "metadata", 413),
        ({"machine": "tiny"}, "machine", 400),
        ({"priority": -1}, "priority", 400),
        ({"ttl": 2**31}, "ttl", 400),
        ({"maxAttempts": 1.5}, "maxAttempts", 400),
        ({"unknown": float("nan")}, "options", 400),
        ({"unknown": object()}, "options", 400),
    ],
)
def test_rejected_options_name_the_field_and_status(raw, field, status):
    with pytest.raises(OptionError) as caught:
        parse_trigger_options(raw)
    assert (caught.value.field, caught.value.status) == (field, status)


def test_payload_types():
    assert parse_payload('{"json":1}', "application/super+json") == ('{"json":1}', "application/super+json")
    assert parse_payload("[1]", None) == ("[1]", "application/json")
    assert parse_payload("plain", "text/plain") == ("plain", "text/plain")
    assert parse_payload({"a": 1}, "application/super+json") == ('{"a":1}', "application/json")
    assert parse_payload(None, "application/json") == ("", "application/json")


def test_task_ids_must_be_registrable():
    assert parse_task_id("emails/send:v2") == "emails/send:v2"
    with pytest.raises(OptionError):
        parse_task_id("has space")


# --- delay --------------------------------------------------------------------------------

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("88s", NOW + timedelta(seconds=88)),
        ("1h52m18s", NOW + timedelta(hours=1, minutes=52, seconds=18)),
        ("2w", NOW + timedelta(weeks=2)),
        ("2026-11-28T13:00:00Z", datetime(2026, 11, 28, 13, 0, tzinfo=UTC)),
        ("2026-11-28T14:00:00+01:00", datetime(2026, 11, 28, 13, 0, tzinfo=UTC)),
        ("2026-11-28T13:00:00", datetime(2026, 11, 28, 13, 0, tzinfo=UTC)),
        (datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC)),
    ],
)
def test_delay_accepts_durations_iso_dates_and_datetimes(value: object, expected: datetime) -> None:
    assert parse_trigger_options({"delay": value}, now=NOW).delay_until == expected


@pytest.mark.parametrize("value", ["2026-11-28T11:59:59Z", "soon", "5 minutes", "", "1x", 42])
def test_a_past_or_unparseable_delay_is_a_422_naming_the_value(value: object) -> None:
    with pytest.raises(OptionError) as caught:
        parse_trigger_options({"delay": value}, now=NOW)
    assert caught.value.status == 422 and caught.value.field == "delay"
    assert repr(value) in caught.value.message
