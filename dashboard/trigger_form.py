"""The manual trigger form (a django.forms.Form): its inputs become the raw options dict the
REST API takes, and the payload.

Options are checked by runs.options.parse_trigger_options, so the dashboard applies exactly
the API's rules and messages. Each option is also checked on its own first, so every wrong
field is reported at once, next to itself. The payload comes from the JSON editor or, for a
task with a payload schema, from typed fields built from that schema (see `typed_fields`).

The form's fields have Python names; their inputs keep the API's option names
(`idempotencyKey`, `debounce.key`; see INPUT_NAMES), so the page posts what the API takes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.http import QueryDict
from django.utils import timezone

from dashboard.action_forms import json_value
from runs import packets, registry, textcheck
from runs.options import OptionError, parse_trigger_options

# Field name -> input name, for the fields whose input is named after the API's option.
INPUT_NAMES = {
    "idempotency_key": "idempotencyKey",
    "idempotency_key_ttl": "idempotencyKeyTTL",
    "debounce_key": "debounce.key",
    "debounce_delay": "debounce.delay",
    "debounce_mode": "debounce.mode",
    "debounce_max_delay": "debounce.maxDelay",
    "queue_limit": "queue.concurrencyLimit",
    "concurrency_key": "concurrencyKey",
    "max_attempts": "maxAttempts",
    "max_duration": "maxDuration",
}
# Fields that are one option each, under their input's name (INPUT_NAMES, else the field's).
SIMPLE_OPTIONS = (
    "delay",
    "ttl",
    "idempotency_key",
    "idempotency_key_ttl",
    "concurrency_key",
    "priority",
    "max_attempts",
    "max_duration",
    "machine",
    "region",
)
# OptionError.field -> the form field it is about (anything else: the whole form).
ERROR_FIELDS = {
    **{INPUT_NAMES.get(name, name): name for name in SIMPLE_OPTIONS},
    **{key: name for name, key in INPUT_NAMES.items()},
    "queue": "queue",
    "queue.name": "queue",
    "debounce": "debounce_key",
    "tags": "tags",
    "test": "test",
    "metadata": "metadata",
}
TYPED_PREFIX = "p."
MODES = ("fields", "json")


class OptionField(forms.CharField):
    """One option typed as text, trimmed; a number input gives the number the API would receive."""

    def __init__(self, *, number: bool = False, strip: bool = True) -> None:
        super().__init__(required=False, strip=strip)
        self.number = number

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        return number_or_text(text) if self.number and text else text


ABSENT = object()  # a typed field left empty: the property is left out (its default applies)


class PropertyField(forms.Field):
    """One property of the payload schema in an input of its own (kind: see field_kind)."""

    def __init__(self, *, kind: str, prop: dict[str, Any], required: bool) -> None:
        super().__init__(required=False, widget=forms.CheckboxInput if kind == "boolean" else forms.TextInput)
        self.kind, self.prop, self.in_required = kind, prop, required

    def to_python(self, value: Any) -> Any:
        if self.kind == "boolean":
            return bool(value)
        text = value or ""
        if not text.strip() and not (self.kind == "string" and self.in_required):
            return ABSENT  # left empty: absent, so a default applies (or "is required" is said)
        try:
            return convert(text, self.kind, self.prop)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class TriggerForm(forms.Form):
    """A posted trigger form: cleaned_data["payload"] (a JSON value) and ["options"] (TriggerOptions)."""

    payload_mode = forms.CharField(required=False)  # "fields": the typed fields make the payload
    payload = forms.CharField(required=False)
    metadata = forms.CharField(required=False)
    delay = OptionField()
    ttl = OptionField(number=True)
    idempotency_key = OptionField()
    idempotency_key_ttl = OptionField()
    debounce_key = OptionField()
    debounce_delay = OptionField()
    debounce_mode = OptionField(strip=False)
    debounce_max_delay = OptionField()
    queue = OptionField()
    queue_limit = OptionField(number=True)
    concurrency_key = OptionField()
    priority = OptionField(number=True)
    max_attempts = OptionField(number=True)
    max_duration = OptionField(number=True)
    tags = OptionField(strip=False)
    machine = OptionField()
    region = OptionField()
    test = forms.BooleanField(required=False)

    def __init__(
        self, *args: Any, task_id: str, schema: dict[str, Any] | None, now: datetime | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.task_id, self.schema, self.now = task_id, schema, now or timezone.now()
        properties = object_properties(schema)
        self.typed = self.data.get("payload_mode") == "fields" and bool(properties)
        if self.typed:
            required = set((schema or {}).get("required", []))
            for name, prop in properties.items():
                kind = field_kind(prop)
                self.fields[TYPED_PREFIX + name] = PropertyField(kind=kind, prop=prop, required=name in required)

    def add_prefix(self, field_name: str) -> str:
        return INPUT_NAMES.get(field_name, field_name)

    def clean_payload(self) -> Any:
        """The JSON editor's value (None when empty); the typed fields' payload is made in clean()."""
        text = self.cleaned_data["payload"]
        if self.typed or not text:
            return None
        # A NUL is fine inside a payload: it is stored as the JSON escape \u0000.
        return json_value(text, "payload", "payload", nul=False)

    def clean_metadata(self) -> Any:
        text = self.cleaned_data["metadata"]
        return json_value(text, "metadata", "metadata") if text else None

    def clean_tags(self) -> list[str]:
        return split_tags(self.cleaned_data["tags"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        raw = raw_options(cleaned)
        for key, value in raw.items():
            # One option at a time: every broken option gets its message, not just the first.
            try:
                parse_trigger_options({key: value}, now=self.now)
            except OptionError as exc:
                self.option_error(exc)
        self.check_payload(cleaned)
        if self.errors:
            return cleaned
        try:
            cleaned["options"] = parse_trigger_options(raw, now=self.now)
        except OptionError as exc:
            self.option_error(exc)
        return cleaned

    def option_error(self, exc: OptionError) -> None:
        name = ERROR_FIELDS.get(exc.field)
        if name is None or name not in self.errors:  # the first message per field
            self.add_error(name, forms.ValidationError(exc.message, code="option"))

    def check_payload(self, cleaned: dict[str, Any]) -> None:
        """The payload from the typed fields or the editor, checked against the schema and the size limit."""
        if self.typed:
            typed = {name: cleaned[name] for name in self.fields if name.startswith(TYPED_PREFIX) and name in cleaned}
            cleaned["payload"] = {name[len(TYPED_PREFIX) :]: v for name, v in typed.items() if v is not ABSENT}
        elif "payload" in self.errors:
            return
        payload = cleaned["payload"]
        if self.schema:
            lines = []
            for path, message in registry.validate_payload(self.task_id, payload, self.schema).items():
                top, _, rest = path.partition(".")
                name = TYPED_PREFIX + top
                if self.typed and top and name in self.fields:
                    if name not in self.errors:
                        self.add_error(name, forms.ValidationError(f"{rest}: {message}" if rest else message))
                    continue
                where = f"payload.{path}" if path else "payload"
                lines.append(f"{where} {message}" if message[:1].islower() else f"{where}: {message}")
            if lines:
                self.add_error("payload", forms.ValidationError("; ".join(lines), code="schema"))
        try:
            packets.check_size(packets.encode(payload)[0], settings.RUNYARD_MAX_PAYLOAD_BYTES, "payload")
        except packets.PacketError as exc:
            self.add_error("payload", forms.ValidationError(str(exc), code="size"))


def raw_options(cleaned: dict[str, Any]) -> dict[str, Any]:
    """The options as the API's JSON body would carry them (only the inputs that were filled in)."""
    raw = {INPUT_NAMES.get(name, name): cleaned[name] for name in SIMPLE_OPTIONS if cleaned.get(name, "") != ""}
    queue, limit = cleaned.get("queue", ""), cleaned.get("queue_limit", "")
    if queue or limit != "":
        raw["queue"] = {"name": queue, **({"concurrencyLimit": limit} if limit != "" else {})}
    key, delay, max_delay = (cleaned.get(name, "") for name in ("debounce_key", "debounce_delay", "debounce_max_delay"))
    if key or delay or max_delay:  # the mode alone (it always has a value) does not ask for a debounce
        raw["debounce"] = {"key": key, "delay": delay, "mode": cleaned.get("debounce_mode") or "leading"}
        if max_delay:
            raw["debounce"]["maxDelay"] = max_delay
    if cleaned.get("tags"):
        raw["tags"] = cleaned["tags"]
    if cleaned.get("test"):
        raw["test"] = True
    if cleaned.get("metadata") is not None:
        raw["metadata"] = cleaned["metadata"]
    return raw


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


def option_fields(form: TriggerForm) -> dict[str, dict[str, Any]]:
    """Each option input's name, id, value and error, keyed by field name for templates."""
    return {
        bound.name: {
            "name": bound.html_name,
            "id": f"opt-{bound.name}",
            "value": "" if bound.value() is None else bound.value(),
            "error": " ".join(map(str, bound.errors)),
        }
        for bound in form
        if not bound.name.startswith(TYPED_PREFIX)
    }
