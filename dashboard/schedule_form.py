"""The dashboard's schedule form: what an operator types, checked by runs.schedule_spec.

The form only turns text into the JSON the API takes (payload and options are JSON text);
parse_schedule applies the rules, so the dashboard and the REST API refuse the same things
with the same words, each shown next to the field it names.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms

from runs.models import Missed, Overlap, Schedule
from runs.schedule_spec import ScheduleSpec, ScheduleSpecError, parse_schedule
from runs.textcheck import UnstorableValue, loads

# parse_schedule's field names (the wire's) -> the form's.
FIELDS = {
    "task": "task",
    "cron": "cron",
    "timezone": "timezone",
    "externalId": "external_id",
    "deduplicationKey": "deduplication_key",
    "payload": "payload",
    "options": "options",
    "active": "active",
    "overlap": "overlap",
    "missed": "missed",
}


class ScheduleForm(forms.Form):
    task = forms.CharField(max_length=128, help_text="A task workers serve, or any task id.")
    cron = forms.CharField(max_length=128, help_text="Five fields (minute hour day month weekday) or @hourly, @daily…")
    timezone = forms.CharField(
        label="Time zone", max_length=64, initial="UTC", help_text="An IANA name: the cron is read in it."
    )
    external_id = forms.CharField(
        label="External id", max_length=256, required=False, help_text="Your own id, e.g. a customer's."
    )
    deduplication_key = forms.CharField(
        label="Deduplication key",
        max_length=256,
        required=False,
        help_text="Creating again with this key updates that schedule instead of making another.",
    )
    payload = forms.CharField(
        widget=forms.Textarea, required=False, help_text="JSON given to each run beside the tick's details."
    )
    options = forms.CharField(
        label="Trigger options",
        widget=forms.Textarea,
        required=False,
        help_text='JSON of trigger options, e.g. {"tags": ["nightly"], "maxAttempts": 3}.',
    )
    overlap = forms.ChoiceField(
        choices=[(Overlap.ALLOW, "Allow: fire even while the last run is unfinished"), (Overlap.SKIP, "Skip the tick")],
        initial=Overlap.ALLOW,
        label="While the last run is unfinished",
    )
    missed = forms.ChoiceField(
        choices=[(Missed.ONCE, "Fire once on recovery"), (Missed.SKIP, "Skip them")],
        initial=Missed.ONCE,
        label="Ticks missed while no engine ran",
    )
    active = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, base: ScheduleSpec | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base = base
        if base is not None:
            del self.fields["deduplication_key"]  # it names the schedule; editing keeps it

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        data = {
            "task": cleaned["task"].strip(),
            "cron": cleaned["cron"],
            "timezone": cleaned["timezone"].strip(),
            "externalId": cleaned["external_id"] or None,
            "payload": self.json_field("payload"),
            "options": self.json_field("options"),
            "overlap": cleaned["overlap"],
            "missed": cleaned["missed"],
            "active": cleaned["active"],
        }
        if self.base is None:
            data["deduplicationKey"] = cleaned["deduplication_key"] or None
        if self.errors:
            return cleaned
        try:
            cleaned["spec"] = parse_schedule(data, base=self.base)
        except ScheduleSpecError as exc:
            self.add_error(field_of(exc.field), exc.message)
        return cleaned

    def json_field(self, name: str) -> Any:
        text = self.cleaned_data.get(name, "").strip()
        if not text:
            return None
        try:
            return loads(text, name)
        except UnstorableValue as exc:
            self.add_error(name, exc.message)
        except ValueError as exc:
            self.add_error(name, f"{name} is not valid JSON: {exc}")
        return None


def field_of(name: str) -> str | None:
    """The form field a parse error names (options.tags -> options); None: the whole form."""
    return FIELDS.get(name.split(".")[0])


def initial_of(schedule: Schedule) -> dict[str, Any]:
    """The edit form's values: the schedule as it is."""
    return {
        "task": schedule.task_id,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "external_id": schedule.external_id or "",
        "payload": pretty(schedule.payload),
        "options": pretty(schedule.options or None),
        "overlap": schedule.overlap,
        "missed": schedule.missed,
        "active": schedule.active,
    }


def pretty(value: Any) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)
