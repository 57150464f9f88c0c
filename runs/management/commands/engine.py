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
            listener = self._wait(listener)
        if listener is not None:
            listener.close()
        log.info("engine stopped")

    def _listen(self) -> psycopg.Connection[Any] | None:
        """A connection LISTENing for wake-ups; None while the database cannot be reached
        (the engine then polls, and listens again once it can)."""
        params = connection.get_connection_params()
        params.setdefault("connect_timeout", 5)
        try:
            conn = psycopg.connect(**params, autocommit=True)
            conn.execute(f"LISTEN {ENGINE_CHANNEL}")
        except psycopg.Error as exc:
            log.warning("engine cannot LISTEN for wake-ups (%s); polling meanwhile", exc)
            return None
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

    def _wait(self, listener: psycopg.Connection[Any] | None) -> psycopg.Connection[Any] | None:
        """Sleep until a wake-up or the poll interval; returns the listener to use next.

        A listener whose connection broke (the database restarted) is replaced: without
        that, the engine would never hear NOTIFY again and only poll.
        """
        if listener is not None:
            try:
                ready, _, _ = select.select([listener.fileno()], [], [], settings.RUNYARD_ENGINE_POLL_INTERVAL)
                if ready:
                    for _ in listener.notifies(timeout=0):
                        pass
                return listener
            except (psycopg.Error, OSError, ValueError):
                listener.close()
        time.sleep(settings.RUNYARD_ENGINE_POLL_INTERVAL)
        return self._listen()
