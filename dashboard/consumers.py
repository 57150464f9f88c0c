"""Websockets that keep the runs list and the run page live.

The engine publishes `run.changed` with run ids only (runs.events). A consumer collects the
ids and, at most every FLUSH_INTERVAL, renders the same partials the pages use from current
database state and sends them in one message of htmx out-of-band swaps. A storm of changes
thus reaches a browser as a few messages a second, and duplicates or reordering are harmless.

On connect, the query string says when the page was rendered (`since`, microseconds since
the epoch); what changed in between is pushed at once, so a late or re-opened socket catches up
(new runs: the newest page of them, so after a long outage the list may have a gap).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from dashboard.views import PAGE_SIZE, from_micros, newer_than, parse_cursor, run_panel_context
from runs.events import env_group, run_group
from runs.models import Environment, Run

log = logging.getLogger(__name__)
T = TypeVar("T")

FLUSH_INTERVAL = 0.25  # seconds between two messages to one browser, at least
# A full channel drops messages (channels-redis capacity), so every few seconds what changed on
# screen lately is rendered again: a dropped message leaves a row stale for seconds, not forever.
RECONCILE_INTERVAL = 5.0
# channels-redis forgets group members after a day; long-open tabs re-join well before that.
RESUBSCRIBE_INTERVAL = 3600.0
# Clocks of the web, worker and engine machines may differ a little: catch up generously.
CLOCK_SKEW = timedelta(seconds=5)


class CoalescingConsumer(AsyncWebsocketConsumer):
    """Joins one channel group and pushes re-rendered partials for the runs that changed."""

    group: str | None = None
    tasks: list[asyncio.Task[None]]

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.query = parse_qs(self.scope.get("query_string", b"").decode())
        self.pending: dict[str, bool] = {}  # run id -> created
        self.last_flush = -math.inf
        self.tasks = []
        self.flusher: asyncio.Task[None] | None = None
        self.checked = timezone.now()
        group = await self.subscribe() if user is not None and user.is_authenticated else None
        if group is None:
            await self.close()
            return
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.tasks.append(asyncio.create_task(self.maintain()))
        self.flusher = asyncio.create_task(self.catch_up())

    async def disconnect(self, code: int) -> None:
        for task in [*getattr(self, "tasks", []), getattr(self, "flusher", None)]:
            if task is not None:
                task.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_changed(self, event: dict[str, Any]) -> None:
        run_id = str(event["run_id"])
        self.pending[run_id] = self.pending.get(run_id, False) or bool(event.get("created"))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self.flush())

    async def flush(self) -> None:
        """Send what is pending; while more keeps coming, wait out FLUSH_INTERVAL between renders."""
        loop = asyncio.get_running_loop()
        while self.pending:
            wait = self.last_flush + FLUSH_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            batch, self.pending = self.pending, {}
            # Counted even when nothing was on screen: a storm elsewhere costs a render per interval.
            self.last_flush = loop.time()
            await self.push(self.render, batch)

    async def catch_up(self) -> None:
        since = from_micros(self.query.get("since", [""])[0])
        if since is not None and await self.push(self.render_since, since - CLOCK_SKEW):
            self.last_flush = asyncio.get_running_loop().time()
        await self.flush()  # whatever arrived meanwhile

    async def push(self, render: Callable[[T], str], arg: T) -> bool:
        """Render and send; False if there was nothing to send."""
        try:
            html = await database_sync_to_async(render)(arg)
        except Exception:
            # A failed render must not end live updates: the next change renders again.
            log.exception("could not render live update on %s", self.group)
            return False
        if html := html.strip():
            await self.send(text_data=html)
        return bool(html)

    async def maintain(self) -> None:
        """Every RECONCILE_INTERVAL, queue what changed on screen since the last look; renew the group."""
        loop = asyncio.get_running_loop()
        subscribed = loop.time()
        while True:
            await asyncio.sleep(RECONCILE_INTERVAL)
            since, self.checked = self.checked, timezone.now()
            try:
                changed = await database_sync_to_async(self.changed_since)(since - CLOCK_SKEW)
            except Exception:
                log.exception("could not look for changed runs on %s", self.group)
                continue
            for run_id in changed:
                await self.run_changed({"run_id": run_id})
            if self.group is not None and loop.time() - subscribed > RESUBSCRIBE_INTERVAL:
                await self.channel_layer.group_add(self.group, self.channel_name)
                subscribed = loop.time()

    async def subscribe(self) -> str | None:
        """The group to join, or None to refuse the connection."""
        raise NotImplementedError

    def render(self, batch: dict[str, bool]) -> str:
        raise NotImplementedError

    def render_since(self, since: datetime) -> str:
        raise NotImplementedError

    def changed_since(self, since: datetime) -> list[str]:
        raise NotImplementedError


class RunsConsumer(CoalescingConsumer):
    """`/ws/runs/?env=<slug>`: rows of the runs list of one environment.

    Query: `newest`/`oldest` are the cursors of the first and last row on screen (changes to
    runs outside that window are not sent); `prepend=1` on the first page puts new runs on top.
    """

    async def subscribe(self) -> str | None:
        slug = self.query.get("env", ["dev"])[0]
        self.newest = parse_cursor(self.query.get("newest", [""])[0])
        self.oldest = parse_cursor(self.query.get("oldest", [""])[0])
        self.prepend = self.query.get("prepend", [""])[0] == "1"
        environment = await database_sync_to_async(Environment.objects.filter(slug=slug).first)()
        if environment is None:
            return None
        self.environment_id = environment.id
        return env_group(environment.id)

    def on_screen(self) -> Q:
        window = Q(environment_id=self.environment_id)
        if self.oldest is not None:
            window &= newer_than(self.oldest, inclusive=True)
        if self.newest is not None and not self.prepend:
            window &= ~newer_than(self.newest)
        return window

    def render(self, batch: dict[str, bool]) -> str:
        runs = list(Run.objects.filter(self.on_screen(), pk__in=list(batch)))
        created = [run for run in runs if batch[run.id] and self.prepend]
        updated = [run for run in runs if not (batch[run.id] and self.prepend)]
        return self.render_rows(created, updated)

    def render_since(self, since: datetime) -> str:
        runs = Run.objects.filter(environment_id=self.environment_id)
        created: list[Run] = []
        if self.prepend:
            fresh = runs.filter(newer_than(self.newest)) if self.newest else runs
            created = list(fresh.order_by("-created_at", "-id")[:PAGE_SIZE])
        window = self.on_screen() & ~newer_than(self.newest) if self.newest else Q(pk__in=[])
        updated = list(runs.filter(window, updated_at__gte=since)[: PAGE_SIZE * 2])
        return self.render_rows(created, updated)

    def changed_since(self, since: datetime) -> list[str]:
        changed = Run.objects.filter(self.on_screen(), updated_at__gte=since).order_by("-updated_at")
        return list(changed.values_list("id", flat=True)[: PAGE_SIZE * 4])

    @staticmethod
    def render_rows(created: list[Run], updated: list[Run]) -> str:
        created.sort(key=lambda run: (run.created_at, run.id), reverse=True)
        return render_to_string("dashboard/partials/runs_push.html", {"created": created, "updated": updated})


class RunConsumer(CoalescingConsumer):
    """`/ws/runs/<run_id>/`: the panel of one run page."""

    async def subscribe(self) -> str | None:
        self.run_id = str(self.scope["url_route"]["kwargs"]["run_id"])
        exists = await database_sync_to_async(Run.objects.filter(pk=self.run_id).exists)()
        return run_group(self.run_id) if exists else None

    def render(self, batch: dict[str, bool]) -> str:
        return self.render_panel(Run.objects.select_related("environment").filter(pk=self.run_id))

    def render_since(self, since: datetime) -> str:
        return self.render_panel(
            Run.objects.select_related("environment").filter(pk=self.run_id, updated_at__gte=since)
        )

    def changed_since(self, since: datetime) -> list[str]:
        return list(Run.objects.filter(pk=self.run_id, updated_at__gte=since).values_list("id", flat=True))

    @staticmethod
    def render_panel(runs: QuerySet[Run]) -> str:
        run = runs.first()
        if run is None:
            return ""
        return render_to_string("dashboard/partials/run_panel.html", {**run_panel_context(run), "oob": True})
