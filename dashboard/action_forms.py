"""The operator action forms (django.forms): each input checked by its field, errors keyed by it.

Replay options and the reschedule delay go through runs.options (parse_trigger_options,
parse_delay), so the dashboard applies the REST API's rules and messages; each option is
checked on its own, so every wrong input is reported at once, next to itself. Templates get
the errors as {input name: message} ("form" for the whole form) from `errors_of`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS
from django.utils import timezone

from runs import packets, textcheck
from runs.engine import MAX_QUEUE_LIMIT, TriggerOptions
from runs.models import Run
from runs.options import OptionError, parse_delay, parse_trigger_options

MAX_REASON = 500  # characters; the timeline adds what happened in front (RunEvent.reason: 512)
MAX_EDITABLE = 100_000  # characters of payload JSON offered for editing; bigger ones replay as they are
WHEN = ("delay", "at", "now")
# Replay inputs -> the TriggerOptions field replay_run would otherwise copy from the original.
REPLAY_OPTIONS = {"metadata": "metadata", "tags": "tags", "queue": "queue", "machine": "machine"}
CHOOSE_WHEN = "Choose when the run starts: after a delay, at a date and time, or now"
SAY_WHY = "Say why: the reason goes into every run's timeline and the audit log"


def errors_of(form: forms.Form) -> dict[str, str]:
    """The form's errors as the templates show them: by input name, "form" for the whole form."""
    errors = form.errors.items()
    return {("form" if name == NON_FIELD_ERRORS else name): " ".join(map(str, messages)) for name, messages in errors}


def values_of(form: forms.Form) -> dict[str, Any]:
    """What each input shows: as posted (missing: ""), or the initial value of an unbound form."""
    return {bound.name: "" if bound.value() is None else bound.value() for bound in form}


def pretty(value: Any) -> str:
    """A JSON value as the form's textarea shows it ("" for none)."""
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def at_input(when: datetime | None) -> str:
    """A time as a datetime-local input's value, in UTC like every time in the dashboard."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if when else ""


def future_time(text: str, now: datetime) -> datetime | None:
    """An optional datetime-local input (UTC, as every time the dashboard shows): None when
    empty; ValidationError when it is no date and time or not in the future."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise forms.ValidationError(
            f"Enter a date and time in UTC, like {at_input(now)} ({text[:40]!r} is not one)", code="invalid"
        ) from None
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if at <= now:
        raise forms.ValidationError(f"Enter a time in the future (it is {at_input(now)} UTC now)", code="past")
    return at


class ReasonField(forms.CharField):
    """The optional reason, trimmed; too long to keep is an error."""

    def __init__(self, **kwargs: Any) -> None:
        message = "Reason must be at most %(limit_value)d characters (%(show_value)d given)"
        super().__init__(required=False, max_length=MAX_REASON, error_messages={"max_length": message}, **kwargs)


class ActionForm(forms.Form):
    """An action with only a reason (cancel, resume, drain...); the base of the others."""

    reason = ReasonField()

    def __init__(self, *args: Any, now: datetime | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now or timezone.now()


class PauseForm(ActionForm):
    """Pause a task, an environment or a queue; optionally until a time."""

    resume_at = forms.CharField(required=False)

    def clean_resume_at(self) -> datetime | None:
        return future_time(self.cleaned_data["resume_at"], self.now)


class OverrideForm(ActionForm):
    """Override a queue's concurrency limit; optionally until a time."""

    limit = forms.CharField(required=False)
    until = forms.CharField(required=False)

    def clean_limit(self) -> int:
        text = self.cleaned_data["limit"]
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_QUEUE_LIMIT:
            raise forms.ValidationError(f"Limit must be a whole number from 0 to {MAX_QUEUE_LIMIT}", code="limit")
        return int(text)

    def clean_until(self) -> datetime | None:
        return future_time(self.cleaned_data["until"], self.now)


class BulkForm(ActionForm):
    """The reason of a bulk action: required once the action is confirmed."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "confirm" in self.data and not cleaned.get("reason") and "reason" not in self.errors:
            self.add_error("reason", forms.ValidationError(SAY_WHY, code="required"))
        return cleaned


# --- reschedule ---------------------------------------------------------------------------


class RescheduleForm(ActionForm):
    """When a delayed run starts: cleaned_data["delay_until"] (None: now)."""

    when = forms.ChoiceField(
        choices=[(when, when) for when in WHEN],
        error_messages={"required": CHOOSE_WHEN, "invalid_choice": CHOOSE_WHEN},
    )
    delay = forms.CharField(required=False)
    at = forms.CharField(required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        when = cleaned.get("when")
        cleaned["delay_until"] = None
        if when == "delay":
            cleaned["delay_until"] = self.delay_until(cleaned["delay"])
        elif when == "at":
            cleaned["delay_until"] = self.at_time(cleaned["at"])
        return cleaned

    def delay_until(self, text: str) -> datetime | None:
        if not text:
            self.add_error("delay", forms.ValidationError('Enter a delay like "30m", "1h30m" or "2d"', code="required"))
            return None
        try:
            return parse_delay(text, self.now)
        except OptionError as exc:
            self.add_error("delay", forms.ValidationError(exc.message, code="invalid"))
        return None

    def at_time(self, text: str) -> datetime | None:
        # Empty is an error too: "at" with no time must not start the run now.
        if text:
            try:
                return parse_delay(text, self.now)
            except OptionError:
                pass
        message = f"Enter a date and time in the future, in UTC, like {at_input(self.now)}"
        self.add_error("at", forms.ValidationError(message + (f" ({text!r} is not)" if text else ""), code="invalid"))
        return None


# --- replay -------------------------------------------------------------------------------


@dataclass
class PayloadEditor:
    """The original payload as the replay form offers it."""

    text: str = ""
    editable: bool = False
    value: Any = None
    is_text: bool = False  # a text/plain payload is edited as text, not JSON
    note: str = ""  # why it cannot be edited


def payload_editor(run: Run) -> PayloadEditor:
    """The run's payload as editable text (JSON, or plain text), unless it is too big or unreadable."""
    try:
        value = packets.load(run.payload, run.payload_type, environment_id=run.environment_id)
        is_text = run.payload_type == packets.TEXT
        text = value if is_text else pretty(value)
        text.encode("utf-8")  # a lone surrogate (from a JSON escape) cannot go into the page
    except packets.PacketError as exc:
        return PayloadEditor(note=f"The payload cannot be read ({exc}); the replay gets it as stored.")
    except RecursionError:
        return PayloadEditor(note="The payload is nested too deeply to edit here; the replay gets it as stored.")
    except (UnicodeEncodeError, ValueError):
        note = "The payload holds text that is not valid Unicode, so it cannot be edited here; "
        note += "the replay gets it as stored."
        return PayloadEditor(note=note)
    if len(text) > MAX_EDITABLE:
        note = f"The payload is {len(text):,} characters, too big to edit here; the replay gets it as it is."
        return PayloadEditor(note=note)
    return PayloadEditor(text=text, editable=True, value=value, is_text=is_text)


@dataclass
class Replay:
    """What replay_run takes: only the inputs that differ from the original override it."""

    options: TriggerOptions = field(default_factory=TriggerOptions)
    overridden: set[str] = field(default_factory=set)
    payload: tuple[str, str] | None = None  # (data, content type), not offloaded yet
    changed: list[str] = field(default_factory=list)  # inputs that differ from the original


class ReplayForm(ActionForm):
    """The replay's changes from the original run: cleaned_data["replay"] (a Replay).

    `editor` is None when the user may not see payloads: the form has no payload and no
    metadata then, and the replay gets them as they are.
    """

    payload = forms.CharField(required=False, strip=False)
    metadata = forms.CharField(required=False, strip=False)
    tags = forms.CharField(required=False, strip=False)
    queue = forms.CharField(required=False)
    machine = forms.CharField(required=False, strip=False)
    delay = forms.CharField(required=False)
    request_key = forms.CharField(required=False, strip=False)  # a double submit makes one replay

    def __init__(self, *args: Any, run: Run, editor: PayloadEditor | None, **kwargs: Any) -> None:
        initial = {"tags": ", ".join(run.tags), "queue": run.queue, "machine": run.machine}
        initial["request_key"] = secrets.token_urlsafe(12)
        if editor is not None:
            initial |= {"payload": editor.text, "metadata": pretty(run.metadata)}
        super().__init__(*args, initial=initial | kwargs.pop("initial", {}), **kwargs)
        self.run, self.editor = run, editor
        if editor is None:
            del self.fields["payload"], self.fields["metadata"]

    def clean_payload(self) -> tuple[str, str] | None:
        assert self.editor is not None  # the field exists only with an editor
        return edited_payload(self.run, self.cleaned_data["payload"], self.editor)

    def clean_metadata(self) -> dict[str, Any] | None:
        text = self.cleaned_data["metadata"]
        if not text.strip():
            return None
        value = json_value(text, "metadata", "Metadata")
        if not isinstance(value, dict):
            raise forms.ValidationError('Metadata must be a JSON object, like {"key": "value"}', code="object")
        return value

    def clean_tags(self) -> list[str]:
        return [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        raw = self.changed_options(cleaned)
        for key, value in raw.items():
            try:
                parse_trigger_options({key: value}, now=self.now)
            except OptionError as exc:
                name = exc.field.split(".")[0]
                self.add_error(name if name in self.fields else None, forms.ValidationError(exc.message, code="option"))
        if self.errors:
            return cleaned
        replay = Replay(payload=cleaned.get("payload"))
        replay.options = parse_trigger_options({k: v for k, v in raw.items() if v is not None}, now=self.now)
        replay.overridden = {REPLAY_OPTIONS[key] for key in raw if key in REPLAY_OPTIONS}
        replay.changed = (["payload"] if replay.payload is not None else []) + sorted(raw)
        cleaned["replay"] = replay
        return cleaned

    def changed_options(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        """The options as the API would take them, of the inputs that differ from the original."""
        run, raw = self.run, {}
        if "metadata" in cleaned and cleaned["metadata"] != run.metadata:
            raw["metadata"] = cleaned["metadata"]
        if "tags" in cleaned and cleaned["tags"] != list(run.tags):
            raw["tags"] = cleaned["tags"]
        if "queue" in cleaned and cleaned["queue"] != run.queue:
            raw["queue"] = cleaned["queue"] or None  # empty: the task's own queue
        if "machine" in cleaned and cleaned["machine"] != run.machine:
            raw["machine"] = cleaned["machine"]
        if cleaned.get("delay"):
            raw["delay"] = cleaned["delay"]
        return raw


def json_value(text: str, name: str, label: str, *, nul: bool = True) -> Any:
    """Typed JSON text, or ValidationError naming the input (nesting, NUL, surrogates, syntax);
    `label` starts the syntax error ("Payload is not valid JSON: ...")."""
    try:
        return textcheck.loads(text, name, nul=nul)
    except textcheck.UnstorableValue as exc:
        raise forms.ValidationError(exc.message, code="unstorable") from None
    except json.JSONDecodeError as exc:
        message = f"{label} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise forms.ValidationError(message, code="json") from None


def edited_payload(run: Run, text: str, editor: PayloadEditor) -> tuple[str, str] | None:
    """(data, content type) of an edited payload, not offloaded yet; None when it is unchanged
    (the original is then kept exactly as stored, SuperJSON meta included)."""
    if not editor.editable:
        return None
    if editor.is_text:
        if text == editor.text:
            return None
        data, content_type = text, packets.TEXT
    else:
        value = json_value(text, "payload", "Payload", nul=False) if text.strip() else None
        if value == editor.value:
            return None
        # Kept in the original's format, so SDK workers read it as they read the original.
        if run.payload_type == packets.JSON:
            data, content_type = packets.encode(value)
        else:
            data = json.dumps({"json": value}, separators=(",", ":")) if value is not None else ""
            content_type = packets.SUPERJSON
    try:
        packets.check_size(data, settings.RUNYARD_MAX_PAYLOAD_BYTES, "Payload")
    except packets.PacketTooLarge as exc:
        raise forms.ValidationError(str(exc), code="size") from None
    return data, content_type


def offloaded(run: Run, payload: tuple[str, str] | None) -> tuple[str, str] | None:
    """An edited payload as the run stores it (big ones go to the object store)."""
    if payload is None:
        return None
    data, content_type = payload
    path = packets.new_path("payload", content_type)
    return packets.offload(data, content_type, environment_id=run.environment_id, path=path)
