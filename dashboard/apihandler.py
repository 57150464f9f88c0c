"""Django's HTTP handling for daphne in one thread hop a request, and the API's short chain.

Django's ASGIHandler gives every request a ThreadSensitiveContext, so a sync request starts
a thread of its own, and hops into it three times or more (request_started, the middleware
chain, response.close and its request_finished), with a hop at each change between async
and sync middleware. Under load that was most of a request's CPU in the web process, more
than the view's own work (docs/performance.md, the trigger API). A Bearer-key API needs
none of the dashboard's sessions, CSRF, login, messages, htmx or static files either.

OneHopHandler runs everything sync of a request (the signals, the middleware chain and the
view, closing a response held in memory) in one call on a pool of long-lived threads, then
sends the response from the event loop; a streaming response is sent as Django sends it.
ApiHandler is one with settings.API_MIDDLEWARE. A view still returns only after its
transaction committed, so a trigger's 200 is still sent after commit.
"""

from __future__ import annotations

import functools
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


@functools.cache
def request_threads() -> ThreadPoolExecutor:
    """The threads requests run on, shared by the handlers: one per pooled database
    connection (RUNYARD_DB_POOL_SIZE), as more would only wait for one."""
    options = cast(dict[str, Any], settings.DATABASES["default"].get("OPTIONS", {}))
    pool = options.get("pool")
    size = int(pool.get("max_size", 10)) if isinstance(pool, dict) else 10
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="runyard-http")


class OneHopHandler(ASGIHandler):
    """ASGIHandler running a request's sync work in one hop on request_threads()."""

    middleware_setting = "MIDDLEWARE"

    def __init__(self) -> None:
        self.executor = request_threads()
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        # Sync mode: the chain is called from the pool's threads (see _respond).
        original = settings.MIDDLEWARE
        try:
            settings.MIDDLEWARE = getattr(settings, self.middleware_setting)
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


class ApiHandler(OneHopHandler):
    """The REST API's handler: settings.API_MIDDLEWARE only."""

    middleware_setting = "API_MIDDLEWARE"
