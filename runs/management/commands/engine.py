"""`manage.py engine`: the long-running engine loop.

Wakes on PostgreSQL NOTIFY (a trigger, a finished attempt) or every poll interval, and
does one tick of time-driven work. Several engines may run at once.
"""

from __future__ import annotations

import logging
import select
import signal
import time
from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

from runs import engine
from runs.events import ENGINE_CHANNEL
from runs.worker import persistent_connections

log = logging.getLogger("runyard.engine")


class Command(BaseCommand):
    help = "Run the Runyard engine: admit queued runs, promote delayed ones, expire, recover."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="do one tick and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            engine.tick()
            return
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        persistent_connections()  # one thread, one connection, reused tick after tick
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("engine started")
        listener = self._listen()
        while not stopping:
            self._tick()
            self._wait(listener)
        listener.close()
        log.info("engine stopped")

    def _listen(self) -> psycopg.Connection[Any]:
        params = connection.get_connection_params()
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute(f"LISTEN {ENGINE_CHANNEL}")
        return conn

    def _tick(self) -> None:
        try:
            close_old_connections()
            while engine.tick() >= engine.ADMIT_BATCH:
                pass  # more work is waiting: go again at once
        except Exception:
            log.exception("engine tick failed; retrying")
            connection.close()
            time.sleep(1)

    def _wait(self, listener: psycopg.Connection[Any]) -> None:
        try:
            ready, _, _ = select.select([listener.fileno()], [], [], settings.RUNYARD_ENGINE_POLL_INTERVAL)
            if ready:
                for _ in listener.notifies(timeout=0):
                    pass
        except (psycopg.Error, OSError, ValueError):
            time.sleep(settings.RUNYARD_ENGINE_POLL_INTERVAL)
