"""Publishing changes from sync code (the engine, the worker, web): runs.events."""

from __future__ import annotations

import asyncio
import threading
import time

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
                message = await layer.receive(channel)
                received += [message["run_id"]] if message["type"] == "run.changed" else message["run_ids"]
        publisher.join()
    finally:
        await layer.group_discard(events.env_group(environment_id), channel)
    assert received == [f"run_{n}" for n in range(BURST)]


def test_changes_queued_together_merge_per_environment_and_kind_in_order() -> None:
    first = events.Change(1, ["run_a"], created=True)
    assert first.absorb(events.Change(1, ["run_b", "run_c"], created=True))
    assert not first.absorb(events.Change(2, ["run_d"], created=True))  # another environment's group
    assert not first.absorb(events.Change(1, ["run_e"], created=False))  # a change, not a creation
    assert first.message() == {"type": "runs.changed", "run_ids": ["run_a", "run_b", "run_c"], "created": True}
    assert events.Change(1, ["run_a"], created=False).message() == {
        "type": "run.changed",
        "run_id": "run_a",
        "created": False,
    }
    full = events.Change(1, [f"run_{n}" for n in range(events.RUNS_PER_MESSAGE)], created=False)
    assert not full.absorb(events.Change(1, ["run_x"], created=False))  # one message stays under its size


async def test_changes_within_the_linger_go_out_as_one_message_naming_each_run_once() -> None:
    """A worker's start and completion of a short run, and the next runs' as well, cost the
    publishing loop one message, not one each."""
    layer = get_channel_layer()
    environment_id = 990_002
    channel = await layer.new_channel()
    await layer.group_add(events.env_group(environment_id), channel)
    changes = [("run_a", False), ("run_a", False), ("run_b", False), ("run_c", True)]
    try:

        def publish() -> None:
            for run_id, created in changes:
                events.publish_run_changed(environment_id=environment_id, run_id=run_id, created=created)
            assert events.flush()
            connection.close()

        await asyncio.to_thread(publish)
        async with asyncio.timeout(5):
            first = await layer.receive(channel)
            second = await layer.receive(channel)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(events.PUBLISH_LINGER * 5):
                await layer.receive(channel)
    finally:
        await layer.group_discard(events.env_group(environment_id), channel)
    assert first == {"type": "runs.changed", "run_ids": ["run_a", "run_b"], "created": False}
    assert second == {"type": "run.changed", "run_id": "run_c", "created": True}


async def test_a_stream_of_changes_goes_out_at_most_once_per_publish_interval() -> None:
    """A busy worker changes runs every few milliseconds: it sends what changed since its last
    send, not a message per linger."""
    layer = get_channel_layer()
    environment_id = 990_003
    channel = await layer.new_channel()
    await layer.group_add(events.env_group(environment_id), channel)
    run_ids = [f"run_{n}" for n in range(100)]
    try:

        def stream() -> float:
            began = time.monotonic()
            for run_id in run_ids:
                events.publish_run_changed(environment_id=environment_id, run_id=run_id)
                time.sleep(0.005)
            assert events.flush()
            connection.close()
            return time.monotonic() - began

        elapsed = await asyncio.to_thread(stream)
        received: list[str] = []
        messages = 0
        async with asyncio.timeout(5):
            while len(received) < len(run_ids):
                message = await layer.receive(channel)
                received += [message["run_id"]] if message["type"] == "run.changed" else message["run_ids"]
                messages += 1
    finally:
        await layer.group_discard(events.env_group(environment_id), channel)
    assert received == run_ids
    assert messages <= elapsed // events.PUBLISH_INTERVAL + 1


def test_new_lines_of_a_run_that_changed_in_the_same_send_cost_no_message_of_their_own() -> None:
    """A short run logging as it runs: its start, its lines and its completion are one message
    (its page takes a change of the run for new lines too); lines of another run still go."""
    changes = [
        events.Change(1, ["run_a"], created=False),
        events.Change(1, ["run_a", "run_b"], created=False, logs=True),
        events.Change(1, ["run_a"], created=False),
        events.Change(2, ["run_c"], created=False, logs=True),
        events.Change(1, ["run_d"], created=True),
        events.Change(1, ["run_e"], created=False),
    ]
    messages = [change.message() for change in events.merge(changes)]
    assert messages == [
        {"type": "runs.changed", "run_ids": ["run_a", "run_e"], "created": False},
        {"type": "run.logs", "run_ids": ["run_b"]},
        {"type": "run.logs", "run_ids": ["run_c"]},  # another environment's group
        {"type": "run.changed", "run_id": "run_d", "created": True},
    ]
