"""The fan-out under the live pages' websockets: one group member per process, shared renders.

The engine publishes `run.changed` with run ids only (runs.events). A consumer (a
CoalescingConsumer: the page consumers of dashboard.consumers) joins its environment's group,
collects the ids and, at most every FLUSH_INTERVAL, renders from current database state and sends
the frames (nothing, if no change concerns its page). A storm of changes thus reaches a browser
as a few flushes a second, and duplicates or reordering are harmless.

A process joins each environment group once, whatever the number of its sockets there
(GroupFeed): a change is read from Redis once and handed to every local socket, not dispatched
through channels to each socket's own channel. Sockets of the same page in one process (the
same filters and the same permissions) share their work: their flushes are rendered together,
one database query and one hop to channels' database thread per flush window, however many
browsers are open (SharedRenders).

On connect, the query string says when the page was rendered (`since`, microseconds since
the epoch); what changed in between is pushed at once, so a late or re-opened socket catches up.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.utils import timezone

from dashboard.permissions import VIEW_RUN, can
from runs.keyset import from_micros

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.25  # seconds between two messages to one browser, at least
# A full channel drops messages (channels-redis capacity), so every few seconds what changed on
# screen lately is rendered again: a dropped message leaves a row stale for seconds, not forever.
RECONCILE_INTERVAL = 5.0
# channels-redis forgets group members after a day; long-open tabs re-join well before that.
RESUBSCRIBE_INTERVAL = 3600.0
# Clocks of the web, worker and engine machines may differ a little: catch up generously.
CLOCK_SKEW = timedelta(seconds=5)


class SharedRenders:
    """The flushes of this process's sockets that share a key, rendered together.

    Every socket of a page used to query and render on its own, one after the other on channels'
    single database thread: with 100 browsers on the runs list a change took seconds to reach the
    last of them (docs/performance.md). Now a socket's flush waits here with the others of its key
    (the same query, the same permissions): one hop to the database thread renders them all with
    the consumer class's render_group, while the next flushes of that key gather for the next hop.
    The reconciles (look) are shared alike, with changed_group.
    """

    def __init__(self) -> None:
        self.waiting: dict[tuple[str, Hashable], list[tuple[CoalescingConsumer, Any, asyncio.Future[list[str]]]]] = {}
        self.drains: dict[tuple[str, Hashable], asyncio.Task[None]] = {}

    async def render(self, consumer: CoalescingConsumer, batch: dict[str, bool]) -> list[str]:
        return await self.share(("render_group", consumer.share_key()), consumer, batch)

    async def look(self, consumer: CoalescingConsumer, since: datetime) -> list[str]:
        """The ids of the runs changed on the consumer's screen since `since` (changed_since)."""
        return await self.share(("changed_group", consumer.look_key()), consumer, since)

    async def share(self, key: tuple[str, Hashable], consumer: CoalescingConsumer, arg: Any) -> list[str]:
        """Key: the name of the consumer class's group method, and what the sockets share."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(key, []).append((consumer, arg, future))
        if key not in self.drains:
            self.drains[key] = asyncio.create_task(self.drain(key))
        return await future

    async def drain(self, key: tuple[str, Hashable]) -> None:
        try:
            await asyncio.sleep(SHARE_WINDOW)  # the other sockets woken by the same messages
            while members := self.waiting.pop(key, []):
                members = [member for member in members if not member[2].done()]  # not disconnected
                if not members:
                    continue
                group = getattr(type(members[0][0]), key[0])
                try:
                    results = await database_sync_to_async(group)([(c, arg) for c, arg, _ in members])
                except asyncio.CancelledError:
                    for _, _, future in members:
                        future.cancel()
                    raise
                except Exception as error:  # noqa: BLE001 - each socket's push logs it
                    results = [error] * len(members)
                for (_, _, future), result in zip(members, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            del self.drains[key]
            for _, _, future in self.waiting.pop(key, []):  # cancelled while gathering
                if not future.done():
                    future.cancel()


SHARE_WINDOW = 0.01  # seconds the first flush of a key waits for the others woken with it
shared_renders = SharedRenders()


class GroupFeed:
    """This process's one member of a channel group, for all of its sockets in that group.

    Each socket used to join the group itself: channels-redis delivered every change once per
    process, then channels dispatched it to each socket's channel, and a storm of 1,000 changes a
    second with 100 browsers open was 100,000 dispatches a second for one daphne. Now a feed joins
    with a channel of its own, reads each message once and notes it on every socket (a dict update
    each); it leaves the group when its last socket goes.
    """

    def __init__(self, layer: Any, group: str) -> None:
        self.layer = layer
        self.group = group
        self.loop = asyncio.get_running_loop()
        self.members: set[CoalescingConsumer] = set()
        self.channel = ""
        self.reader: asyncio.Task[None] | None = None
        self.closed = False
        self.joined = -math.inf
        self.lock = asyncio.Lock()

    @classmethod
    async def join(cls, consumer: CoalescingConsumer, group: str) -> GroupFeed:
        feed = _feeds.get(group)
        if feed is None or feed.closed or feed.loop is not asyncio.get_running_loop():
            feed = _feeds[group] = cls(consumer.channel_layer, group)
        feed.members.add(consumer)
        async with feed.lock:
            if feed.reader is None:
                # The layer's default prefix: channels-redis reads one process-wide channel for all.
                feed.channel = await feed.layer.new_channel()
                await feed.layer.group_add(group, feed.channel)
                feed.joined = feed.loop.time()
                feed.reader = asyncio.create_task(feed.read())
        return feed

    async def leave(self, consumer: CoalescingConsumer) -> None:
        self.members.discard(consumer)
        async with self.lock:
            if self.members or self.closed:
                return
            self.closed = True
            if _feeds.get(self.group) is self:
                del _feeds[self.group]
            if self.reader is not None:
                self.reader.cancel()
                await self.layer.group_discard(self.group, self.channel)

    async def renew(self) -> None:
        """Join again before channels-redis forgets the member (its group_expiry)."""
        if not self.closed and self.loop.time() - self.joined > RESUBSCRIBE_INTERVAL:
            self.joined = self.loop.time()
            await self.layer.group_add(self.group, self.channel)

    async def read(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A broken connection to Redis: read again shortly; reconciles make good the gap.
                log.exception("could not read changes of %s", self.group)
                await asyncio.sleep(1.0)
                continue
            for consumer in list(self.members):
                try:
                    consumer.take(message)
                except Exception:
                    log.exception("could not note a change on %s", self.group)


_feeds: dict[str, GroupFeed] = {}
A = TypeVar("A")


def each_apart(members: list[tuple[Any, A]], work: Callable[[Any, A], list[str]]) -> list[list[str] | Exception]:
    """work(socket, arg) for each member; a failure is that socket's only (its caller logs it)."""
    results: list[list[str] | Exception] = []
    for consumer, arg in members:
        try:
            results.append(work(consumer, arg))
        except Exception as error:  # noqa: BLE001 - returned to that socket, which logs it
            results.append(error)
    return results


FORBIDDEN = 4403  # close code for a user whose groups do not grant runs.view_run


class CoalescingConsumer(AsyncWebsocketConsumer):
    """Joins one channel group and pushes re-rendered partials for the runs that changed."""

    group: str | None = None
    feed: GroupFeed | None = None
    tasks: list[asyncio.Task[None]]
    perms: dict[str, bool]  # the user's dashboard.permissions.roles: what a render may show

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.query = parse_qs(self.scope.get("query_string", b"").decode())
        self.pending: dict[str, bool] = {}  # run id -> created
        self.last_flush = -math.inf
        self.tasks = []
        self.flusher: asyncio.Task[None] | None = None
        self.checked = timezone.now()
        self.perms = {}
        if user is not None and user.is_authenticated and not await database_sync_to_async(can)(user, VIEW_RUN):
            await self.close(code=FORBIDDEN)  # before accept: the handshake is refused
            return
        group = await self.subscribe() if user is not None and user.is_authenticated else None
        if group is None:
            await self.close()
            return
        self.group = group
        self.feed = await GroupFeed.join(self, group)
        await self.accept()
        self.tasks.append(asyncio.create_task(self.maintain()))
        self.flusher = asyncio.create_task(self.catch_up())

    async def disconnect(self, code: int) -> None:
        for task in [*getattr(self, "tasks", []), getattr(self, "flusher", None)]:
            if task is not None:
                task.cancel()
        if self.feed is not None:
            await self.feed.leave(self)

    def take(self, message: dict[str, Any]) -> None:
        """A message of the group (from the feed): `run.changed`, or `runs.changed` for many runs
        at once (a batch); anything else is ignored."""
        created = bool(message.get("created"))
        if message.get("type") == "run.changed":
            self.note(str(message["run_id"]), created)
        elif message.get("type") == "runs.changed":
            for run_id in message["run_ids"]:
                self.note(str(run_id), created)

    def note(self, run_id: str, created: bool = False) -> None:
        self.pending[run_id] = self.pending.get(run_id, False) or created
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
            await self.push(shared_renders.render(self, batch))
            # From the send, not from the start of the render: a slow render followed by a quick
            # one would otherwise put two messages closer together than FLUSH_INTERVAL. Counted even
            # when nothing was on screen: a storm elsewhere costs a render per interval.
            self.last_flush = loop.time()

    async def catch_up(self) -> None:
        since = from_micros(self.query.get("since", [""])[0])
        if since is not None and await self.push(database_sync_to_async(self.render_since)(since - CLOCK_SKEW)):
            self.last_flush = asyncio.get_running_loop().time()
        await self.flush()  # whatever arrived meanwhile

    async def push(self, rendering: Awaitable[list[str]]) -> bool:
        """Send the frames once rendered; False if there was nothing to send."""
        try:
            frames = await rendering
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
        await asyncio.sleep(RECONCILE_INTERVAL)  # the catch-up has just looked
        while True:
            # On the same beat for every socket of the process, so that their looks are shared.
            await asyncio.sleep(RECONCILE_INTERVAL - loop.time() % RECONCILE_INTERVAL)
            if self.feed is not None:
                await self.feed.renew()
            since, self.checked = self.checked, timezone.now()
            try:
                changed = await shared_renders.look(self, since - CLOCK_SKEW)
            except Exception:
                log.exception("could not look for changed runs on %s", self.group)
                continue
            for run_id in changed:
                self.note(run_id)

    async def subscribe(self) -> str | None:
        """The group to join, or None to refuse the connection."""
        raise NotImplementedError

    def share_key(self) -> Hashable:
        """Sockets with equal keys render their flushes together (render_group): the same class,
        the same query of the database and the same permissions, so nothing one user may not see
        is ever rendered for them. Unique by default: nothing shared."""
        return (type(self), id(self))

    @classmethod
    def render_group(cls, members: list[tuple[Any, dict[str, bool]]]) -> list[list[str] | Exception]:
        """The frames for each (socket, batch) of one share_key, in one go (on the database thread).

        By default each socket renders its own; a failure is that socket's only."""
        return each_apart(members, lambda consumer, batch: consumer.render(batch))

    def look_key(self) -> Hashable:
        """Sockets with equal keys look for changed runs together (changed_group). Unique by default."""
        return (type(self), id(self))

    @classmethod
    def changed_group(cls, members: list[tuple[Any, datetime]]) -> list[list[str] | Exception]:
        """changed_since for each (socket, since) of one look_key; by default each on its own."""
        return cls.changed_each(members)

    @staticmethod
    def changed_each(members: list[tuple[Any, datetime]]) -> list[list[str] | Exception]:
        return each_apart(members, lambda consumer, since: consumer.changed_since(since))

    def render(self, batch: dict[str, bool]) -> list[str]:
        """The frames to send for the runs in batch (run id -> created)."""
        raise NotImplementedError

    def render_since(self, since: datetime) -> list[str]:
        """The frames that bring a page rendered at `since` up to date."""
        raise NotImplementedError

    def changed_since(self, since: datetime) -> list[str]:
        raise NotImplementedError
