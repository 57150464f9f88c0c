"""The REST API's own Django handler: its short middleware chain run in one thread hop.

Django's ASGIHandler gives every request a ThreadSensitiveContext, so a sync request starts
a thread of its own, and hops into it three times or more (request_started, the middleware
chain, response.close and its request_finished). A Bearer-key API needs none of the
dashboard's sessions, CSRF, login, messages, htmx or static files either. Under load those
were most of a trigger's CPU in the web process (docs/performance.md, the trigger API).

This handler runs everything sync of a request (the signals, API_MIDDLEWARE and the view,
closing the response) in one call on a pool of long-lived threads, then sends the response
from the event loop. The view still returns only after its transaction committed, so the
200 is still sent after commit.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

# Paths the lean handler serves: the versioned REST API and the health check. Everything
# else (the dashboard, /api/docs/, /api/objects/ downloads, websockets) keeps the full stack.
API_PREFIXES = ("/api/v1/", "/api/v2/", "/api/v3/")
API_PATHS = ("/healthz",)


def serves(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in API_PATHS


class ApiHandler(ASGIHandler):
    """ASGIHandler with settings.API_MIDDLEWARE, run sync in one hop per request."""

    def __init__(self, threads: int | None = None) -> None:
        # One thread per pooled database connection: more would only wait for one.
        options = cast(dict[str, Any], settings.DATABASES["default"].get("OPTIONS", {}))
        pool = options.get("pool")
        size = threads or int(pool.get("max_size", 10) if isinstance(pool, dict) else 10)
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="runyard-api")
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        # Sync mode: the chain is called from the pool's threads (see _respond).
        original = settings.MIDDLEWARE
        try:
            settings.MIDDLEWARE = settings.API_MIDDLEWARE
            super().load_middleware(is_async=False)
        finally:
            settings.MIDDLEWARE = original

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            run = SyncToAsync(self._respond, thread_sensitive=False, executor=self.executor)
            response = await run(scope, body_file)
            await self.send_response(response, send)
            if response.streaming:
                await SyncToAsync(response.close, thread_sensitive=False, executor=self.executor)()
        finally:
            body_file.close()

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """request_started, the request, the middleware chain and view, and (for a response
        already in memory) its close with request_finished, which gives back the database
        connection: all in the calling thread."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
        assert response is not None
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if not response.streaming:
            response.close()
        return response
