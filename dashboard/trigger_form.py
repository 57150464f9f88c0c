"""The manual trigger form: its inputs become the raw options dict the REST API takes.

Options are parsed by runs.options.parse_trigger_options, so the dashboard applies exactly
the API's rules and messages. Each option is also parsed on its own first, so every wrong
field is reported at once, next to itself. The payload comes from the JSON editor or, for a
task with a payload schema, from typed fields built from that schema (see `typed_fields`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import QueryDict

from runs import packets, registry, textcheck
from runs.engine import TriggerOptions
from runs.options import OptionError, parse_trigger_options

# Input name -> template context key (template lookups cannot contain dots).
OPTION_INPUTS = {
    "delay": "delay",
    "ttl": "ttl",
    "idempotencyKey": "idempotency_key",
    "idempotencyKeyTTL": "idempotency_key_ttl",
    "debounce.key": "debounce_key",
    "debounce.delay": "debounce_delay",
    "debounce.mode": "debounce_mode",
    "debounce.maxDelay": "debounce_max_delay",
    "queue": "queue",
    "queue.concurrencyLimit": "queue_limit",
    "concurrencyKey": "concurrency_key",
    "priority": "priority",
    "maxAttempts": "max_attempts",
    "maxDuration": "max_duration",
    "tags": "tags",
    "machine": "machine",
    "region": "region",
    "test": "test",
    "metadata": "metadata",
    "payload": "payload",
}
TEXT_OPTIONS = ("delay", "idempotencyKey", "idempotencyKeyTTL", "concurrencyKey", "machine", "region")
NUMBER_OPTIONS = ("ttl", "priority", "maxAttempts", "maxDuration")
# OptionError.field -> the input it is about.
ERROR_INPUTS = {"queue.name": "queue", "debounce": "debounce.key", "options": "form"}
TYPED_PREFIX = "p."
MODES = ("fields", "json")


@dataclass
class Submission:
    """A parsed form: what to trigger, or the errors by input name."""

    payload: Any = None
    options: TriggerOptions | None = None
    errors: dict[str, str] = field(default_factory=dict)


def parse(form: QueryDict, *, task_id: str, schema: dict[str, Any] | None, now: datetime) -> Submission:
    """Payload and options of a posted trigger form; `errors` is empty when it can be triggered."""
    errors: dict[str, str] = {}
    raw = raw_options(form, errors)
    for key, value in raw.items():
        # One option at a time: every broken option gets its message, not just the first.
        try:
            parse_trigger_options({key: value}, now=now)
        except OptionError as exc:
            errors.setdefault(ERROR_INPUTS.get(exc.field, exc.field), exc.message)
    payload = parse_payload(form, task_id=task_id, schema=schema, errors=errors)
    if errors:
        return Submission(errors=errors)
    try:
        options = parse_trigger_options(raw, now=now)
    except OptionError as exc:
        return Submission(errors={ERROR_INPUTS.get(exc.field, exc.field): exc.message})
    return Submission(payload=payload, options=options)


def raw_options(form: QueryDict, errors: dict[str, str]) -> dict[str, Any]:
    """The options as the API's JSON body would carry them (only the inputs that were filled in)."""
    raw: dict[str, Any] = {}
    for key in TEXT_OPTIONS:
        if value := form.get(key, "").strip():
            raw[key] = value
    for key in NUMBER_OPTIONS:
        if value := form.get(key, "").strip():
            raw[key] = number_or_text(value)
    queue, limit = form.get("queue", "").strip(), form.get("queue.concurrencyLimit", "").strip()
    if queue or limit:
        raw["queue"] = {"name": queue, **({"concurrencyLimit": number_or_text(limit)} if limit else {})}
    if debounce := debounce_option(form):
        raw["debounce"] = debounce
    if tags := split_tags(form.get("tags", "")):
        raw["tags"] = tags
    if form.get("test"):
        raw["test"] = True
    metadata_text = form.get("metadata", "").strip()
    if metadata_text:
        try:
            raw["metadata"] = textcheck.loads(metadata_text, "metadata")
        except textcheck.UnstorableValue as exc:
            errors["metadata"] = exc.message
        except json.JSONDecodeError as exc:
            errors["metadata"] = json_error("metadata", exc)
    return raw


def debounce_option(form: QueryDict) -> dict[str, Any] | None:
    key, delay = form.get("debounce.key", "").strip(), form.get("debounce.delay", "").strip()
    max_delay = form.get("debounce.maxDelay", "").strip()
    if not (key or delay or max_delay):
        return None  # the mode alone (it always has a value) does not ask for a debounce
    debounce: dict[str, Any] = {"key": key, "delay": delay, "mode": form.get("debounce.mode", "") or "leading"}
    if max_delay:
        debounce["maxDelay"] = max_delay
    return debounce


def split_tags(text: str) -> list[str]:
    """Tags typed comma- or newline-separated, in order, without blanks."""
    return [tag.strip() for tag in re.split(r"[,\n]", text) if tag.strip()]


def number_or_text(value: str) -> int | float | str:
    """A typed number as the API would receive it; anything else stays text, for the API's message."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def json_error(name: str, exc: json.JSONDecodeError) -> str:
    return f"{name} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


# --- the payload ----------------------------------------------------------------------------


def parse_payload(form: QueryDict, *, task_id: str, schema: dict[str, Any] | None, errors: dict[str, str]) -> Any:
    """The payload value from the typed fields or the JSON editor, checked against the schema."""
    typed = form.get("payload_mode") == "fields" and bool(object_properties(schema))
    payload: Any
    if typed:
        payload = typed_payload(form, schema or {}, errors)
    else:
        text = form.get("payload", "").strip()
        try:
            # A NUL is fine inside a payload: it is stored as the JSON escape \u0000.
            payload = textcheck.loads(text, "payload", nul=False) if text else None
        except textcheck.UnstorableValue as exc:
            errors["payload"] = exc.message
            return None
        except json.JSONDecodeError as exc:
            errors["payload"] = json_error("payload", exc)
            return None
    if schema:
        for path, message in registry.validate_payload(task_id, payload, schema).items():
            add_payload_error(errors, path, message, typed=typed)
    try:
        packets.check_size(packets.encode(payload)[0], settings.RUNYARD_MAX_PAYLOAD_BYTES, "payload")
    except packets.PacketError as exc:
        errors["payload"] = str(exc)
    return payload


def add_payload_error(errors: dict[str, str], path: str, message: str, *, typed: bool) -> None:
    """A schema error next to its typed field (or the editor), naming the path within it."""
    top, _, rest = path.partition(".")
    if typed and top:
        errors.setdefault(TYPED_PREFIX + top, f"{rest}: {message}" if rest else message)
        return
    where = f"payload.{path}" if path else "payload"
    line = f"{where} {message}" if message[:1].islower() else f"{where}: {message}"
    errors["payload"] = f"{errors['payload']}; {line}" if "payload" in errors else line


def typed_payload(form: QueryDict, schema: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The payload object the typed fields describe; unconvertible inputs go to errors."""
    payload: dict[str, Any] = {}
    required = set(schema.get("required", []))
    for name, prop in object_properties(schema).items():
        kind = field_kind(prop)
        key = TYPED_PREFIX + name
        if kind == "boolean":
            payload[name] = bool(form.get(key))
            continue
        text = form.get(key, "")
        if not text.strip() and not (kind == "string" and name in required):
            continue  # left empty: absent, so a default applies (or "is required" is said)
        try:
            payload[name] = convert(text, kind, prop)
        except ValueError as exc:
            errors[key] = str(exc)
    return payload


def convert(text: str, kind: str, prop: dict[str, Any]) -> Any:
    """A typed field's text as the JSON value its kind asks for; ValueError says what is wrong."""
    if kind == "integer":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
    if kind == "number":
        number = number_or_text(text.strip())
        if isinstance(number, str):
            raise ValueError("must be a number")
        return number
    if kind == "enum":
        for choice in prop.get("enum", []):
            if choice_value(choice) == text:
                return choice
        raise ValueError(f"must be one of {', '.join(json.dumps(c) for c in prop.get('enum', []))}")
    if kind == "json":
        try:
            return textcheck.loads(text, "value", nul=False)
        except textcheck.UnstorableValue as exc:
            raise ValueError(exc.message.removeprefix("value: ")) from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON: {exc.msg}") from None
    return text


# --- typed fields from a JSON schema -------------------------------------------------------


@dataclass
class TypedField:
    """One payload property as a form input."""

    name: str
    input_name: str
    label: str
    kind: str  # string, integer, number, boolean, enum or json (anything else, typed as JSON)
    required: bool
    description: str = ""
    default: str = ""  # as shown in the hint
    value: str = ""
    checked: bool = False
    choices: list[tuple[str, str]] = field(default_factory=list)  # (value, label) for enums
    error: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)  # min, max, minlength, maxlength, pattern


def object_properties(schema: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A schema's properties, each with its $ref resolved and Optional (anyOf null) unwrapped."""
    if not schema or schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        return {}
    return {name: unwrap(prop, schema) for name, prop in schema["properties"].items() if isinstance(prop, dict)}


def unwrap(prop: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    prop = registry.resolve_ref(prop, root)
    options = [registry.resolve_ref(o, root) for o in prop.get("anyOf", []) if isinstance(o, dict)]
    not_null = [o for o in options if o.get("type") != "null"]
    if len(not_null) == 1:
        rest = {k: v for k, v in prop.items() if k != "anyOf"}
        return {**not_null[0], **rest, "nullable": True}
    return prop


def field_kind(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "enum"
    kind = prop.get("type")
    return kind if kind in ("string", "integer", "number", "boolean") else "json"


def choice_value(choice: Any) -> str:
    return choice if isinstance(choice, str) else json.dumps(choice)


def typed_fields(
    schema: dict[str, Any] | None, values: QueryDict | dict[str, Any] | None, errors: dict[str, str]
) -> list[TypedField]:
    """The inputs for a schema's properties, filled from posted `values` (a QueryDict), from a
    payload (a dict of JSON values), or with the defaults when `values` is None."""
    required = set((schema or {}).get("required", []))
    fields = []
    for name, prop in object_properties(schema).items():
        kind = field_kind(prop)
        typed = TypedField(
            name=name,
            input_name=TYPED_PREFIX + name,
            label=str(prop.get("title") or name),
            kind=kind,
            required=name in required,
            description=str(prop.get("description", "")),
            default=json.dumps(prop["default"]) if "default" in prop else "",
            choices=[(choice_value(c), str(c)) for c in prop.get("enum", [])],
            error=errors.get(TYPED_PREFIX + name, ""),
            attrs=html_attrs(prop),
        )
        fill(typed, prop, values)
        fields.append(typed)
    return fields


def fill(typed: TypedField, prop: dict[str, Any], values: QueryDict | dict[str, Any] | None) -> None:
    if isinstance(values, QueryDict):  # re-shown after an error: exactly what was typed
        typed.value = values.get(typed.input_name, "")
        typed.checked = bool(values.get(typed.input_name))
        return
    if values is None:
        if "default" not in prop or prop["default"] is None:
            return
        value = prop["default"]
    elif typed.name in values:
        value = values[typed.name]
    else:
        return
    typed.checked = value is True
    typed.value = as_text(value, typed.kind)


def as_text(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "enum":
        return choice_value(value)
    if kind == "json" or not isinstance(value, str | int | float) or isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def html_attrs(prop: dict[str, Any]) -> dict[str, Any]:
    names = {"minimum": "min", "maximum": "max", "minLength": "minlength", "maxLength": "maxlength"}
    attrs = {html: prop[key] for key, html in names.items() if key in prop}
    if isinstance(prop.get("pattern"), str):
        attrs["pattern"] = prop["pattern"]
    return attrs


def option_fields(values: QueryDict | dict[str, str], errors: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each option input's name, id, value and error, keyed for templates (see OPTION_INPUTS)."""
    return {
        key: {"name": name, "id": f"opt-{key}", "value": values.get(name, ""), "error": errors.get(name, "")}
        for name, key in OPTION_INPUTS.items()
    }
