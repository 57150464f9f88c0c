"""Property tests of the input parsers: whatever arrives, the answer is a value or the documented
error naming the field (OptionError, ItemError), never another exception."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api import batches
from runs.models import Environment
from runs.options import (
    _PARSERS,
    DURATION_RE,
    OptionError,
    camel_case,
    parse_delay,
    parse_duration,
    parse_payload,
    parse_trigger_options,
)
from tests import factories

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STATUSES = {400, 413, 422}

# Any value JSON can carry, integers of any size included (json.loads makes 400-digit ints).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**31, 2**31 - 1, 2**63, -1, 0, 0.5, 1e308, -1e308, 5e-324]),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
)
# Strings that look like durations, dates or near misses, with numbers far past any limit.
durations = st.from_regex(DURATION_RE, fullmatch=True).filter(lambda text: len(text) <= 100)
time_strings = st.one_of(
    durations,
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**30), st.sampled_from(["w", "d", "hr", "h", "m", "s"])),
    st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda when: when.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59", "0001-01-01", "2026-11-28T12:00:00+14:00", "P1D", "now", ""]),
    st.text(max_size=40),
)
option_keys = st.sampled_from([*_PARSERS, "delay", *(key for key in ("max_attempts", "idempotency_key_ttl"))])
option_values = st.one_of(
    json_values,
    time_strings,
    st.dictionaries(
        st.sampled_from(["name", "concurrencyLimit", "key", "delay", "mode", "maxDelay", "max_delay"]),
        st.one_of(json_values, time_strings),
        max_size=4,
    ),
)
options = st.dictionaries(option_keys | st.text(max_size=12), option_values, max_size=6)


def assert_named(error: OptionError) -> None:
    assert error.status in STATUSES, error.status
    assert error.message and error.field
    field = camel_case(error.field.split(".")[0])
    assert field in error.message or error.field in error.message or "options" in error.message, error.message


@given(st.text(max_size=120))
@example("99999999999999999999999999w")
def test_parse_duration_is_seconds_or_none(text: str) -> None:
    seconds = parse_duration(text)
    assert seconds is None or (isinstance(seconds, int) and seconds >= 0)


@given(durations)
def test_every_well_formed_duration_has_its_seconds(text: str) -> None:
    assert isinstance(parse_duration(text), int)


@given(st.one_of(json_values, time_strings, st.datetimes(timezones=st.none() | st.just(UTC))))
@example("99999999999999d")
@example("9999-12-31T23:59:59.999999+00:00")
@example("0001-01-01T00:00:00+14:00")
def test_parse_delay_is_a_future_time_or_a_422_naming_delay(value: Any) -> None:
    try:
        when = parse_delay(value, NOW)
    except OptionError as error:
        assert error.field == "delay" and error.status == 422 and "delay" in error.message
        return
    assert when.tzinfo is not None and when > NOW


@given(st.one_of(options, json_values))
@example({"delay": "99999999999999d"})
@example({"maxAttempts": 10**400})
@example({"maxDuration": 10**400})
@example({"ttl": 10**400})
@example({"concurrencyKey": 10**400})
@example({"idempotencyKeyTTL": 10**400})
@example({"queue": {"name": "q", "concurrencyLimit": 10**400}})
@example({"priority": 10**400})
@example({"debounce": {"key": "k", "delay": "99999999999999w"}})
def test_parse_trigger_options_returns_options_or_an_error_naming_the_option(raw: Any) -> None:
    try:
        parsed = parse_trigger_options(raw, now=NOW)
    except OptionError as error:
        assert_named(error)
        return
    assert parsed.raw == (raw or {})
    json.dumps(parsed.raw, allow_nan=False)  # what Run.options stores


@given(json_values, st.one_of(st.none(), st.sampled_from(["application/json", "application/super+json", "text/plain"])))
@example('{"json": 1}', "application/super+json")
@example("\x00", "text/plain")
def test_parse_payload_stores_a_value_or_names_the_payload_problem(payload: Any, payload_type: Any) -> None:
    try:
        data, content_type = parse_payload(payload, payload_type)
    except OptionError as error:
        assert error.field in {"payload", "payloadType"} and error.status == 400
        return
    assert isinstance(data, str) and content_type


# --- NDJSON batch items ---------------------------------------------------------------------

items = st.fixed_dictionaries(
    {"index": st.one_of(st.integers(-5, 2000), json_values), "task": st.one_of(st.just("hello-world"), json_values)},
    optional={"payload": json_values, "options": st.one_of(options, json_values)},
)
lines = st.one_of(
    items.map(lambda item: json.dumps(item).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.text(max_size=80).map(str.encode),
    st.sampled_from([b"{", b'{"index": 1e999}', b'{"index": NaN}', b"[" * 100_000, b'{"index":0,"task":"\xff"}']),
)


@pytest.mark.django_db
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
@given(lines)
@example(b'{"index": 0, "task": "hello-world", "options": {"delay": "99999999999999d"}}')
@example(b'{"index": 0, "task": "hello-world", "options": {"maxAttempts": ' + b"9" * 400 + b"}}")
@example(b'{"index": 0, "task": "hello-world", "payload": "x/../y", "options": {"payloadType": "application/store"}}')
def test_an_ndjson_line_becomes_an_item_or_an_item_error_naming_its_index(dev: Environment, line: bytes) -> None:
    try:
        item = batches._item(1, line, dev, NOW)
    except batches.ItemError as error:
        assert error.http_status in {400, 413, 422}
        assert str(error).startswith("Batch item ") and error.detail
        return
    assert item.task_id == "hello-world" and item.index >= 0


@pytest.fixture
def dev(db: None) -> Environment:
    return factories.environment("dev")
