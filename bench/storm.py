"""`python -m bench.storm GROUP RATE SECONDS RUN_ID...`: a storm of run.changed messages.

Sends RATE messages a second for SECONDS to channel group GROUP, each naming one of RUN_ID
in turn, exactly as runs.events publishes them; prints how many it sent and in how long.
Runs in its own process so the storm does not share a GIL with the clients it is measured by.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

TICKS = 50  # bursts a second


async def storm(group: str, rate: int, seconds: float, run_ids: list[str]) -> dict[str, float]:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    assert layer is not None
    began = time.perf_counter()
    total = int(rate * seconds)
    burst = max(1, rate // TICKS)  # sent concurrently every 1/TICKS s: one at a time cannot keep up
    for start in range(0, total, burst):
        messages = [
            {"type": "run.changed", "run_id": run_ids[sent % len(run_ids)], "created": False}
            for sent in range(start, min(start + burst, total))
        ]
        await asyncio.gather(*(layer.group_send(group, message) for message in messages))
        ahead = began + (start + burst) / rate - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return {"sent": total, "seconds": time.perf_counter() - began}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    group, rate, seconds, *run_ids = sys.argv[1:]
    print(json.dumps(asyncio.run(storm(group, int(rate), float(seconds), run_ids))), flush=True)


if __name__ == "__main__":
    main()
