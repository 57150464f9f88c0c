"""The REST API's lean ASGI handler (dashboard.apihandler, issue #19): what daphne serves.

Django's test client runs settings.MIDDLEWARE; these tests call dashboard.asgi.application
as daphne does, so they prove the API's own chain (API_MIDDLEWARE, one thread hop) keeps the
API's behaviour: its headers, the body cap, NUL refusal, revoked keys, the dashboard's stack
for everything else. The handler's threads have their own database connections, so the
rows the tests make are committed (transaction=True).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import signals
from django.utils import timezone

from dashboard.asgi import application
from runs.models import ApiKey, Run
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

TRIGGER_BODY = {"payload": '{"json":{"hello":"world"}}', "options": {"payloadType": "application/super+json"}}


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


async def _call(method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    raw_headers = [(b"host", b"127.0.0.1")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if body:
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    messages: list[dict[str, Any]] = []
    done = asyncio.Event()
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await asyncio.wait_for(application(scope, receive, send), 20)
    start = messages[0]
    answer_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    content = b"".join(m.get("body", b"") for m in messages[1:])
    return Answer(start["status"], answer_headers, content)


def call(method: str, path: str, body: Any = None, key: str | None = None, raw: bytes | None = None) -> Answer:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return async_to_sync(_call)(method, path, data, headers)


@pytest.fixture
def key(transactional_db: None) -> str:
    factories.task_definition("hello-world")
    return factories.api_key("dev")


def test_a_trigger_through_daphnes_app_makes_its_run_with_the_apis_headers(key: str) -> None:
    answer = call("POST", "/api/v1/tasks/hello-world/trigger", TRIGGER_BODY, key)
    assert answer.status == 200, answer.body
    run = Run.objects.get(pk=answer.json()["id"])
    assert run.status == "QUEUED" and answer.json()["isCached"] is False
    assert answer.headers["x-trigger-jwt"]
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert answer.headers["x-frame-options"] == "DENY"
    # No session, CSRF or message cookie: the API's chain has none of that middleware.
    assert "set-cookie" not in answer.headers


def test_the_api_chain_runs_on_its_own_long_lived_threads_one_hop_a_request(key: str) -> None:
    threads: list[str] = []

    def started(**kwargs: Any) -> None:
        threads.append(threading.current_thread().name)

    signals.request_started.connect(started)
    try:
        for _ in range(3):
            assert call("POST", "/api/v1/tasks/hello-world/trigger", TRIGGER_BODY, key).status == 200
    finally:
        signals.request_started.disconnect(started)
    assert len(threads) == 3 and all(name.startswith("runyard-http") for name in threads), threads


def test_a_repeated_request_key_through_the_lean_stack_returns_the_first_run(key: str) -> None:
    headers_key = "x-trigger-request-idempotency-key"

    async def twice() -> list[Answer]:
        headers = {"content-type": "application/json", "authorization": f"Bearer {key}", headers_key: "same"}
        body = json.dumps(TRIGGER_BODY).encode()
        path = "/api/v1/tasks/hello-world/trigger"
        return list(await asyncio.gather(*[_call("POST", path, body, headers) for _ in range(4)]))

    answers = async_to_sync(twice)()
    assert {a.status for a in answers} == {200}
    assert len({a.json()["id"] for a in answers}) == 1
    assert Run.objects.count() == 1


def test_an_oversized_payload_is_413_in_json_before_the_view(key: str, settings: Any) -> None:
    settings.RUNYARD_MAX_PAYLOAD_BYTES = 100
    body = {"payload": json.dumps({"json": "x" * 200}), "options": {"payloadType": "application/super+json"}}
    answer = call("POST", "/api/v1/tasks/hello-world/trigger", body, key)
    assert answer.status == 413
    assert "Payload is too large" in answer.json()["error"]
    assert not Run.objects.exists()


def test_a_nul_in_the_task_id_is_400_naming_the_field(key: str) -> None:
    answer = call("POST", "/api/v1/tasks/hello%00world/trigger".replace("%00", "\x00"), TRIGGER_BODY, key)
    assert answer.status == 400
    assert answer.json()["param"] == "taskId"
    assert not Run.objects.exists()


def test_a_nul_in_a_body_field_is_400_naming_it(key: str) -> None:
    body = {**TRIGGER_BODY, "options": {"payloadType": "application/super+json", "queue": "a\u0000b"}}
    answer = call("POST", "/api/v1/tasks/hello-world/trigger", body, key)
    assert answer.status == 400 and "options" in (answer.json().get("param") or answer.json()["error"])


def test_a_revoked_key_is_refused_at_once(key: str) -> None:
    assert call("POST", "/api/v1/tasks/hello-world/trigger", TRIGGER_BODY, key).status == 200
    ApiKey.objects.update(revoked_at=timezone.now())
    answer = call("POST", "/api/v1/tasks/hello-world/trigger", TRIGGER_BODY, key)
    assert answer.status == 401 and answer.json() == {"error": "Invalid API key"}
    assert Run.objects.count() == 1


def test_healthz_and_unknown_api_paths_answer_json_on_the_lean_stack(key: str) -> None:
    health = call("GET", "/healthz")
    assert health.status == 200 and health.json()["database"]["ok"] is True
    missing = call("GET", "/api/v1/no-such-thing", key=key)
    assert missing.status == 404 and missing.json() == {"error": "Not found"}
    assert missing.headers["x-content-type-options"] == "nosniff"


def test_dashboard_pages_keep_the_full_stack(key: str) -> None:
    page = call("GET", "/runs/")
    assert page.status == 302 and "/login/" in page.headers["location"]
    assert "content-security-policy" in page.headers


def test_dashboard_requests_also_run_in_one_hop_and_static_files_stream(key: str) -> None:
    threads: list[str] = []

    def started(**kwargs: Any) -> None:
        threads.append(threading.current_thread().name)

    signals.request_started.connect(started)
    try:
        login = call("GET", "/accounts/login/")
        css = call("GET", "/static/runyard.css")
    finally:
        signals.request_started.disconnect(started)
    assert login.status == 200 and b"<form" in login.body and "csrftoken" in login.headers["set-cookie"]
    assert css.status == 200 and css.headers["content-type"].startswith("text/css") and len(css.body) > 100
    assert all(name.startswith("runyard-http") for name in threads), threads
