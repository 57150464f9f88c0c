"""The run action forms' inputs, parsed into what the engine takes, or errors by input name.

Replay options go through runs.options.parse_trigger_options, so the dashboard applies the
REST API's rules and messages; each option is parsed on its own first, so every wrong input is
reported at once, next to itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.http import QueryDict

from runs import packets, textcheck
from runs.engine import TriggerOptions
from runs.models import Run
from runs.options import OptionError, parse_delay, parse_trigger_options

MAX_REASON = 500  # characters; the timeline adds what happened in front (RunEvent.reason: 512)
MAX_EDITABLE = 100_000  # characters of payload JSON offered for editing; bigger ones replay as they are
WHEN = ("delay", "at", "now")
# Replay inputs -> the TriggerOptions field replay_run would otherwise copy from the original.
REPLAY_OPTIONS = {"metadata": "metadata", "tags": "tags", "queue": "queue", "machine": "machine"}


def reason(post: QueryDict, errors: dict[str, str]) -> str:
    """The optional reason, trimmed; an error when it is too long to keep."""
    text = post.get("reason", "").strip()
    if len(text) > MAX_REASON:
        errors["reason"] = f"Reason must be at most {MAX_REASON} characters ({len(text)} given)"
    return text


def pretty(value: Any) -> str:
    """A JSON value as the form's textarea shows it ("" for none)."""
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def at_input(when: datetime | None) -> str:
    """A time as a datetime-local input's value, in UTC like every time in the dashboard."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if when else ""


def future_time(post: QueryDict, name: str, now: datetime, errors: dict[str, str]) -> datetime | None:
    """An optional datetime-local input (UTC, as every time the dashboard shows): None when
    empty; an error when it is no date and time or not in the future."""
    text = post.get(name, "").strip()
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        errors[name] = f"Enter a date and time in UTC, like {at_input(now)} ({text[:40]!r} is not one)"
        return None
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if at <= now:
        errors[name] = f"Enter a time in the future (it is {at_input(now)} UTC now)"
        return None
    return at


# --- reschedule ---------------------------------------------------------------------------


def reschedule_to(values: dict[str, str], now: datetime, errors: dict[str, str]) -> datetime | None:
    """The new start of a delayed run from the form (None for "now" or when invalid)."""
    when = values.get("when", "")
    if when not in WHEN:
        errors["when"] = "Choose when the run starts: after a delay, at a date and time, or now"
        return None
    if when == "delay":
        if not values.get("delay"):
            errors["delay"] = 'Enter a delay like "30m", "1h30m" or "2d"'
            return None
        try:
            return parse_delay(values["delay"], now)
        except OptionError as exc:
            errors["delay"] = exc.message
    elif when == "at":
        text = values.get("at", "")
        try:
            return parse_delay(text, now) if text else None
        except OptionError:
            pass
        errors["at"] = f"Enter a date and time in the future, in UTC, like {at_input(now)}" + (
            f" ({text!r} is not)" if text else ""
        )
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
    """What replay_run takes, or the errors by input name."""

    options: TriggerOptions = field(default_factory=TriggerOptions)
    overridden: set[str] = field(default_factory=set)
    payload: tuple[str, str] | None = None
    changed: list[str] = field(default_factory=list)  # inputs that differ from the original
    errors: dict[str, str] = field(default_factory=dict)


def parse_replay(run: Run, values: dict[str, str], now: datetime, editor: PayloadEditor | None) -> Replay:
    """The replay's changes from the original: only inputs that differ from it override it.

    `editor` is None when the user may not see payloads: payload and metadata stay as they are.
    """
    replay = Replay()
    raw: dict[str, Any] = {}
    if editor is not None:
        replay.payload = _payload(run, values.get("payload", ""), editor, replay.errors)
        if replay.payload is not None:
            replay.changed.append("payload")
        metadata = _json_object(values.get("metadata", ""), "metadata", replay.errors)
        if "metadata" not in replay.errors and metadata != run.metadata:
            raw["metadata"] = metadata
    tags = [tag.strip() for tag in values.get("tags", "").split(",") if tag.strip()]
    if tags != list(run.tags):
        raw["tags"] = tags
    queue = values.get("queue", "").strip()
    if queue != run.queue:
        raw["queue"] = queue or None  # empty: the task's own queue
    if values.get("machine", "") != run.machine:
        raw["machine"] = values.get("machine", "")
    if delay := values.get("delay", "").strip():
        raw["delay"] = delay
    for key, value in raw.items():
        try:
            parse_trigger_options({key: value}, now=now)
        except OptionError as exc:
            replay.errors[exc.field.split(".")[0]] = exc.message
    if not replay.errors:
        replay.options = parse_trigger_options({k: v for k, v in raw.items() if v is not None}, now=now)
        replay.overridden = {REPLAY_OPTIONS[key] for key in raw if key in REPLAY_OPTIONS}
        replay.changed += sorted(raw)
        if replay.payload is not None:
            data, content_type = replay.payload
            path = packets.new_path("payload", content_type)
            replay.payload = packets.offload(data, content_type, environment_id=run.environment_id, path=path)
    return replay


def _json_object(text: str, name: str, errors: dict[str, str]) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        value = textcheck.loads(text, name)
    except textcheck.UnstorableValue as exc:
        errors[name] = exc.message
        return None
    except json.JSONDecodeError as exc:
        errors[name] = f"{name.capitalize()} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        return None
    if not isinstance(value, dict):
        errors[name] = f'{name.capitalize()} must be a JSON object, like {{"key": "value"}}'
        return None
    return value


def _payload(run: Run, text: str, editor: PayloadEditor, errors: dict[str, str]) -> tuple[str, str] | None:
    """(data, content type) of an edited payload, not offloaded yet; None when it is unchanged
    (the original is then kept exactly as stored, SuperJSON meta included)."""
    if not editor.editable:
        return None
    if editor.is_text:
        if text == editor.text:
            return None
        data, content_type = text, packets.TEXT
    else:
        try:
            value = textcheck.loads(text, "payload", nul=False) if text.strip() else None
        except textcheck.UnstorableValue as exc:
            errors["payload"] = exc.message
            return None
        except json.JSONDecodeError as exc:
            errors["payload"] = f"Payload is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            return None
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
        errors["payload"] = str(exc)
        return None
    return data, content_type
