"""Requests through Django's real ASGI handler, as daphne delivers them: a chunked body
(no Content-Length) in http.request messages, spooled by the handler before Django runs."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections

CHUNK = 64 * 1024


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def chunked_post(path: str, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    """POST `body` to `path` in chunks without a Content-Length.

    Run through async_to_sync from a sync test: Django's sync views then run in the test's
    thread, on its database connection and transaction.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
        "client": ("10.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    chunks = [body[at : at + CHUNK] for at in range(0, len(body), CHUNK)] or [b""]
    # As Django's test client does: closing "old" connections would end the test's transaction.
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    try:
        return async_to_sync(_run)(scope, chunks)
    finally:
        for signal in (signals.request_started, signals.request_finished):
            signal.connect(close_old_connections)


async def _run(scope: dict[str, Any], chunks: list[bytes]) -> Answer:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1} for n, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # no disconnect: the handler cancels this when it answers
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await ASGIHandler()(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return Answer(start["status"], headers, body)
