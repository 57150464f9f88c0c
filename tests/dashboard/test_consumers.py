"""The live websockets, against the real Redis channel layer and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.db import connections
from django.test import Client
from django.utils import timezone

from dashboard import consumers
from dashboard.asgi import application
from dashboard.consumers import FLUSH_INTERVAL
from dashboard.routing import websocket_urlpatterns
from dashboard.views import to_micros
from runs import events
from runs.models import Run
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


@database_sync_to_async
def make_user() -> User:
    factories.environment("dev")  # transactional tests start without the migration's rows
    return User.objects.create_user(username="ada", password="a-long-password-1")


@database_sync_to_async
def make_run(**kwargs: Any) -> Run:
    return factories.run(**kwargs)


@database_sync_to_async
def set_status(run: Run, status: str) -> None:
    fields: dict[str, Any] = {"status": status, "updated_at": timezone.now()}
    if status == "EXECUTING":
        fields["started_at"] = timezone.now()
    Run.objects.filter(pk=run.pk).update(**fields)


def changed(run: Run, created: bool = False) -> dict[str, Any]:
    return {"type": "run.changed", "run_id": run.id, "created": created}


async def publish(run: Run, created: bool = False) -> None:
    """What runs.events sends after a commit."""
    message = changed(run, created)
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(events.env_group(run.environment_id), message)
    await layer.group_send(events.run_group(run.id), message)


@pytest.fixture(autouse=True)
async def close_thread_connections() -> AsyncIterator[None]:
    # Sync code of consumers and tests runs in one executor thread whose connection would
    # otherwise outlive the test (CONN_MAX_AGE) and block dropping the test database.
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
async def user() -> User:
    return await make_user()


@pytest.fixture
async def connected() -> AsyncIterator[list[WebsocketCommunicator]]:
    """Communicators opened by a test; disconnected afterwards."""
    opened: list[WebsocketCommunicator] = []
    yield opened
    for communicator in opened:
        await communicator.disconnect()


async def connect(path: str, user: Any, opened: list[WebsocketCommunicator]) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    ok, _ = await communicator.connect()
    assert ok, f"{path} refused the connection"
    opened.append(communicator)
    return communicator


async def receive_all(communicator: WebsocketCommunicator, window: float) -> list[str]:
    """Every message that arrives within `window` seconds."""
    messages: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    while (left := deadline - loop.time()) > 0:
        if await communicator.receive_nothing(timeout=min(left, 0.05), interval=0.01):
            continue
        messages.append(await communicator.receive_from())
    return messages


async def test_anonymous_users_are_refused() -> None:
    for path in ["/ws/runs/?env=dev", "/ws/runs/run_x/"]:
        communicator = WebsocketCommunicator(application, path, headers=[ORIGIN])
        ok, _ = await communicator.connect()
        assert not ok
        direct = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        direct.scope["user"] = AnonymousUser()
        ok, _ = await direct.connect()
        assert not ok


async def test_logged_in_session_connects_through_the_asgi_application(user: User) -> None:
    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(application, "/ws/runs/?env=dev", headers=[ORIGIN, (b"cookie", cookie)])
    ok, _ = await communicator.connect()
    assert ok
    await communicator.disconnect()


async def test_unknown_environment_or_run_is_refused(user: User) -> None:
    for path in ["/ws/runs/?env=nope", "/ws/runs/run_doesnotexist/"]:
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        communicator.scope["user"] = user
        ok, _ = await communicator.connect()
        assert not ok


async def test_a_change_pushes_its_row_as_an_out_of_band_swap(user: User, connected: list) -> None:
    run = await make_run()
    communicator = await connect("/ws/runs/?env=dev", user, connected)
    assert await communicator.receive_nothing(timeout=0.3)
    await set_status(run, "EXECUTING")
    await publish(run)
    message = await communicator.receive_from(timeout=2)
    assert message.startswith(f'<tr id="run-{run.id}" hx-swap-oob="true">')
    assert 'data-status="EXECUTING"' in message and "Executing" in message
    assert await communicator.receive_nothing(timeout=0.4)


async def test_a_created_run_is_prepended_on_the_first_page_only(user: User, connected: list) -> None:
    older = await make_run()
    cursor = f"{to_micros(older.created_at)}.{older.id}"
    first_page = await connect(f"/ws/runs/?env=dev&prepend=1&newest={cursor}&oldest={cursor}", user, connected)
    second_page = await connect(f"/ws/runs/?env=dev&newest={cursor}&oldest={cursor}", user, connected)
    run = await make_run()  # the engine publishes the creation after commit
    message = await first_page.receive_from(timeout=2)
    assert message.startswith(f'<tbody id="runs-body" hx-swap-oob="afterbegin"><tr id="run-{run.id}">')
    assert "Queued" in message
    assert await second_page.receive_nothing(timeout=0.5)


async def test_changes_outside_the_rows_on_screen_are_not_sent(user: User, connected: list) -> None:
    old, on_screen, new = [await make_run() for _ in range(3)]
    cursor = f"{to_micros(on_screen.created_at)}.{on_screen.id}"
    communicator = await connect(f"/ws/runs/?env=dev&newest={cursor}&oldest={cursor}", user, connected)
    for run in (old, new):
        await publish(run)
    assert await communicator.receive_nothing(timeout=0.5)
    await publish(on_screen)
    assert f'id="run-{on_screen.id}"' in await communicator.receive_from(timeout=2)


async def test_other_environments_changes_are_not_sent(user: User, connected: list) -> None:
    prod_run = await make_run(env="prod")
    await make_run(env="dev")
    communicator = await connect("/ws/runs/?env=dev", user, connected)
    await publish(prod_run)
    assert await communicator.receive_nothing(timeout=0.5)


async def test_a_burst_of_changes_is_coalesced(user: User, connected: list) -> None:
    runs = [await make_run() for _ in range(50)]
    communicator = await connect("/ws/runs/?env=dev", user, connected)
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(layer.group_send(events.env_group(run.environment_id), changed(run)) for run in runs))
    # Within 250 ms that is at most 2 messages; a loaded machine may take longer to publish.
    limit = 1 + math.ceil((loop.time() - started) / FLUSH_INTERVAL)
    messages = await receive_all(communicator, window=1.0)
    assert 1 <= len(messages) <= limit
    joined = "".join(messages)
    for run in runs:
        assert f'<tr id="run-{run.id}" hx-swap-oob="true">' in joined
    assert await communicator.receive_nothing(timeout=0.3)


async def test_a_storm_reaches_the_browser_as_a_few_messages_a_second(user: User, connected: list) -> None:
    runs = [await make_run() for _ in range(20)]
    communicator = await connect("/ws/runs/?env=dev", user, connected)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while loop.time() < started + 1.0:
        await publish(runs[sent % len(runs)])
        sent += 1
        await asyncio.sleep(0.002)
    storm = loop.time() - started
    messages = await receive_all(communicator, window=0.6)
    # One message at once, then at most one per FLUSH_INTERVAL, plus the trailing flush.
    assert len(messages) <= 2 + math.ceil(storm / FLUSH_INTERVAL)
    assert len(messages) * 10 < sent


async def test_catch_up_sends_what_changed_since_the_page_was_rendered(user: User, connected: list) -> None:
    shown = await make_run()
    rendered = to_micros(timezone.now())
    await asyncio.sleep(0.01)
    cursor = f"{to_micros(shown.created_at)}.{shown.id}"
    await set_status(shown, "EXECUTING")
    newer = await make_run()
    path = f"/ws/runs/?env=dev&prepend=1&newest={cursor}&oldest={cursor}&since={rendered}"
    communicator = await connect(path, user, connected)
    message = await communicator.receive_from(timeout=2)
    assert f'<tbody id="runs-body" hx-swap-oob="afterbegin"><tr id="run-{newer.id}">' in message
    assert f'<tr id="run-{shown.id}" hx-swap-oob="true">' in message


async def test_run_page_gets_its_panel_on_change(user: User, connected: list) -> None:
    run, other = await make_run(), await make_run()
    communicator = await connect(f"/ws/runs/{run.id}/", user, connected)
    await publish(other)
    assert await communicator.receive_nothing(timeout=0.4)
    await set_status(run, "EXECUTING")
    for _ in range(10):
        await publish(run)
    message = await communicator.receive_from(timeout=2)
    assert message.startswith('<div id="run-panel" class="run-panel" hx-swap-oob="true">')
    assert "Executing" in message
    messages = await receive_all(communicator, window=0.6)
    assert len(messages) <= 1


async def test_a_dropped_message_is_made_good_by_the_next_reconcile(
    user: User, connected: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "RECONCILE_INTERVAL", 0.5)
    run = await make_run()
    communicator = await connect("/ws/runs/?env=dev", user, connected)
    page = await connect(f"/ws/runs/{run.id}/", user, connected)
    await set_status(run, "EXECUTING")  # and no message published, as if the channel was full
    row = await communicator.receive_from(timeout=3)
    assert f'<tr id="run-{run.id}" hx-swap-oob="true">' in row and "Executing" in row
    assert "Executing" in await page.receive_from(timeout=3)
