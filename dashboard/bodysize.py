"""A size cap on every request body, enforced before anything reads or parses it.

Forms and JSON actions get Django's DATA_UPLOAD_MAX_MEMORY_SIZE (RUNYARD_MAX_REQUEST_BYTES,
1 MiB); a view that needs more declares its own cap (api.http.api_view(body=...)). The
middleware compares the body's size with the resolved view's cap in process_view, which
runs before CsrfViewMiddleware's (it comes first in MIDDLEWARE): an oversized form never
reaches request.POST. Django's own check would not do: it answers 400, applies one limit to
every view, and leaves multipart file parts out of the count.

The size is the declared Content-Length, or for a chunked body the size of the file it was
spooled to: the ASGI handler has received the whole body before Django runs (daphne, then
Django, spool it to a temporary file), so this bounds what is read and parsed, not what
crosses the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from api.errors import error_response
from runs.packets import human_size


@dataclass(frozen=True)
class BodyCap:
    """The largest body a view takes: the setting holding it, and what the 413 calls it."""

    setting: str
    what: str = "Request body"

    def limit(self) -> int | None:
        value = getattr(settings, self.setting)
        return None if value is None else int(value)

    def message(self) -> str:
        return f"{self.what} is too large: the limit is {human_size(self.limit() or 0)}"


DEFAULT = BodyCap("DATA_UPLOAD_MAX_MEMORY_SIZE")
PAYLOAD = BodyCap("RUNYARD_MAX_PAYLOAD_BYTES", "Payload")  # trigger, replay, packet upload
BATCH_STREAM = BodyCap("RUNYARD_MAX_BATCH_STREAM_BYTES", "Batch items stream")


class BodySizeMiddleware:
    """413 for a body over its view's cap: JSON for API views, plain text for the dashboard."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponseBase | None:
        cap: BodyCap = getattr(view, "body_cap", DEFAULT)
        limit = cap.limit()
        if limit is None or body_size(request) <= limit:
            return None
        if getattr(view, "json_errors", False):
            return error_response(413, cap.message())
        return HttpResponse(f"{cap.message()}.\n", status=413, content_type="text/plain; charset=utf-8")


def body_size(request: HttpRequest) -> int:
    """The larger of the declared Content-Length and the spooled body's size."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    size = int(declared) if declared.isdigit() else 0
    # ASGIRequest's stream is the spooled file itself; Django's request.body measures it so.
    stream = getattr(request, "_stream", None)
    if stream is not None and getattr(stream, "seekable", lambda: False)():
        start = stream.tell()
        size = max(size, stream.seek(0, os.SEEK_END) - start)
        stream.seek(start)
    return size
