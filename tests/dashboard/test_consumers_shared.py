"""Sockets of the same page share their renders: a change costs one query, not one per browser."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group, Permission, User
from django.db import connections
from django.test.utils import CaptureQueriesContext

from dashboard import consumers, fanout
from dashboard.views import to_micros
from runs import events
from tests.dashboard.test_consumers import connect, make_run, publish, set_status, updated_row

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

SOCKETS = 100


@pytest.fixture(autouse=True)
def no_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the pushes of published changes are counted here.
    monkeypatch.setattr(fanout, "RECONCILE_INTERVAL", 3600.0)


class Queries:
    """The queries of channels' database thread (where every consumer's sync code runs) meanwhile."""

    def __init__(self) -> None:
        self.capture: CaptureQueriesContext | None = None

    @database_sync_to_async
    def __aenter__(self) -> Queries:
        self.capture = CaptureQueriesContext(connections["default"])
        self.capture.__enter__()
        return self

    @database_sync_to_async
    def __aexit__(self, *exc: object) -> None:
        assert self.capture is not None
        self.capture.__exit__(None, None, None)

    def sql(self) -> list[str]:
        assert self.capture is not None
        return [query["sql"] for query in self.capture.captured_queries]

    def of_rows(self, run_id: str) -> list[str]:
        """The queries that fetched the changed run's row."""
        assert self.capture is not None
        return [query["sql"] for query in self.capture.captured_queries if f"'{run_id}'" in query["sql"]]


async def test_a_hundred_sockets_of_the_same_list_cost_one_query_per_change(user: User, connected: list) -> None:
    run = await make_run()
    sockets = [await connect("/ws/runs/?env=dev", user, connected) for _ in range(SOCKETS)]
    await set_status(run, "EXECUTING")
    async with Queries() as queries:
        await publish(run)
        frames = await asyncio.gather(*(socket.receive_from(timeout=10) for socket in sockets))
    for frame in frames:
        assert frame.startswith(updated_row(run)) and 'data-status="EXECUTING"' in frame
    # Each socket used to fetch the row itself: a hundred queries, one after the other.
    assert 1 <= len(queries.of_rows(run.id)) <= 3, queries.of_rows(run.id)


async def test_a_hundred_sockets_read_the_pauses_holding_a_queued_run_once_per_change(
    user: User, connected: list
) -> None:
    run = await make_run()
    sockets = [await connect("/ws/runs/?env=dev", user, connected) for _ in range(SOCKETS)]
    await set_status(run, "QUEUED")
    async with Queries() as queries:
        await publish(run)
        await asyncio.gather(*(socket.receive_from(timeout=10) for socket in sockets))
    # A socket marking its own rows read the environment's, tasks' and queues' pauses itself.
    pause_reads = [sql for sql in queries.sql() if '"runs_taskpause"' in sql]
    assert 1 <= len(pause_reads) <= 3, pause_reads


async def test_sockets_with_other_filters_or_windows_still_get_only_their_rows(user: User, connected: list) -> None:
    shown = await make_run()
    cursor = f"{to_micros(shown.created_at)}.{shown.id}"
    first_page = await connect(f"/ws/runs/?env=dev&prepend=1&newest={cursor}&oldest={cursor}", user, connected)
    second_page = await connect(f"/ws/runs/?env=dev&newest={cursor}&oldest={cursor}", user, connected)
    other_task = await connect("/ws/runs/?env=dev&task=sleep&prepend=1", user, connected)
    new = await make_run()  # published on commit
    assert (await first_page.receive_from(timeout=2)).startswith(
        f'<tbody id="runs-body" hx-swap-oob="afterbegin"><tr id="run-{new.id}">'
    )
    await set_status(shown, "EXECUTING")
    await publish(shown)
    assert (await first_page.receive_from(timeout=2)).startswith(updated_row(shown))
    assert (await second_page.receive_from(timeout=2)).startswith(updated_row(shown))
    assert await other_task.receive_nothing(timeout=0.5)
    assert await second_page.receive_nothing(timeout=0.1)


@database_sync_to_async
def make_admin() -> User:
    return User.objects.create_superuser(username="root", password="a-long-password-2")


@database_sync_to_async
def hide_payloads_from_viewers() -> None:
    viewers = Group.objects.get(name="Viewers")
    viewers.permissions.remove(Permission.objects.get(content_type__app_label="runs", codename="view_payload"))


async def test_a_shared_render_is_never_sent_to_a_user_with_other_permissions(
    user: User, connected: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are rendered with the permissions of the user they go to (runs.view_payload decides
    whether a payload may show), and reused only for users with the same permissions."""
    render = consumers.render_to_string

    def marked(template: str, context: dict[str, Any]) -> str:
        return render(template, context) + f"<!-- payload: {context.get('perms_payload')} -->"

    monkeypatch.setattr(consumers, "render_to_string", marked)
    admin = await make_admin()
    await hide_payloads_from_viewers()  # ada, in no group, has the Viewers group's permissions
    run = await make_run()
    sockets = {
        name: await connect("/ws/runs/?env=dev", who, connected) for name, who in [("ada", user), ("root", admin)]
    }
    await set_status(run, "EXECUTING")
    await publish(run)
    ada, root = [await sockets[name].receive_from(timeout=2) for name in ("ada", "root")]
    assert updated_row(run) in ada and ada.endswith("<!-- payload: False -->")
    assert updated_row(run) in root and root.endswith("<!-- payload: True -->")


async def test_a_socket_gone_while_its_render_waits_leaves_the_others_theirs(user: User, connected: list) -> None:
    run = await make_run()
    leaving, staying = [await connect("/ws/runs/?env=dev", user, connected) for _ in range(2)]
    await set_status(run, "EXECUTING")
    await publish(run)
    await leaving.disconnect()
    connected.remove(leaving)
    assert (await staying.receive_from(timeout=2)).startswith(updated_row(run))
    await set_status(run, "WAITING")
    await publish(run)
    assert 'data-status="WAITING"' in await staying.receive_from(timeout=2)


async def group_members(group: str) -> list[bytes]:
    layer = get_channel_layer()
    assert layer is not None
    connection = layer.connection(layer.consistent_hash(group))
    return list(await connection.zrange(layer._group_key(group), 0, -1))


async def test_a_process_joins_the_environments_group_once_for_all_its_sockets(user: User, connected: list) -> None:
    """A change is read from Redis once per process and handed to each socket, instead of being
    dispatched to a hundred channels (a storm of changes was a hundred times as many messages)."""
    run = await make_run()
    group = events.env_group(run.environment_id)
    earlier = set(await group_members(group))  # left in Redis by other processes (and test runs)
    sockets = await asyncio.gather(*(connect("/ws/runs/?env=dev", user, connected) for _ in range(20)))
    assert len(set(await group_members(group)) - earlier) == 1
    await set_status(run, "EXECUTING")
    await publish(run)
    for socket in sockets:
        assert (await socket.receive_from(timeout=5)).startswith(updated_row(run))
    await asyncio.gather(*(socket.disconnect() for socket in sockets))
    connected.clear()
    assert set(await group_members(group)) == earlier  # the last socket gone, the process leaves
    again = await connect("/ws/runs/?env=dev", user, connected)
    await publish(run)
    assert (await again.receive_from(timeout=2)).startswith(updated_row(run))


async def test_messages_to_a_browser_are_a_flush_interval_apart_even_after_a_slow_render(
    user: User, connected: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interval counts from the send: a slow render followed by a quick one must not put two
    messages closer together than FLUSH_INTERVAL (a client counts what it receives)."""
    render_group = consumers.RunsConsumer.render_group
    renders = 0

    def every_other_slow(cls: type, members: list[Any]) -> list[Any]:
        nonlocal renders
        renders += 1
        if renders % 2:
            time.sleep(0.2)  # on the database thread, as a slow query would
        return render_group(members)

    monkeypatch.setattr(consumers.RunsConsumer, "render_group", classmethod(every_other_slow))
    run = await make_run()
    socket = await connect("/ws/runs/?env=dev", user, connected)
    loop = asyncio.get_running_loop()

    async def storm() -> None:
        started = loop.time()
        while loop.time() < started + 1.5:
            await publish(run)
            await asyncio.sleep(0.02)

    async def arrivals() -> list[float]:
        times: list[float] = []
        deadline = loop.time() + 2.2
        while (left := deadline - loop.time()) > 0:
            if not await socket.receive_nothing(timeout=min(left, 0.02), interval=0.005):
                await socket.receive_from()
                times.append(loop.time())
        return times

    _, times = await asyncio.gather(storm(), arrivals())
    assert len(times) >= 3 and renders >= 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= fanout.FLUSH_INTERVAL - 0.02, gaps


async def test_the_reconciles_of_sockets_showing_the_same_rows_are_one_query(
    user: User, connected: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every few seconds each socket looks for changes it may have missed; sockets showing the
    same rows look together (on the same beat), and each still gets what changed on its screen."""
    monkeypatch.setattr(fanout, "RECONCILE_INTERVAL", 0.5)
    run = await make_run()
    sockets = await asyncio.gather(*(connect("/ws/runs/?env=dev", user, connected) for _ in range(50)))
    async with Queries() as queries:
        await set_status(run, "EXECUTING")  # and nothing published, as if the message was dropped
        frames = await asyncio.gather(*(socket.receive_from(timeout=5) for socket in sockets))
        await asyncio.sleep(0.6)  # another beat
    for frame in frames:
        assert frame.startswith(updated_row(run)) and 'data-status="EXECUTING"' in frame
    looks = [sql for sql in queries.sql() if '"runs_run"."updated_at" >=' in sql]
    # Fifty sockets used to look one after the other: a hundred queries in two beats.
    assert 1 <= len(looks) <= 6, looks
