"""Payloads and outputs: stored verbatim with their content type, decoded to JSON values.

The official SDK sends payloads as SuperJSON strings (`{"json": ..., "meta": ...}`) with
type application/super+json; the API and Python tasks see the `json` member.

Large packets live in object storage (runs.storage) instead of the run row: the row holds
the packet's path and the type application/store, and the stored object keeps the real
content type. Paths are scoped by environment (`storage_key`), so one environment can
never name another's packets.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from django.conf import settings

from runs import storage

SUPERJSON = "application/super+json"
JSON = "application/json"
TEXT = "text/plain"
STORE = "application/store"  # the data is a path in object storage (reference 3.9)
DECODABLE = (SUPERJSON, JSON, TEXT)
EXTENSIONS = {SUPERJSON: "json", JSON: "json", TEXT: "txt"}

log = logging.getLogger(__name__)


class PacketError(ValueError):
    """A payload or output that cannot be stored or read."""


class PacketTooDeep(PacketError):
    """A packet nested past what json.loads can recurse through."""


class PacketTooLarge(PacketError):
    """A packet over a size limit; the message names the size and the limit."""


def decode(data: str | None, content_type: str) -> Any:
    """The JSON value of a stored packet (None when there is none); see `load` for offloaded ones."""
    if data is None or data == "":
        return None
    if content_type == TEXT:
        return data
    if content_type == STORE:
        raise PacketError(f"the packet is in object storage at {data!r}; use packets.load")
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise PacketError(f"payload of type {content_type} is not valid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise PacketTooDeep(f"payload of type {content_type} is nested too deeply to read") from exc
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


# --- object storage -----------------------------------------------------------------------


def storage_key(environment_id: int, path: str) -> str:
    """Where an environment's packet path lives in the store. Raises storage.InvalidKey."""
    return storage.check_key(f"env-{environment_id}/{storage.check_key(path)}")


RUNYARD_PREFIX = "runyard/"  # packets Runyard writes itself; clients cannot upload here


def new_path(name: str, content_type: str) -> str:
    """A fresh path for a packet Runyard offloads itself, like the SDK's own packet paths."""
    return f"{RUNYARD_PREFIX}packet_{secrets.token_hex(10)}/{name}.{EXTENSIONS.get(content_type, 'json')}"


def load(data: str | None, content_type: str, *, environment_id: int) -> Any:
    """The JSON value of a packet, fetched from object storage when it was offloaded."""
    if content_type != STORE:
        return decode(data, content_type)
    try:
        raw, stored_type = storage.get(storage_key(environment_id, data or ""))
    except storage.StorageError as exc:
        raise PacketError(f"the stored packet {data!r} cannot be read: {exc}") from exc
    try:
        return decode(raw.decode("utf-8"), stored_type)
    except UnicodeDecodeError as exc:
        raise PacketError(f"the stored packet {data!r} is not valid UTF-8") from exc


def offload(data: str, content_type: str, *, environment_id: int, path: str) -> tuple[str, str]:
    """(path, STORE) after writing a packet over the offload threshold to storage, else as given."""
    encoded = data.encode("utf-8")
    if len(encoded) <= settings.RUNYARD_PACKET_OFFLOAD_BYTES:
        return data, content_type
    storage.put(storage_key(environment_id, path), encoded, content_type)
    return path, STORE


def check_size(data: str, limit: int, what: str) -> None:
    """Raise PacketTooLarge when data is over limit bytes in UTF-8."""
    # Each character is at most 4 bytes: skip the encoding when the text is surely small.
    if len(data) * 4 <= limit:
        return
    size = len(data.encode("utf-8"))
    if size > limit:
        raise PacketTooLarge(f"{what} is {size} bytes, over the {human_size(limit)} limit")


def store_output(data: str, content_type: str, *, environment_id: int, run_id: str, attempt: int) -> tuple[str, str]:
    """An attempt's output as the run keeps it: offloaded when large. Raises PacketTooLarge.

    The path names the attempt, so a stale attempt never overwrites the winner's output.
    """
    check_size(data, settings.RUNYARD_MAX_OUTPUT_BYTES, "Output")
    path = f"{RUNYARD_PREFIX}{run_id}/attempt-{attempt}/output.{EXTENSIONS.get(content_type, 'json')}"
    return offload(data, content_type, environment_id=environment_id, path=path)


def discard(data: str | None, content_type: str, *, environment_id: int) -> None:
    """Delete an offloaded packet nobody refers to (e.g. the output of a stale attempt).

    Best effort: a packet left behind costs space, never correctness.
    """
    if content_type != STORE or not data:
        return
    try:
        storage.delete(storage_key(environment_id, data))
    except storage.StorageError:
        log.warning("could not delete the unused packet %s", data, exc_info=True)


def human_size(size: int) -> str:
    """10485760 -> "10 MB" (binary units, as the reference's limits are)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} bytes"
