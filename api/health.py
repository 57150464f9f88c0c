"""Checks behind GET /healthz: database, Redis and live workers, each with a short timeout."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from runs.models import Worker
from runs.redis_client import connect

log = logging.getLogger(__name__)

TIMEOUT = 2  # seconds per check


def check_database() -> dict[str, Any]:
    started = time.monotonic()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {TIMEOUT * 1000}")
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ok", never a 500
        return _failed("database", exc)
    return {"ok": True, "latency_ms": _ms_since(started)}


def check_redis() -> dict[str, Any]:
    started = time.monotonic()
    try:
        _client(settings.REDIS_URL).ping()
    except Exception as exc:  # noqa: BLE001
        return _failed("redis", exc)
    return {"ok": True, "latency_ms": _ms_since(started)}


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    """One client (and connection pool) per Redis URL: a new connection per probe was a good
    part of a health check's time. redis-py reconnects a dropped connection on its next call."""
    return connect(socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)


def check_workers(database_ok: bool) -> dict[str, Any]:
    """Workers seen within RUNYARD_WORKER_TIMEOUT (they refresh last_seen_at while alive)."""
    hostnames: list[str] = []
    if database_ok:
        cutoff = timezone.now() - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
        try:
            hostnames = list(
                Worker.objects.filter(last_seen_at__gte=cutoff).order_by("hostname").values_list("hostname", flat=True)
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("health check of workers failed: %s", exc)
    return {"ok": bool(hostnames), "online": len(hostnames), "hostnames": hostnames}


def report() -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 200 while the database answers, else 503."""
    database, redis_ = check_database(), check_redis()
    workers = check_workers(database["ok"])
    healthy = database["ok"] and redis_["ok"] and workers["ok"]
    body = {"status": "ok" if healthy else "degraded", "database": database, "redis": redis_, "workers": workers}
    return (200 if database["ok"] else 503), body


def _failed(name: str, exc: Exception) -> dict[str, Any]:
    # The endpoint is public: details (hosts, socket paths) go to the log, not the response.
    log.warning("health check of %s failed: %s", name, exc)
    return {"ok": False, "error": type(exc).__name__}


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
