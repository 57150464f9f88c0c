"""Run metadata operations, in the shapes of the official SDK (@trigger.dev/core's
RunMetadataChangeOperation): parsed, collapsed and applied here, written by
runs.engine.metadata.

    {"type": "set", "key": k, "value": v}        {"type": "delete", "key": k}
    {"type": "append", "key": k, "value": v}     {"type": "remove", "key": k, "value": v}
    {"type": "increment", "key": k, "value": n}  {"type": "update", "value": {...}}

A key starting with "$." is a path into nested objects ("$.stats.done"). As in the reference,
an operation that cannot apply (remove from a key that holds no list, a path through a value
that is not an object) is skipped, not an error; increment counts a missing or non-numeric
value as 0 and decrement is an increment by a negative number.

Pure: imports nothing of the engine, so the API, the SDK and the dashboard share it.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

from runs.textcheck import UnstorableValue, check_json, check_text

Operation = dict[str, Any]

OPERATION_TYPES = ("set", "delete", "append", "remove", "increment", "update")
_KEYED = frozenset(OPERATION_TYPES) - {"update"}
_VALUED = frozenset(OPERATION_TYPES) - {"delete"}
PROGRESS_KEY = "progress"
MAX_METADATA_BYTES = 256 * 1024  # the reference's TASK_RUN_METADATA_MAXIMUM_SIZE
MAX_OPERATIONS = 10_000  # per list in one request; the SDK collapses what it sends well below
MAX_KEY_LENGTH = 1024


class MetadataError(ValueError):
    """Rejected metadata input; `field` names it ("operations[2].value"), `message` the rule."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


@dataclass
class MetadataChange:
    """What to do to a run's metadata, and to its parent's and its root's."""

    replace: dict[str, Any] | None = None  # the whole object, before any operation
    operations: list[Operation] = field(default_factory=list)
    parent_operations: list[Operation] = field(default_factory=list)
    root_operations: list[Operation] = field(default_factory=list)

    def empty(self) -> bool:
        return self.replace is None and not (self.operations or self.parent_operations or self.root_operations)


# --- parsing ---------------------------------------------------------------------------------


def parse_change(body: dict[str, Any]) -> MetadataChange:
    """The body of PUT /api/v1/runs/{id}/metadata (the reference's FlushedRunMetadata):
    {metadata?, operations?, parentOperations?, rootOperations?}. As in the reference, when
    `operations` is given `metadata` is not used. Raises MetadataError naming the field."""
    change = MetadataChange()
    for name, attribute in (
        ("operations", "operations"),
        ("parentOperations", "parent_operations"),
        ("rootOperations", "root_operations"),
    ):
        if body.get(name) is not None:
            setattr(change, attribute, parse_operations(body[name], name))
    if body.get("operations") is None and body.get("metadata") is not None:
        change.replace = parse_metadata(body["metadata"])
    return change


def parse_operations(raw: Any, field: str = "operations") -> list[Operation]:
    """The operations of a request, checked one by one. Raises MetadataError naming the first
    bad field."""
    if not isinstance(raw, list):
        raise MetadataError(field, f"{field} must be an array of operations")
    if len(raw) > MAX_OPERATIONS:
        raise MetadataError(field, f"{field} may hold at most {MAX_OPERATIONS:,} operations", 413)
    return [parse_operation(item, f"{field}[{index}]") for index, item in enumerate(raw)]


def parse_operation(raw: Any, field: str = "operation") -> Operation:
    """One operation as the reference shapes it. Raises MetadataError."""
    if not isinstance(raw, dict):
        raise MetadataError(field, f"{field} must be an object with a type")
    kind = raw.get("type")
    if kind not in OPERATION_TYPES:
        raise MetadataError(f"{field}.type", f"{field}.type must be one of {', '.join(OPERATION_TYPES)}")
    operation: Operation = {"type": kind}
    if kind in _KEYED:
        operation["key"] = parse_key(raw.get("key"), f"{field}.key")
    if kind in _VALUED:
        if "value" not in raw:
            raise MetadataError(f"{field}.value", f"{field}.value is required for {kind}")
        operation["value"] = _value(kind, raw["value"], f"{field}.value")
    return operation


def parse_key(key: Any, field: str = "key") -> str:
    if not isinstance(key, str) or not key:
        raise MetadataError(field, f"{field} must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise MetadataError(field, f"{field} must be at most {MAX_KEY_LENGTH} characters")
    if key.startswith("$.") and not all(_segments(key)):
        raise MetadataError(field, f"{field}: a path key names keys below $ separated by dots, as $.a.b")
    try:
        check_text(key, field)
    except UnstorableValue as exc:
        raise MetadataError(exc.field, exc.message) from exc
    return key


def parse_metadata(raw: Any, field: str = "metadata") -> dict[str, Any]:
    """A whole metadata object (what `update` and a plain PUT set). Raises MetadataError."""
    if not isinstance(raw, dict):
        raise MetadataError(field, f"{field} must be a JSON object")
    return _value("update", raw, field)


def _value(kind: str, value: Any, field: str) -> Any:
    if kind == "increment":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise MetadataError(field, f"{field} must be a finite number to increment by")
        return value
    if kind == "update" and not isinstance(value, dict):
        raise MetadataError(field, f"{field} must be a JSON object")
    try:
        json.dumps(value, allow_nan=False)
        check_json(value, field)
    except UnstorableValue as exc:
        raise MetadataError(exc.field, exc.message) from exc
    except (TypeError, ValueError) as exc:
        raise MetadataError(field, f"{field} must be a JSON value (objects, arrays, strings, finite numbers)") from exc
    return value


def _segments(key: str) -> list[str]:
    return key[2:].split(".")


# --- collapsing and applying -----------------------------------------------------------------


def collapse(operations: list[Operation]) -> list[Operation]:
    """The same changes in fewer operations (see push). Order is kept."""
    collapsed: list[Operation] = []
    for operation in operations:
        push(collapsed, operation)
    return collapsed


def push(operations: list[Operation], operation: Operation) -> None:
    """Add `operation` to the end of `operations`, merged with the last one where that changes
    nothing: increments in a row on one key summed, sets in a row on one key down to the last,
    deletes in a row on one key down to one (the reference's collapseOperations)."""
    last = operations[-1] if operations else None
    if last is None or last["type"] != operation["type"] or last.get("key") != operation.get("key"):
        operations.append(operation)
    elif operation["type"] == "increment":
        operations[-1] = {**operation, "value": last["value"] + operation["value"]}
    elif operation["type"] in ("set", "delete"):
        operations[-1] = operation
    else:
        operations.append(operation)


def apply(metadata: dict[str, Any] | None, operations: list[Operation]) -> dict[str, Any]:
    """A new metadata object: `metadata` (not changed) with the operations applied in order."""
    return apply_into(copy.deepcopy(metadata) if metadata else {}, operations)


def apply_into(metadata: dict[str, Any], operations: list[Operation]) -> dict[str, Any]:
    """`metadata` changed in place by the operations (a new object after an update); no copy
    of the whole, for a task that changes one key of large metadata many times a second."""
    for operation in operations:
        if operation["type"] == "update":
            metadata = copy.deepcopy(operation["value"])
        else:
            _apply_keyed(metadata, operation)
    return metadata


def _apply_keyed(metadata: dict[str, Any], operation: Operation) -> None:
    holder, name = _holder(metadata, operation["key"], create=operation["type"] != "delete")
    if holder is None:
        return
    kind, value = operation["type"], operation.get("value")
    current = holder.get(name)
    if kind == "set":
        holder[name] = copy.deepcopy(value)
    elif kind == "delete":
        holder.pop(name, None)
    elif kind == "append":
        existing = [] if name not in holder else current if isinstance(current, list) else [current]
        holder[name] = [*existing, copy.deepcopy(value)]
    elif kind == "remove" and isinstance(current, list):
        holder[name] = [item for item in current if not _same(item, value)]
    elif kind == "increment":
        base = current if isinstance(current, int | float) and not isinstance(current, bool) else 0
        holder[name] = base + operation["value"]


def _holder(metadata: dict[str, Any], key: str, *, create: bool) -> tuple[dict[str, Any] | None, str]:
    """The object that holds the key's value and its name there; None where a path goes
    through something that is not an object."""
    if not key.startswith("$."):
        return metadata, key
    *parents, name = _segments(key)
    holder: Any = metadata
    for part in parents:
        if part not in holder and create:
            holder[part] = {}
        holder = holder.get(part)
        if not isinstance(holder, dict):
            return None, name
    return holder, name


def _same(a: Any, b: Any) -> bool:
    # Equality as JSON sees it: true is not 1 there, and key order does not count.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# --- limits and display ----------------------------------------------------------------------


def size(metadata: dict[str, Any]) -> int:
    """Bytes of the metadata as JSON, as the trigger option is measured (runs.options)."""
    return len(json.dumps(metadata).encode())


def check_size(metadata: dict[str, Any], field: str = "metadata") -> None:
    """Raise MetadataError (413) past the 256 KiB a run's metadata may hold."""
    if (used := size(metadata)) > MAX_METADATA_BYTES:
        raise MetadataError(
            field, f"{field} would be {used:,} bytes of JSON: a run's metadata may hold at most 256 KiB", 413
        )


def progress(metadata: Any) -> float | None:
    """The metadata's numeric `progress`, clamped to 0..1; None if it has none (or not a number)."""
    if not isinstance(metadata, dict):
        return None
    value = metadata.get(PROGRESS_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(max(float(value), 0.0), 1.0)
