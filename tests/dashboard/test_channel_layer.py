"""The channel layer survives a quiet channel (channels_redis#422 with redis-py's 5 s timeout)."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer


@pytest.mark.asyncio
async def test_a_consumer_waiting_longer_than_a_blocking_read_does_not_crash() -> None:
    layer = get_channel_layer()
    assert layer is not None
    name = await layer.new_channel()
    # Longer than channels-redis's 5 s BRPOP: a socket timeout would raise TimeoutError here.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(name), 6.5)
    await layer.send(name, {"type": "still.alive"})
    assert (await layer.receive(name))["type"] == "still.alive"
