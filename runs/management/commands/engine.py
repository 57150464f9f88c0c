"""`manage.py engine`: the long-running engine loop.

Wakes on PostgreSQL NOTIFY (a trigger, a finished attempt), when the next delay ends or TTL
runs out, or at the latest every poll interval, and does one tick of time-driven work.
Several engines may run at once.
"""

from __future__ import annotations

import logging
import select
import signal
import time
from datetime import datetime
from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from runs import engine
from runs.engine.scheduler import next_due
from runs.events import ENGINE_CHANNEL
from runs.worker import persistent_connections

log = logging.getLogger("runyard.engine")
DUE_MARGIN = 0.002  # seconds
WAKE_GAP = 0.05  # seconds: at most one NOTIFY-driven tick per gap


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
            began = time.monotonic()
            ticked_at = self._tick()
            listener = self._wait(listener, self._timeout(ticked_at), not_before=began + WAKE_GAP)
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

    def _tick(self) -> datetime:
        """Tick until no batch is left full; returns the clock of the last tick."""
        now = timezone.now()
        try:
            close_old_connections()
            while engine.tick(now=now) >= engine.ADMIT_BATCH:
                now = timezone.now()  # more work is waiting: go again at once
        except Exception:
            log.exception("engine tick failed; retrying")
            connection.close()
            time.sleep(1)
        return now

    def _timeout(self, ticked_at: datetime) -> float:
        """Seconds to sleep: the poll interval, or less when something falls due sooner.

        A delay ending or a TTL running out notifies nothing: waiting for the next poll made
        a run due at a given time wait up to a whole interval before it was queued.
        """
        poll = float(settings.RUNYARD_ENGINE_POLL_INTERVAL)
        try:
            due = next_due(after=ticked_at)
        except DatabaseError:
            log.warning("engine cannot read the next due time; polling", exc_info=True)
            return poll
        if due is None:
            return poll
        # A hair past the due time: the next tick's clock must have reached it.
        return min(poll, max(0.0, (due - timezone.now()).total_seconds() + DUE_MARGIN))

    def _wait(
        self, listener: psycopg.Connection[Any] | None, timeout: float, *, not_before: float = 0.0
    ) -> psycopg.Connection[Any] | None:
        """Sleep until a wake-up or for `timeout` seconds; returns the listener to use next.

        A wake-up before `not_before` (time.monotonic()) waits for it, or for the timeout if
        sooner: under load every trigger, start and completion notifies, and ticking on each
        kept the engine busy back to back, taking CPU from the workers (docs/performance.md).

        A listener whose connection broke (the database restarted) is replaced: without
        that, the engine would never hear NOTIFY again and only poll.
        """
        deadline = time.monotonic() + timeout
        if listener is not None:
            try:
                ready, _, _ = select.select([listener.fileno()], [], [], timeout)
                if ready:
                    time.sleep(max(0.0, min(not_before, deadline) - time.monotonic()))
                    # What notified until now, the coming tick sees.
                    for _ in listener.notifies(timeout=0):
                        pass
                return listener
            except (psycopg.Error, OSError, ValueError):
                listener.close()
        time.sleep(timeout)
        return self._listen()
