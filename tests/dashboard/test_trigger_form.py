"""The manual trigger form on its own: each field's rule (the API's, from runs.options), its
error keyed by the field, and the options and payload it gives the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.http import QueryDict

from dashboard.trigger_form import TriggerForm, option_fields
from runs.options import parse_trigger_options

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
SCHEMA = {
    "type": "object",
    "properties": {
        "day": {"type": "string"},
        "copies": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "default": None},
        "format": {"enum": ["pdf", "csv"], "default": "pdf"},
        "draft": {"type": "boolean"},
    },
    "required": ["day"],
}


def trigger(data: dict[str, str], schema: dict[str, Any] | None = None) -> TriggerForm:
    form = TriggerForm(data, task_id="form-test-report", schema=schema, now=NOW)
    form.is_valid()
    return form


def test_the_inputs_keep_the_apis_option_names() -> None:
    form = TriggerForm(task_id="t", schema=None)
    names = {bound.name: bound.html_name for bound in form}
    assert names["idempotency_key"] == "idempotencyKey" and names["debounce_max_delay"] == "debounce.maxDelay"
    assert names["queue_limit"] == "queue.concurrencyLimit" and names["delay"] == "delay"
    assert option_fields(form)["debounce_key"] == {
        "name": "debounce.key",
        "id": "opt-debounce_key",
        "value": "",
        "error": "",
    }


def test_the_filled_inputs_become_the_options_the_api_would_take() -> None:
    data = {
        "payload": '{"n": 1}',
        "metadata": '{"m": 2}',
        "delay": "1h",
        "ttl": "600",
        "idempotencyKey": " k ",
        "debounce.key": "d",
        "debounce.delay": "5s",
        "debounce.mode": "trailing",
        "queue": "manual",
        "queue.concurrencyLimit": "3",
        "priority": "2.5",
        "tags": "a, b\nc",
        "test": "true",
    }
    form = trigger(data)
    assert form.is_valid(), form.errors
    options = form.cleaned_data["options"]
    assert options.raw == {
        "delay": "1h",
        "ttl": 600,
        "idempotencyKey": "k",
        "priority": 2.5,
        "queue": {"name": "manual", "concurrencyLimit": 3},
        "debounce": {"key": "d", "delay": "5s", "mode": "trailing"},
        "tags": ["a", "b", "c"],
        "test": True,
        "metadata": {"m": 2},
    }
    assert options == parse_trigger_options(options.raw, now=NOW)  # exactly what the API makes of it
    assert options.delay_until == NOW + timedelta(hours=1) and options.is_test
    assert form.cleaned_data["payload"] == {"n": 1}


def test_an_empty_form_has_no_options_and_no_payload() -> None:
    form = trigger({"payload_mode": "json", "payload": "", "debounce.mode": "leading"})
    assert form.is_valid()
    assert form.cleaned_data["options"].raw == {} and form.cleaned_data["payload"] is None


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"payload": '{"a": 1,}'}, "payload", "payload is not valid JSON: Expecting property name"),
        ({"payload": "[" * 200 + "]" * 200}, "payload", "payload: nested deeper than 100 levels"),
        ({"metadata": "{oops"}, "metadata", "metadata is not valid JSON"),
        ({"metadata": "[1]"}, "metadata", "options.metadata must be a JSON object"),
        ({"delay": "-5m"}, "delay", "Invalid delay '-5m'"),
        ({"delay": "2001-01-01T00:00:00Z"}, "delay", "is not in the future"),
        ({"ttl": "ten minutes"}, "ttl", 'options.ttl must be a duration like "10m"'),
        ({"idempotencyKeyTTL": "forever"}, "idempotency_key_ttl", "options.idempotencyKeyTTL must be a duration"),
        ({"debounce.key": "k", "debounce.delay": "soon"}, "debounce_delay", "options.debounce.delay must be"),
        ({"debounce.delay": "5s"}, "debounce_key", "options.debounce.key must not be empty"),
        ({"debounce.key": "k", "debounce.delay": "5s", "debounce.mode": "x"}, "debounce_mode", "leading"),
        ({"debounce.key": "k", "debounce.delay": "1m", "debounce.maxDelay": "5s"}, "debounce_max_delay", "longer"),
        ({"queue.concurrencyLimit": "-1", "queue": "q"}, "queue_limit", "must be an integer of 0 or more"),
        ({"queue.concurrencyLimit": "2"}, "queue", "options.queue.name is required with"),
        ({"queue": "q" * 300}, "queue", "options.queue.name must be at most 256 characters"),
        ({"concurrencyKey": "c" * 300}, "concurrency_key", "options.concurrencyKey must be at most 256"),
        ({"priority": "-1"}, "priority", "options.priority must be a number of seconds from 0"),
        ({"maxAttempts": "0"}, "max_attempts", "options.maxAttempts must be an integer of at least 1"),
        ({"maxDuration": "1h"}, "max_duration", "options.maxDuration must be a number of seconds"),
        ({"machine": "huge-9x"}, "machine", "options.machine must be one of micro, small-1x"),
        ({"region": "r" * 65}, "region", "options.region must be at most 64 characters"),
        ({"tags": ",".join(f"t{i}" for i in range(11))}, "tags", "Too many tags: 11 given"),
    ],
)
def test_a_bad_input_is_an_error_on_its_own_field(data: dict[str, str], field: str, message: str) -> None:
    form = trigger(data)
    assert list(form.errors) == [field], form.errors
    assert message in form.errors[field][0]
    assert "options" not in form.cleaned_data


def test_every_bad_field_is_reported_at_once() -> None:
    form = trigger({"delay": "later", "machine": "huge", "payload": "nope", "maxAttempts": "x"})
    assert set(form.errors) == {"delay", "machine", "payload", "max_attempts"}


def test_the_debounce_mode_alone_asks_for_no_debounce() -> None:
    form = trigger({"debounce.mode": "trailing"})
    assert form.is_valid() and form.cleaned_data["options"].debounce is None


# --- typed payload fields ---------------------------------------------------------------------


def test_typed_fields_make_the_payload_leaving_out_what_is_empty() -> None:
    data = {"payload_mode": "fields", "p.day": "2026-12-01", "p.copies": "", "p.format": "csv", "p.draft": "true"}
    form = trigger(data, SCHEMA)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["payload"] == {"day": "2026-12-01", "format": "csv", "draft": True}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"p.day": "d", "p.copies": "many"}, "p.copies", "must be a whole number"),
        ({"p.day": "d", "p.copies": "0"}, "p.copies", "must be at least 1"),
        ({"p.day": "d", "p.format": "xls"}, "p.format", 'must be one of "pdf", "csv"'),
    ],
)
def test_a_bad_typed_field_is_an_error_on_that_field(data: dict[str, str], field: str, message: str) -> None:
    form = trigger({"payload_mode": "fields", **data}, SCHEMA)
    assert list(form.errors) == [field], form.errors
    assert message in form.errors[field][0]


def test_the_json_editor_ignores_the_typed_fields_and_is_checked_against_the_schema() -> None:
    form = trigger({"payload_mode": "json", "payload": '{"format": "xls"}', "p.copies": "many"}, SCHEMA)
    assert list(form.errors) == ["payload"]
    assert "payload.day is required" in form.errors["payload"][0]
    assert 'payload.format must be one of "pdf", "csv"' in form.errors["payload"][0]


def test_typed_fields_are_only_part_of_the_form_in_fields_mode() -> None:
    fields_mode = TriggerForm(QueryDict("payload_mode=fields"), task_id="t", schema=SCHEMA)
    assert {"p.day", "p.copies", "p.format", "p.draft"} <= set(fields_mode.fields)
    assert not any(name.startswith("p.") for name in TriggerForm(QueryDict(""), task_id="t", schema=SCHEMA).fields)
    assert "p.day" not in option_fields(fields_mode)
