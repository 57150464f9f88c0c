"""Payloads and outputs: stored verbatim with their content type, decoded to JSON values.

The official SDK sends payloads as SuperJSON strings (`{"json": ..., "meta": ...}`) with
type application/super+json; the API and Python tasks see the `json` member.
"""

from __future__ import annotations

import json
from typing import Any

SUPERJSON = "application/super+json"
JSON = "application/json"
TEXT = "text/plain"


class PacketError(ValueError):
    """A payload or output that cannot be stored or read."""


def decode(data: str | None, content_type: str) -> Any:
    """The JSON value of a stored packet (None when there is none)."""
    if data is None or data == "":
        return None
    if content_type == TEXT:
        return data
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise PacketError(f"payload of type {content_type} is not valid JSON: {exc.msg}") from exc
    if content_type == SUPERJSON:
        if not isinstance(value, dict) or "json" not in value:
            raise PacketError("application/super+json payload must be an object with a 'json' member")
        return value["json"]
    return value


def encode(value: Any) -> tuple[str, str]:
    """Store a Python value: (data, content type). Raises PacketError if it is not JSON."""
    if value is None:
        return "", JSON
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False), JSON
    except (TypeError, ValueError) as exc:
        raise PacketError(f"value is not JSON serializable: {exc}") from exc
