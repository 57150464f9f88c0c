"""The Redis of REDIS_URL (the broker, the channel layer's and the rate limits' Redis), for code
that talks to it directly: the batch rate limit, the engine's read of Celery backlogs, the
login throttle, the API's request keys and signed URLs, the health check.

A leaf: imports nothing of runs/, so any layer may use it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    """One client (one connection pool) per process; REDIS_URL may be redis://... or unix:///path."""
    return connect()


def connect(**options: Any) -> redis.Redis:
    """A new client of its own with redis-py's options (socket_timeout=...); the caller closes it."""
    return redis.Redis.from_url(settings.REDIS_URL, **options)
