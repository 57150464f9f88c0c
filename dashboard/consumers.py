"""Websockets that keep the runs list, the run page and the batch page live.

The engine publishes `run.changed` with run ids only (runs.events). A consumer joins its
environment's group, collects the ids and, at most every FLUSH_INTERVAL, renders the same
partials the pages use from current database state (nothing, if no change concerns its page)
and sends them as htmx out-of-band swaps: one frame, or two when a runs table gets new and
changed rows at once (see partials/runs_push.html). A storm of changes thus reaches a browser
as a few flushes a second, and duplicates or reordering are harmless.

On connect, the query string says when the page was rendered (`since`, microseconds since
the epoch); what changed in between is pushed at once, so a late or re-opened socket catches up
(new runs: the newest page of them, so after a long outage the list may have a gap).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from dashboard.permissions import roles
from dashboard.views import (
    PAGE_SIZE,
    batch_counts_context,
    from_micros,
    newer_than,
    parse_cursor,
    run_panel_context,
    with_relations,
)
from runs.events import env_group
from runs.filters import RunFilters
from runs.models import Batch, Environment, Run

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
# Every socket of a page renders the same rows when a run changes, one after the other on
# channels' database thread: with 100 browsers open that took seconds (docs/performance.md).
# Rows of the same runs in the same state are rendered once and shared for a moment.
RENDER_REUSE = 1.0  # seconds a rendered frame is reused for runs that have not changed since
_rendered: dict[tuple[object, ...], tuple[float, str]] = {}


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

    async def runs_changed(self, event: dict[str, Any]) -> None:
        """Many runs changed at once (a batch): as many run.changed messages."""
        created = bool(event.get("created"))
        for run_id in event["run_ids"]:
            await self.run_changed({"run_id": run_id, "created": created})

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

    async def push(self, render: Callable[[T], list[str]], arg: T) -> bool:
        """Render and send the frames; False if there was nothing to send."""
        try:
            frames = await database_sync_to_async(render)(arg)
        except Exception:
            # A failed render must not end live updates: the next change renders again.
            log.exception("could not render live update on %s", self.group)
            return False
        frames = [html for frame in frames if (html := frame.strip())]
        for html in frames:
            await self.send(text_data=html)
        return bool(frames)

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

    def render(self, batch: dict[str, bool]) -> list[str]:
        """The frames to send for the runs in batch (run id -> created)."""
        raise NotImplementedError

    def render_since(self, since: datetime) -> list[str]:
        """The frames that bring a page rendered at `since` up to date."""
        raise NotImplementedError

    def changed_since(self, since: datetime) -> list[str]:
        raise NotImplementedError


class RunsConsumer(CoalescingConsumer):
    """`/ws/runs/?env=<slug>&<filters>`: rows of the runs list of one environment.

    Query: the list's filters (runs.filters.RunFilters, parsed exactly as the page parses
    them); `newest`/`oldest` are the cursors of the first and last row on screen (changes to
    runs outside that window are not sent); `prepend=1` on the first page puts new runs on top.

    What is sent:
    - A run matching every filter that sorts above the newest row on screen is prepended on
      the first page: a new run, or a newer one that has only now reached a status the list
      filters on (a run created earlier than the newest row is left for a reload: its place
      is in the middle of the list). The browser keeps the rows in creation order.
    - A row on screen is patched whenever its run changes, even when it no longer matches a
      status filter: it stays, showing its new status, until the page is reloaded, so a row
      never vanishes under the operator's cursor.
    - Nothing for runs that do not match the filters other than status.
    """

    base: Q  # the runs the list could show, whatever their status
    filters: RunFilters
    shown: set[str]  # ids of the rows this socket knows to be on screen

    async def subscribe(self) -> str | None:
        slug = self.query.get("env", ["dev"])[0]
        self.read_window()
        environment = await database_sync_to_async(Environment.objects.filter(slug=slug).first)()
        if environment is None:
            return None
        self.filters = RunFilters.from_query(self.query, timezone.now())
        self.base = Q(environment_id=environment.id) & self.filters.q_except_status()
        await database_sync_to_async(self.remember_page)()
        return env_group(environment.id)

    def read_window(self) -> None:
        self.newest = parse_cursor(self.query.get("newest", [""])[0])
        self.oldest = parse_cursor(self.query.get("oldest", [""])[0])
        self.prepend = self.query.get("prepend", [""])[0] == "1"
        self.filters = RunFilters()
        self.shown = set()

    def remember_page(self) -> None:
        """The rows the page rendered: those between its cursors that match the filters now."""
        if self.newest is not None and self.oldest is not None:
            page = self.base & self.filters.q() & newer_than(self.oldest, inclusive=True) & ~newer_than(self.newest)
            self.shown.update(Run.objects.filter(page).values_list("id", flat=True)[: PAGE_SIZE * 2])

    def window(self) -> Q:
        """The runs whose rows could be on screen: between the cursors (or above, with prepend)."""
        window = Q(self.base)
        if self.oldest is not None:
            window &= newer_than(self.oldest, inclusive=True)
        if self.newest is not None and not self.prepend:
            window &= ~newer_than(self.newest)
        return window

    def is_fresh(self, run: Run) -> bool:
        """A run to put on top: it sorts above the newest row the page had."""
        return self.prepend and (self.newest is None or (run.created_at, run.id) > self.newest)

    def render(self, batch: dict[str, bool]) -> list[str]:
        ids = list(batch)
        known = [run_id for run_id in ids if run_id in self.shown]
        runs = Run.objects.filter(Q(pk__in=ids) & (self.window() | Q(pk__in=known)))
        return self.sort_out(list(runs))

    def sort_out(self, runs: list[Run]) -> list[str]:
        """Rows on screen are patched; matching runs above them are prepended; the rest left out."""
        created: list[Run] = []
        updated: list[Run] = []
        for run in runs:
            if run.id in self.shown:
                updated.append(run)
            elif self.filters.matches_status(run.status):
                (created if self.is_fresh(run) else updated).append(run)
        self.shown.update(run.id for run in [*created, *updated])
        return self.render_rows(created, updated)

    def render_since(self, since: datetime) -> list[str]:
        runs: list[Run] = []
        if self.prepend:
            fresh = Run.objects.filter(self.base & self.filters.q())
            fresh = fresh.filter(newer_than(self.newest)) if self.newest else fresh
            runs += fresh.order_by("-created_at", "-id")[:PAGE_SIZE]
        if self.newest is not None:
            window = self.window() & ~newer_than(self.newest)
            runs += Run.objects.filter(window, updated_at__gte=since)[: PAGE_SIZE * 2]
        return self.sort_out(runs)

    def changed_since(self, since: datetime) -> list[str]:
        changed = Run.objects.filter(self.window(), updated_at__gte=since).order_by("-updated_at")
        return list(changed.values_list("id", flat=True)[: PAGE_SIZE * 4])

    @staticmethod
    def render_rows(created: list[Run], updated: list[Run]) -> list[str]:
        created.sort(key=lambda run: (run.created_at, run.id), reverse=True)
        return [render_push("created", created) if created else "", render_push("updated", updated) if updated else ""]


class BatchConsumer(RunsConsumer):
    """`/ws/batches/<batch_id>/`: the batch page, its counts by status and the rows on screen.

    Query as for RunsConsumer, without `env` and filters. The engine publishes per run, so this
    joins the batch's environment group and keeps the changes of runs of this batch.
    """

    async def subscribe(self) -> str | None:
        self.batch_id = str(self.scope["url_route"]["kwargs"]["batch_id"])
        self.read_window()
        environments = Batch.objects.filter(pk=self.batch_id).values_list("environment_id", flat=True)
        environment_id = await database_sync_to_async(environments.first)()
        if environment_id is None:
            return None
        self.base = Q(environment_id=environment_id, batch_id=self.batch_id)
        await database_sync_to_async(self.remember_page)()
        return env_group(environment_id)

    def render(self, batch: dict[str, bool]) -> list[str]:
        if not Run.objects.filter(self.base, pk__in=list(batch)).exists():
            return []
        return self.with_counts(super().render(batch))

    def render_since(self, since: datetime) -> list[str]:
        if not Run.objects.filter(self.base, updated_at__gte=since).exists():
            return []
        return self.with_counts(super().render_since(since))

    def changed_since(self, since: datetime) -> list[str]:
        # Not only the rows on screen: every run of the batch counts.
        changed = Run.objects.filter(self.base, updated_at__gte=since).order_by("-updated_at")
        return list(changed.values_list("id", flat=True)[: PAGE_SIZE * 4])

    def with_counts(self, frames: list[str]) -> list[str]:
        """The counts after the last frame of rows (a <section> before a <tr> would swallow it)."""
        batch = Batch.objects.filter(pk=self.batch_id).first()
        if batch is None:
            return frames
        counts = render_to_string("dashboard/partials/batch_counts.html", {**batch_counts_context(batch), "oob": True})
        rows = [frame for frame in frames if frame.strip()]
        return [*rows[:-1], rows[-1] + counts] if rows else [counts]


class RunConsumer(CoalescingConsumer):
    """`/ws/runs/<run_id>/`: the panel of one run page.

    The panel also shows the run's parent, root and children. The engine publishes per run, so
    this joins the run's environment group and re-renders when a message names the run or one
    of those relatives (children and replays are recognised by their parent_id and replayed_from_id,
    once per flush).
    """

    async def subscribe(self) -> str | None:
        self.run_id = str(self.scope["url_route"]["kwargs"]["run_id"])
        found = Run.objects.filter(pk=self.run_id).values_list("environment_id", "parent_id", "root_id")
        row = await database_sync_to_async(found.first)()
        if row is None:
            return None
        environment_id, parent_id, root_id = row
        self.relatives = {self.run_id} | {run_id for run_id in (parent_id, root_id) if run_id}
        return env_group(environment_id)

    def related(self) -> QuerySet[Run]:
        return Run.objects.filter(Q(pk__in=self.relatives) | self.descendants())

    def descendants(self) -> Q:
        """Runs that name this one: its children and its replays."""
        return Q(parent_id=self.run_id) | Q(replayed_from_id=self.run_id)

    def render(self, batch: dict[str, bool]) -> list[str]:
        named = not self.relatives.isdisjoint(batch)
        if not named and not Run.objects.filter(self.descendants(), pk__in=list(batch)).exists():
            return []
        return [self.render_panel()]

    def render_since(self, since: datetime) -> list[str]:
        return [self.render_panel()] if self.related().filter(updated_at__gte=since).exists() else []

    def changed_since(self, since: datetime) -> list[str]:
        return list(self.related().filter(updated_at__gte=since).values_list("id", flat=True)[:PAGE_SIZE])

    def render_panel(self) -> str:
        run = with_relations(Run.objects.filter(pk=self.run_id)).first()
        if run is None:
            return ""
        context = {**run_panel_context(run), **roles(self.scope.get("user")), "oob": True}
        return render_to_string("dashboard/partials/run_panel.html", context)


def render_push(kind: str, runs: list[Run]) -> str:
    """partials/runs_push.html for `created` or `updated` rows (the same runs in the same state
    within RENDER_REUSE seconds get the same frame)."""
    key = (kind, *((run.id, run.updated_at, run.status) for run in runs))
    now = time.monotonic()
    hit = _rendered.get(key)
    if hit is not None and now - hit[0] < RENDER_REUSE:
        return hit[1]
    html = render_to_string("dashboard/partials/runs_push.html", {kind: runs})
    if len(_rendered) > 1000:
        _rendered.clear()
    _rendered[key] = (now, html)
    return html
