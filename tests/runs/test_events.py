"""Publishing changes from sync code (the engine, the worker, web): runs.events."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.layers import get_channel_layer
from django.db import connection

from runs import events

pytestmark = pytest.mark.django_db(transaction=True)  # the publishing thread asks for on_commit

BURST = 300  # more than redis-py's connection limit per pool (100) if sent all at once


def publish_back_to_back(environment_id: int) -> None:
    """What the engine's or a worker's thread does; outside a transaction on_commit runs at once."""
    try:
        for n in range(BURST):
            events.publish_run_changed(environment_id=environment_id, run_id=f"run_{n}")
    finally:
        connection.close()


async def test_a_burst_of_publishes_arrives_whole_and_in_order() -> None:
    layer = get_channel_layer()
    environment_id = 990_001
    channel = await layer.new_channel()
    await layer.group_add(events.env_group(environment_id), channel)
    try:
        publisher = threading.Thread(target=publish_back_to_back, args=(environment_id,))
        publisher.start()
        received: list[str] = []
        async with asyncio.timeout(15):
            while len(received) < BURST:
                received.append((await layer.receive(channel))["run_id"])
        publisher.join()
    finally:
        await layer.group_discard(events.env_group(environment_id), channel)
    assert received == [f"run_{n}" for n in range(BURST)]
