"""The run page's websocket tells its Logs panel to fetch its tail when the worker wrote lines,
coalesced, against the real Redis channel layer."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group, Permission, User

from dashboard.fanout import FLUSH_INTERVAL
from runs import events
from runs.models import Run
from tests.dashboard.test_consumers import connect, make_run, receive_all

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

SIGNAL = '<div id="run-logs-signal" hidden hx-swap-oob="true"'


def wrote_lines(*runs: Run) -> dict[str, Any]:
    """What runs.events.publish_run_logs sends after a worker's write."""
    return {"type": "run.logs", "run_ids": [run.id for run in runs]}


async def send(run: Run, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(events.env_group(run.environment_id), message)


async def test_new_lines_of_the_run_push_a_signal_fetching_the_tail_with_the_panels_filters(
    user: User, connected: list
) -> None:
    run = await make_run()
    communicator = await connect(f"/ws/runs/{run.id}/", user, connected)
    await send(run, wrote_lines(run))
    message = await communicator.receive_from(timeout=2)
    assert message.startswith(SIGNAL)
    assert f'hx-get="/runs/{run.id}/logs/tail/"' in message
    assert 'hx-trigger="load"' in message and 'hx-include="#run-logs-form"' in message
    assert 'hx-swap="beforeend scroll:bottom"' in message
    assert "run-panel" not in message  # the run did not change: its panel is left alone


async def test_lines_of_another_run_push_nothing(user: User, connected: list) -> None:
    run, other = await make_run(), await make_run()
    communicator = await connect(f"/ws/runs/{run.id}/", user, connected)
    await send(other, wrote_lines(other))
    assert await communicator.receive_nothing(timeout=0.5)


async def test_a_burst_of_writes_reaches_the_browser_as_a_few_frames(user: User, connected: list) -> None:
    run, other = await make_run(), await make_run()
    communicator = await connect(f"/ws/runs/{run.id}/", user, connected)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(send(run, wrote_lines(other, run)) for _ in range(50)))
    limit = 1 + math.ceil((loop.time() - started) / FLUSH_INTERVAL)
    messages = await receive_all(communicator, window=1.0)
    assert 1 <= len(messages) <= min(limit, 3)
    assert all(message.startswith(SIGNAL) for message in messages)
    assert await communicator.receive_nothing(timeout=0.3)


@database_sync_to_async
def support_user() -> User:
    """May see runs, not their payloads (nor so their logs)."""
    group, _ = Group.objects.get_or_create(name="Support")
    group.permissions.add(Permission.objects.get(content_type__app_label="runs", codename="view_run"))
    user = User.objects.create_user(username="sam", password=None)
    user.groups.add(group)
    return user


async def test_a_user_who_may_not_see_payloads_gets_no_signal(user: User, connected: list) -> None:
    run = await make_run()
    communicator = await connect(f"/ws/runs/{run.id}/", await support_user(), connected)
    await send(run, wrote_lines(run))
    assert await communicator.receive_nothing(timeout=0.5)
