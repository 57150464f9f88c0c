"""The operator action forms on their own: each input's rule, its error keyed by the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboard.action_forms import (
    ActionForm,
    BulkForm,
    OverrideForm,
    PauseForm,
    ReplayForm,
    RescheduleForm,
    errors_of,
    payload_editor,
    values_of,
)
from runs.engine import MAX_QUEUE_LIMIT
from runs.models import Run
from tests import factories

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


# --- the reason, and times in the future ----------------------------------------------------


def test_the_reason_is_trimmed_and_optional() -> None:
    form = ActionForm({"reason": "  wrong customer \n"})
    assert form.is_valid() and form.cleaned_data["reason"] == "wrong customer"
    empty = ActionForm({})
    assert empty.is_valid() and empty.cleaned_data["reason"] == ""


def test_a_reason_over_500_characters_is_an_error_on_the_reason() -> None:
    form = ActionForm({"reason": "x" * 501})
    assert not form.is_valid()
    assert form.errors["reason"] == ["Reason must be at most 500 characters (501 given)"]
    assert errors_of(form) == {"reason": "Reason must be at most 500 characters (501 given)"}


def test_a_pause_may_lift_at_a_time_in_the_future() -> None:
    form = PauseForm({"resume_at": "2026-12-01T10:00"}, now=NOW)
    assert form.is_valid()
    assert form.cleaned_data == {"reason": "", "resume_at": datetime(2026, 12, 1, 10, 0, tzinfo=UTC)}
    assert PauseForm({"resume_at": ""}, now=NOW).is_valid()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tomorrow", "Enter a date and time in UTC, like 2026-12-01T09:30 ('tomorrow' is not one)"),
        ("2026-12-01T09:30", "Enter a time in the future (it is 2026-12-01T09:30 UTC now)"),
    ],
)
def test_a_resume_time_that_is_no_time_or_not_ahead_is_an_error_on_it(text: str, message: str) -> None:
    form = PauseForm({"resume_at": text}, now=NOW)
    assert not form.is_valid() and form.errors == {"resume_at": [message]}


@pytest.mark.parametrize("limit", ["", "x", "-1", "2.5", "١٢", str(MAX_QUEUE_LIMIT + 1)])
def test_an_override_limit_must_be_a_whole_number_in_range(limit: str) -> None:
    form = OverrideForm({"limit": limit}, now=NOW)
    assert form.errors["limit"] == [f"Limit must be a whole number from 0 to {MAX_QUEUE_LIMIT}"]


def test_an_override_takes_its_limit_and_an_optional_end() -> None:
    form = OverrideForm({"limit": " 7 ", "until": "2026-12-02T00:00"}, now=NOW)
    assert form.is_valid()
    assert (form.cleaned_data["limit"], form.cleaned_data["until"]) == (7, datetime(2026, 12, 2, tzinfo=UTC))
    assert OverrideForm({"limit": "3", "until": "2020-01-01T00:00"}, now=NOW).errors.keys() == {"until"}


def test_a_confirmed_bulk_action_needs_a_reason() -> None:
    assert BulkForm({"reason": ""}).is_valid()  # the preview: no reason yet
    form = BulkForm({"reason": "  ", "confirm": "1"})
    assert form.errors == {"reason": ["Say why: the reason goes into every run's timeline and the audit log"]}
    assert BulkForm({"reason": "dup", "confirm": "1"}).is_valid()


# --- reschedule ---------------------------------------------------------------------------


def reschedule(data: dict[str, str]) -> RescheduleForm:
    form = RescheduleForm(data, now=NOW)
    form.is_valid()
    return form


def test_reschedule_by_a_delay_at_a_time_or_now() -> None:
    assert reschedule({"when": "delay", "delay": "1h30m"}).cleaned_data["delay_until"] == NOW + timedelta(minutes=90)
    at = reschedule({"when": "at", "at": "2026-12-03T08:00"}).cleaned_data["delay_until"]
    assert at == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    now = reschedule({"when": "now", "delay": "ignored"})
    assert now.is_valid() and now.cleaned_data["delay_until"] is None


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"when": "someday"}, "when", "Choose when the run starts: after a delay, at a date and time, or now"),
        ({}, "when", "Choose when the run starts"),
        ({"when": "delay", "delay": ""}, "delay", 'Enter a delay like "30m", "1h30m" or "2d"'),
        ({"when": "delay", "delay": "soon"}, "delay", "Invalid delay 'soon': use a duration like"),
        ({"when": "at", "at": ""}, "at", "Enter a date and time in the future, in UTC, like 2026-12-01T09:30"),
        ({"when": "at", "at": "2001-01-01T10:00"}, "at", "('2001-01-01T10:00' is not)"),
    ],
)
def test_bad_reschedule_input_is_an_error_on_its_field(data: dict[str, str], field: str, message: str) -> None:
    form = reschedule(data)
    assert list(form.errors) == [field]
    assert message in form.errors[field][0]


def test_the_reschedule_form_shows_its_initial_values_then_what_was_posted() -> None:
    initial = {"when": "delay", "at": "2026-12-01T10:00"}
    assert values_of(RescheduleForm(initial=initial, now=NOW)) == {
        "reason": "",
        "when": "delay",
        "delay": "",
        "at": "2026-12-01T10:00",
    }
    assert values_of(RescheduleForm({"when": "now"}, initial=initial, now=NOW))["at"] == ""


# --- replay -------------------------------------------------------------------------------


def replay_form(run: Run, change: dict[str, str], *, sees_payload: bool = True) -> ReplayForm:
    """The replay form as the page fills it in, with `change` typed over it."""
    editor = payload_editor(run) if sees_payload else None
    shown = values_of(ReplayForm(run=run, editor=editor, now=NOW))
    form = ReplayForm(shown | change, run=run, editor=editor, now=NOW)
    form.is_valid()
    return form


@pytest.mark.django_db
def test_an_unchanged_replay_overrides_nothing() -> None:
    run = factories.run(payload={"n": 1}, tags=["a", "b"], metadata={"m": 1})
    form = replay_form(run, {})
    assert form.is_valid(), form.errors
    replay = form.cleaned_data["replay"]
    assert (replay.payload, replay.overridden, replay.changed) == (None, set(), [])
    assert len(form.cleaned_data["request_key"]) >= 16


@pytest.mark.django_db
def test_only_the_inputs_that_differ_from_the_original_override_it() -> None:
    run = factories.run(payload={"n": 1}, tags=["a"], metadata={"m": 1})
    form = replay_form(run, {"payload": '{"n": 2}', "tags": "a, b", "queue": "", "delay": "10m"})
    assert form.is_valid(), form.errors
    replay = form.cleaned_data["replay"]
    assert replay.payload == ('{"json":{"n":2}}', "application/super+json")  # the original's format
    assert replay.overridden == {"tags", "queue"} and replay.changed == ["payload", "delay", "queue", "tags"]
    assert replay.options.tags == ["a", "b"] and replay.options.queue is None
    assert replay.options.delay_until == NOW + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"payload": "{not json"}, "payload", "Payload is not valid JSON: Expecting property name"),
        ({"metadata": "[1, 2]"}, "metadata", 'Metadata must be a JSON object, like {"key": "value"}'),
        ({"metadata": "{oops"}, "metadata", "Metadata is not valid JSON"),
        ({"machine": "huge-9x"}, "machine", "options.machine must be one of"),
        ({"tags": ",".join(f"t{n}" for n in range(11))}, "tags", "Too many tags: 11 given"),
        ({"delay": "whenever"}, "delay", "Invalid delay 'whenever'"),
        ({"queue": "q" * 300}, "queue", "options.queue.name must be at most 256 characters"),
        ({"reason": "r" * 501}, "reason", "Reason must be at most 500 characters"),
    ],
)
@pytest.mark.django_db
def test_each_bad_replay_input_is_an_error_on_its_field(change: dict[str, str], field: str, message: str) -> None:
    form = replay_form(factories.run(payload={"n": 1}), change)
    assert list(form.errors) == [field]
    assert message in form.errors[field][0]
    assert "replay" not in form.cleaned_data


@pytest.mark.django_db
def test_every_wrong_replay_input_is_reported_at_once() -> None:
    form = replay_form(factories.run(), {"payload": "{", "machine": "nope", "delay": "x", "metadata": "1"})
    assert set(form.errors) == {"payload", "machine", "delay", "metadata"}


@pytest.mark.django_db
def test_without_the_payload_permission_the_form_has_no_payload_nor_metadata() -> None:
    run = factories.run(payload={"secret": 1}, metadata={"m": 1})
    form = replay_form(run, {"payload": '{"x": 1}', "metadata": "{}"}, sees_payload=False)
    assert "payload" not in form.fields and "metadata" not in form.fields
    assert form.is_valid() and form.cleaned_data["replay"].payload is None
    assert "metadata" not in form.cleaned_data["replay"].overridden


@pytest.mark.django_db
def test_a_text_payload_is_edited_as_text() -> None:
    run = factories.run()
    Run.objects.filter(pk=run.pk).update(payload="hello", payload_type="text/plain")
    run.refresh_from_db()
    assert replay_form(run, {}).cleaned_data["replay"].payload is None
    edited: Any = replay_form(run, {"payload": "{not json, just text"}).cleaned_data["replay"].payload
    assert edited == ("{not json, just text", "text/plain")
