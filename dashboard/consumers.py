"""Websockets that keep the runs list, the run page and the batch page live.

Each page consumer is a dashboard.fanout.CoalescingConsumer: the fan-out (one group member per
process, coalesced flushes, renders shared by the sockets of one page) lives there; here is what
each page renders. A flush renders the same partials the pages use from current database state
and sends them as htmx out-of-band swaps: one frame, or two when a runs table gets new and
changed rows at once (see partials/runs_push.html).

On connect, what changed since the page was rendered is pushed at once (new runs: the newest
page of them, so after a long outage the list may have a gap).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from dashboard.fanout import CoalescingConsumer
from dashboard.permissions import roles
from dashboard.views import (
    PAGE_SIZE,
    batch_counts_context,
    newer_than,
    parse_cursor,
    run_panel_context,
    with_relations,
)
from runs import logs
from runs.events import env_group
from runs.filters import RunFilters
from runs.holds import mark_held
from runs.models import Batch, Environment, Run

# Rows of the same runs in the same state (for the same permissions) are rendered once and
# shared for a moment, by sockets whose pages differ (render_push).
RENDER_REUSE = 1.0  # seconds a rendered frame is reused for runs that have not changed since
_rendered: dict[tuple[object, ...], tuple[float, str]] = {}
LOOK_LIMIT = PAGE_SIZE * 4  # runs a reconcile takes, most recently changed first

# The key under which a run page's pending changes note "its Logs panel may be behind"; no run
# id looks like it.
LOGS = "logs"


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

    def share_key(self) -> Hashable:
        # The same base query (environment and filters: a relative period makes its own), the same
        # permissions; the rows on screen and the cursors are each socket's own (see pick).
        return (type(self), str(self.base), tuple(sorted(self.perms.items())))

    def remember_page(self) -> None:
        """The rows the page rendered, and what the user may see."""
        self.perms = roles(self.scope.get("user"))
        self.remember_rows()

    @classmethod
    def render_group(cls, members: list[tuple[Any, dict[str, bool]]]) -> list[list[str] | Exception]:
        """One query for every socket of the key: the runs they were told of that match the filters
        (but the status) or are on one of their screens; each socket then picks its own."""
        runs = cls.fetch_group(members)
        return [consumer.sort_out(consumer.pick(batch, runs)) for consumer, batch in members]

    @staticmethod
    def fetch_group(members: list[tuple[Any, dict[str, bool]]]) -> list[Run]:
        base: Q = members[0][0].base
        ids = {run_id for _, batch in members for run_id in batch}
        known = {run_id for consumer, batch in members for run_id in batch if run_id in consumer.shown}
        runs = Run.objects.filter(Q(pk__in=ids) & (base | Q(pk__in=known)))
        fetched = list(runs.annotate(in_base=ExpressionWrapper(base, output_field=BooleanField())))
        # The pauses holding them, read once for every socket that renders them (render_push).
        mark_held(fetched, timezone.now())
        return fetched

    def pick(self, batch: dict[str, bool], runs: list[Run]) -> list[Run]:
        """Of the runs fetched for the key, those of batch this socket's render would have queried:
        on its screen, or matching its filters within its window (self.window(), in Python)."""
        return [run for run in runs if run.id in batch and (run.id in self.shown or self.in_window(run))]

    def in_window(self, run: Run) -> bool:
        if not getattr(run, "in_base", False):
            return False
        at = (run.created_at, run.id)
        if self.oldest is not None and at < self.oldest:
            return False
        return self.newest is None or self.prepend or at <= self.newest

    def read_window(self) -> None:
        self.newest = parse_cursor(self.query.get("newest", [""])[0])
        self.oldest = parse_cursor(self.query.get("oldest", [""])[0])
        self.prepend = self.query.get("prepend", [""])[0] == "1"
        self.filters = RunFilters()
        self.shown = set()

    def remember_rows(self) -> None:
        """The rows the page rendered: those between its cursors that match the filters now."""
        if self.newest is not None and self.oldest is not None:
            page = self.base & self.filters.q() & newer_than(self.oldest, inclusive=True) & ~newer_than(self.newest)
            self.shown.update(Run.objects.filter(page).values_list("id", flat=True)[: PAGE_SIZE * 2])

    def window(self) -> Q:
        """The runs whose rows could be on screen: between the cursors (or above, with prepend).
        in_window says the same of a run fetched with in_base."""
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
        return self.sort_out(self.pick(batch, self.fetch_group([(self, batch)])))

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
        return self.render_rows(created, updated, self.perms)

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
        return self.changed_ids([(self, since)])[0]

    def look_key(self) -> Hashable:
        # The same rows could be on screen: the same base query, cursors and permissions.
        return (self.share_key(), self.oldest, self.newest, self.prepend)

    @classmethod
    def changed_group(cls, members: list[tuple[Any, datetime]]) -> list[list[str] | Exception]:
        return [*cls.changed_ids(members)]

    @staticmethod
    def changed_ids(members: list[tuple[Any, datetime]]) -> list[list[str]]:
        """One query from the earliest `since`: the runs changed since a later one are a prefix of
        its rows newest change first, so each socket gets what a query of its own would give."""
        window: Q = members[0][0].window()
        earliest = min(since for _, since in members)
        changed = Run.objects.filter(window, updated_at__gte=earliest).order_by("-updated_at")
        rows = list(changed.values_list("id", "updated_at")[:LOOK_LIMIT])
        return [[run_id for run_id, at in rows if at >= since] for _, since in members]

    @staticmethod
    def render_rows(created: list[Run], updated: list[Run], perms: dict[str, bool]) -> list[str]:
        created.sort(key=lambda run: (run.created_at, run.id), reverse=True)
        return [
            render_push("created", created, perms) if created else "",
            render_push("updated", updated, perms) if updated else "",
        ]


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

    @classmethod
    def render_group(cls, members: list[tuple[Any, dict[str, bool]]]) -> list[list[str] | Exception]:
        """As for the runs list, and the batch's counts rendered once for all of its sockets."""
        runs = cls.fetch_group(members)
        counts: str | None = None
        results: list[list[str] | Exception] = []
        for consumer, batch in members:
            if not any(getattr(run, "in_base", False) for run in runs if run.id in batch):  # no run of this batch
                results.append([])
                continue
            frames = consumer.sort_out(consumer.pick(batch, runs))
            counts = consumer.render_counts() if counts is None else counts
            results.append(consumer.with_counts(frames, counts))
        return results

    def render(self, batch: dict[str, bool]) -> list[str]:
        frames = self.render_group([(self, batch)])[0]
        if isinstance(frames, Exception):
            raise frames
        return frames

    def render_since(self, since: datetime) -> list[str]:
        if not Run.objects.filter(self.base, updated_at__gte=since).exists():
            return []
        return self.with_counts(super().render_since(since))

    def look_key(self) -> Hashable:
        return (type(self), id(self))

    @classmethod
    def changed_group(cls, members: list[tuple[Any, datetime]]) -> list[list[str] | Exception]:
        return cls.changed_each(members)

    def changed_since(self, since: datetime) -> list[str]:
        # Not only the rows on screen: every run of the batch counts.
        changed = Run.objects.filter(self.base, updated_at__gte=since).order_by("-updated_at")
        return list(changed.values_list("id", flat=True)[: PAGE_SIZE * 4])

    def render_counts(self) -> str:
        batch = Batch.objects.filter(pk=self.batch_id).first()
        if batch is None:
            return ""
        context = {**batch_counts_context(batch), **self.perms, "oob": True}
        return render_to_string("dashboard/partials/batch_counts.html", context)

    def with_counts(self, frames: list[str], counts: str | None = None) -> list[str]:
        """The counts after the last frame of rows (a <section> before a <tr> would swallow it)."""
        counts = self.render_counts() if counts is None else counts
        if not counts:
            return frames
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
        self.perms = await database_sync_to_async(roles)(self.scope.get("user"))
        return env_group(environment_id)

    def share_key(self) -> Hashable:
        return (type(self), self.run_id, tuple(sorted(self.perms.items())))

    def take(self, message: dict[str, Any]) -> None:
        """Also `run.logs`: the worker wrote lines of runs. This run's lines, and any change of
        the run itself (its counts, its empty state), are pending like a change, under LOGS."""
        if message.get("type") == "run.logs":
            if self.run_id in message["run_ids"]:
                self.note(LOGS)
            return
        super().take(message)
        if message.get("run_id") == self.run_id or self.run_id in message.get("run_ids", ()):
            self.note(LOGS)

    @classmethod
    def render_group(cls, members: list[tuple[Any, dict[str, bool]]]) -> list[list[str] | Exception]:
        """The sockets of one run page (same permissions): one look for relatives, one panel, one
        signal for the Logs panel to fetch its tail (each browser knows what it shows)."""
        first: RunConsumer = members[0][0]
        ids = {run_id for _, batch in members for run_id in batch} - {LOGS}
        touched = ids & first.relatives
        if ids - touched:
            descendants = Run.objects.filter(first.descendants(), pk__in=list(ids - touched))
            touched |= set(descendants.values_list("id", flat=True))
        panel: str | None = None
        signal = render_to_string("dashboard/partials/run_logs_signal.html", {"run_id": first.run_id})
        results: list[list[str] | Exception] = []
        for _, batch in members:
            # Lines are for users who may see payloads (dashboard.log_views): no panel, no signal.
            frame = signal if LOGS in batch and first.perms.get("perms_payload") else ""
            if not touched.isdisjoint(batch):
                panel = first.render_panel() if panel is None else panel
                frame = panel + frame  # one frame: the ws extension swaps each out-of-band root
            results.append([frame])
        return results

    def related(self) -> QuerySet[Run]:
        return Run.objects.filter(Q(pk__in=self.relatives) | self.descendants())

    def descendants(self) -> Q:
        """Runs that name this one: its children and its replays."""
        return Q(parent_id=self.run_id) | Q(replayed_from_id=self.run_id)

    def render(self, batch: dict[str, bool]) -> list[str]:
        frames = self.render_group([(self, batch)])[0]
        if isinstance(frames, Exception):
            raise frames
        return frames

    def render_since(self, since: datetime) -> list[str]:
        frame = self.render_panel() if self.related().filter(updated_at__gte=since).exists() else ""
        if self.perms.get("perms_payload") and logs.written_since(self.run_id, since):
            frame += render_to_string("dashboard/partials/run_logs_signal.html", {"run_id": self.run_id})
        return [frame]

    def changed_since(self, since: datetime) -> list[str]:
        return list(self.related().filter(updated_at__gte=since).values_list("id", flat=True)[:PAGE_SIZE])

    def render_panel(self) -> str:
        run = with_relations(Run.objects.filter(pk=self.run_id)).first()
        if run is None:
            return ""
        context = {**run_panel_context(run), **self.perms, "oob": True}
        return render_to_string("dashboard/partials/run_panel.html", context)


def render_push(kind: str, runs: list[Run], perms: dict[str, bool]) -> str:
    """partials/runs_push.html for `created` or `updated` rows, shown to a user with `perms`
    (dashboard.permissions.roles); the same runs in the same state within RENDER_REUSE seconds
    get the same frame, never one rendered for other permissions. A queued run's frame also
    carries the pause holding it (runs.holds): a pause changes no run, so its updated_at would
    not tell the frames apart."""
    if unmarked := [run for run in runs if not hasattr(run, "hold")]:
        mark_held(unmarked, timezone.now())  # fetch_group marks the runs it shares between sockets
    key = (
        kind,
        tuple(sorted(perms.items())),
        *((run.id, run.updated_at, run.status, run.hold) for run in runs),  # type: ignore[attr-defined]
    )
    now = time.monotonic()
    hit = _rendered.get(key)
    if hit is not None and now - hit[0] < RENDER_REUSE:
        return hit[1]
    html = render_to_string("dashboard/partials/runs_push.html", {kind: runs, **perms})
    if len(_rendered) > 1000:
        _rendered.clear()
    _rendered[key] = (now, html)
    return html
