"""The live websockets, against the real Redis channel layer and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User
from django.test import Client
from django.utils import timezone

from dashboard import fanout
from dashboard.asgi import application
from dashboard.fanout import FLUSH_INTERVAL
from dashboard.routing import websocket_urlpatterns
from dashboard.views import to_micros
from runs import events
from runs.models import Batch, Run
from tests import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

ORIGIN = (b"origin", b"http://testserver")


@database_sync_to_async
def make_user() -> User:
    factories.environment("dev")  # transactional tests start without the migration's rows
    factories.roles()  # a user in no group sees runs as the Viewers group does
    return User.objects.create_user(username="ada", password="a-long-password-1")


@database_sync_to_async
def make_run(task_id: str = "hello-world", **kwargs: Any) -> Run:
    run = factories.run(task_id, **kwargs)
    events.flush()  # its creation is told before the test goes on
    return run


@database_sync_to_async
def set_status(run: Run, status: str) -> None:
    fields: dict[str, Any] = {"status": status, "updated_at": timezone.now()}
    if status == "EXECUTING":
        fields["started_at"] = timezone.now()
    Run.objects.filter(pk=run.pk).update(**fields)


def updated_row(run: Run) -> str:
    """How a changed row starts in a push: it replaces the row with its id."""
    return f'<tr id="run-{run.id}" hx-swap-oob="true">'


def top_level_tags(html: str) -> list[str]:
    """The tags of a message's top-level elements, as htmx's ws extension swaps them."""
    from html.parser import HTMLParser

    tags: list[str] = []
    depth = 0

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: Any) -> None:
            nonlocal depth
            if depth == 0:
                tags.append(tag)
            depth += tag not in {"br", "hr", "img", "input", "meta", "link", "wbr"}

        def handle_endtag(self, tag: str) -> None:
            nonlocal depth
            depth -= 1

    Parser().feed(html)
    return tags


def changed(run: Run, created: bool = False) -> dict[str, Any]:
    return {"type": "run.changed", "run_id": run.id, "created": created}


async def publish(run: Run, created: bool = False) -> None:
    """What runs.events sends after a commit."""
    message = changed(run, created)
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(events.env_group(run.environment_id), message)


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
    assert message.startswith(updated_row(run))
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
        assert updated_row(run) in joined
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
    prepended, replaced = await communicator.receive_from(timeout=2), await communicator.receive_from(timeout=2)
    assert prepended.startswith(f'<tbody id="runs-body" hx-swap-oob="afterbegin"><tr id="run-{newer.id}">')
    assert replaced.startswith(updated_row(shown))
    # In frames of their own: a browser parses a bare <tr> beside a <tbody> into a nameless
    # <tbody> (or drops it), and htmx would find nothing to swap.
    assert top_level_tags(prepended) == ["tbody"] and top_level_tags(replaced) == ["tr"]
    assert await communicator.receive_nothing(timeout=0.3)


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
    monkeypatch.setattr(fanout, "RECONCILE_INTERVAL", 0.5)
    run = await make_run()
    communicator = await connect("/ws/runs/?env=dev", user, connected)
    page = await connect(f"/ws/runs/{run.id}/", user, connected)
    await set_status(run, "EXECUTING")  # and no message published, as if the channel was full
    row = await communicator.receive_from(timeout=3)
    assert updated_row(run) in row and "Executing" in row
    assert "Executing" in await page.receive_from(timeout=3)


@database_sync_to_async
def make_batch(size: int, env: str = "dev") -> tuple[Batch, list[Run]]:
    from runs import engine

    factories.task_definition("hello-world")
    entries = [engine.BatchEntry(task_id="hello-world") for _ in range(size)]
    batch = engine.trigger_batch(environment=factories.environment(env), entries=entries, actor="test")
    events.flush()
    return batch, list(Run.objects.filter(batch=batch).order_by("created_at", "id"))


def cursor_of(run: Run) -> str:
    return f"{to_micros(run.created_at)}.{run.id}"


async def test_a_childs_change_re_renders_its_parents_panel(user: User, connected: list) -> None:
    parent = await make_run("fan-out")
    child = await make_run(parent_run_id=parent.id, resume_parent=True)
    stranger = await make_run()
    communicator = await connect(f"/ws/runs/{parent.id}/", user, connected)
    await publish(stranger)
    assert await communicator.receive_nothing(timeout=0.5)

    await set_status(child, "EXECUTING")
    await publish(child)
    message = await communicator.receive_from(timeout=2)
    assert message.startswith('<div id="run-panel" class="run-panel" hx-swap-oob="true">')
    row = message.split(f'<tr id="run-{child.id}">', 1)[1].split("</tr>", 1)[0]
    assert 'data-status="EXECUTING"' in row
    assert "hx-swap-oob" not in message[1:].split("\n", 1)[1]  # the panel is swapped whole

    newborn = await make_run(parent_run_id=parent.id)  # the engine publishes its creation
    assert f'<tr id="run-{newborn.id}">' in await communicator.receive_from(timeout=2)


async def test_a_replay_shows_live_on_its_originals_page(user: User, connected: list) -> None:
    from runs import engine

    original = await make_run()
    communicator = await connect(f"/ws/runs/{original.id}/", user, connected)
    replay = await database_sync_to_async(engine.replay_run)(
        run_id=original.id, actor="user:test", options=engine.TriggerOptions()
    )
    message = await communicator.receive_from(timeout=2)
    replays = message.split("<dt>Replays</dt>", 1)[1].split("</dd>", 1)[0]
    assert f'href="/runs/{replay.run.id}/"' in replays


async def test_a_parents_change_re_renders_its_childs_panel(user: User, connected: list) -> None:
    parent = await make_run("fan-out")
    child = await make_run(parent_run_id=parent.id)
    communicator = await connect(f"/ws/runs/{child.id}/", user, connected)
    await set_status(parent, "EXECUTING")
    await publish(parent)
    related = (await communicator.receive_from(timeout=2)).split('id="run-related-title"', 1)[1]
    assert f'href="/runs/{parent.id}/"' in related and 'data-status="EXECUTING"' in related


async def test_run_page_catches_up_with_children_changed_since_it_was_rendered(user: User, connected: list) -> None:
    parent = await make_run("fan-out")
    child = await make_run(parent_run_id=parent.id)
    rendered = to_micros(timezone.now()) + 10_000_000  # even past the allowance for clock skew
    await set_status(child, "EXECUTING")
    communicator = await connect(f"/ws/runs/{parent.id}/?since={rendered}", user, connected)
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
    connected.remove(communicator)
    communicator = await connect(f"/ws/runs/{parent.id}/?since={to_micros(timezone.now())}", user, connected)
    assert 'data-status="EXECUTING"' in await communicator.receive_from(timeout=2)


async def test_batch_counts_are_pushed_once_per_burst(user: User, connected: list) -> None:
    batch, runs = await make_batch(5)
    communicator = await connect(f"/ws/batches/{batch.id}/", user, connected)
    assert await communicator.receive_nothing(timeout=0.3)
    for run in runs:
        await set_status(run, "EXECUTING")
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(layer.group_send(events.env_group(run.environment_id), changed(run)) for run in runs))
    limit = 1 + math.ceil((loop.time() - started) / FLUSH_INTERVAL)
    messages = await receive_all(communicator, window=1.0)
    assert 1 <= len(messages) <= limit
    for message in messages:  # the rows on screen, then the counts: once per message
        tags = top_level_tags(message)
        assert tags[-1] == "section" and set(tags[:-1]) <= {"tr"}, tags
    last = messages[-1][messages[-1].index("<section") :]
    assert last.startswith('<section id="batch-counts" class="card" aria-labelledby="batch-counts-title" hx-swap-oob')
    assert '<li class="count" data-status="EXECUTING">' in last and '<span class="count-n">5</span>' in last
    assert 'data-status="QUEUED"' not in last
    joined = "".join(messages)
    for run in runs:
        assert updated_row(run) in joined
    assert await communicator.receive_nothing(timeout=0.3)


async def test_batch_page_ignores_other_runs_and_catches_up(user: User, connected: list) -> None:
    batch, runs = await make_batch(2)
    _, others = await make_batch(2)
    loose = await make_run()
    rendered = to_micros(timezone.now())
    await asyncio.sleep(0.01)
    await set_status(runs[0], "EXECUTING")
    path = f"/ws/batches/{batch.id}/?since={rendered}&newest={cursor_of(runs[-1])}&oldest={cursor_of(runs[0])}"
    communicator = await connect(path, user, connected)
    caught_up = await communicator.receive_from(timeout=2)
    assert '<li class="count" data-status="EXECUTING">' in caught_up
    assert updated_row(runs[0]) in caught_up
    for run in [*others, loose]:
        await set_status(run, "EXECUTING")
        await publish(run)
    assert await communicator.receive_nothing(timeout=0.6)


async def test_unknown_batch_is_refused(user: User) -> None:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/batches/batch_nope/")
    communicator.scope["user"] = user
    ok, _ = await communicator.connect()
    assert not ok
    anonymous = WebsocketCommunicator(application, "/ws/batches/batch_nope/", headers=[ORIGIN])
    ok, _ = await anonymous.connect()
    assert not ok


async def test_a_list_filtered_by_batch_gets_only_that_batchs_runs(user: User, connected: list) -> None:
    batch, runs = await make_batch(1)
    cursor = cursor_of(runs[0])
    path = f"/ws/runs/?env=dev&batch={batch.id}&prepend=1&newest={cursor}&oldest={cursor}"
    communicator = await connect(path, user, connected)
    await make_batch(1)  # runs of another batch are created and published
    loose = await make_run()
    await set_status(loose, "EXECUTING")
    await publish(loose)
    assert await communicator.receive_nothing(timeout=0.6)
    joined = await make_run(batch_id=batch.id)
    message = await communicator.receive_from(timeout=2)
    assert message.startswith(f'<tbody id="runs-body" hx-swap-oob="afterbegin"><tr id="run-{joined.id}">')
    assert loose.id not in message
