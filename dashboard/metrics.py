"""GET /metrics: Prometheus text exposition (format 0.0.4), written by prometheus_client.

What a scrape costs is bounded by the work in flight and by recent throughput, never by
history, so a table of millions of finished runs costs nothing extra:

- Unfinished runs by environment and status: one count per (environment, status) pair,
  each an index range of run_env_status. Finished runs are never counted in full; the
  table's size comes from PostgreSQL's own estimate (pg_class.reltuples).
- Queue depth and oldest wait: the partial index of QUEUED runs (run_queued); running
  runs per queue: the partial index of DEQUEUED/EXECUTING runs (run_active).
- Finished runs, retries, expirations and delayed-start lateness over the last
  RUNYARD_METRICS_WINDOW seconds come from the RunEvent timeline. RunEvent has no index on
  `at`, but its ids grow with time: a binary search over the primary key finds the first
  event of the window, and only the window's events are read.

Access: a logged-in staff user, or `Authorization: Bearer <RUNYARD_METRICS_TOKEN>` when
that setting is non-empty (Prometheus sends it with `authorization: {credentials: ...}`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from runs.models import Environment, Run, RunEvent, Worker
from runs.states import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATEMENT_TIMEOUT_MS = 5000  # a scrape that cannot answer quickly fails instead of piling up
UNFINISHED = sorted(status.value for status in RunStatus if status.value not in FINAL_STATUSES)
FINAL = sorted(FINAL_STATUSES)
QUANTILES = (0.5, 0.9, 0.99)

RUN = Run._meta.db_table
EVENT = RunEvent._meta.db_table
ENVIRONMENT = Environment._meta.db_table

Sample = tuple[dict[str, str], float]


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _token_ok(request) and not request.user.is_staff:
        if request.user.is_authenticated:
            return HttpResponse("Metrics are for staff users.\n", status=403, content_type="text/plain")
        response = HttpResponse(
            "Metrics need a bearer token or a staff login.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="runyard-metrics"'
        return response
    return HttpResponse(render(collect(timezone.now())), content_type=CONTENT_TYPE)


def _token_ok(request: HttpRequest) -> bool:
    token = settings.RUNYARD_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class Family:
    """One metric: name, type, help and its samples."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.samples: list[Sample] = []

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))


def collect(now: datetime) -> list[Family]:
    """Every metric as of now, read in one short read-only transaction."""
    started = time.monotonic()
    window = settings.RUNYARD_METRICS_WINDOW
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        families = [
            *_runs(cursor),
            *_queues(cursor, now),
            *_recent(cursor, now, window),
            _workers(now),
        ]
    info = Family("runyard_metrics_window_seconds", "gauge", "Length of the window of the *_recent metrics.")
    info.add(window)
    took = Family("runyard_metrics_scrape_duration_seconds", "gauge", "Time the database queries of this scrape took.")
    took.add(round(time.monotonic() - started, 6))
    return [*families, info, took]


def _runs(cursor: Any) -> list[Family]:
    runs = Family("runyard_runs", "gauge", "Unfinished runs by environment and status.")
    # One index range of run_env_status per (environment, status): cost follows the
    # unfinished runs, however many finished ones the table holds.
    cursor.execute(
        f"""
        SELECT e.slug, s.status, c.n
        FROM {ENVIRONMENT} e
        CROSS JOIN unnest(%s::varchar[]) AS s(status)
        CROSS JOIN LATERAL (
            SELECT count(*) AS n FROM {RUN} r WHERE r.environment_id = e.id AND r.status = s.status
        ) c
        ORDER BY 1, 2
        """,
        [UNFINISHED],
    )
    for slug, status, count in cursor.fetchall():
        runs.add(count, environment=slug, status=status)
    estimate = Family(
        "runyard_runs_table_rows_estimate", "gauge", "All runs kept, finished ones included (PostgreSQL's estimate)."
    )
    cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [RUN])
    row = cursor.fetchone()
    estimate.add(max(float(row[0]), 0.0) if row else 0.0)
    return [runs, estimate]


def _queues(cursor: Any, now: datetime) -> list[Family]:
    depth = Family("runyard_queue_depth", "gauge", "QUEUED runs per queue, including retries still in backoff.")
    due = Family("runyard_queue_due", "gauge", "QUEUED runs per queue that may start now (backoff over).")
    wait = Family(
        "runyard_queue_oldest_wait_seconds",
        "gauge",
        "How long the first due run of each queue has waited (a run's priority counts as time waited).",
    )
    running = Family("runyard_queue_running", "gauge", "Runs holding a slot (DEQUEUED or EXECUTING) per queue.")
    # Both sides read only their partial indexes (run_queued, run_active).
    cursor.execute(
        f"""
        SELECT e.slug, coalesce(q.queue, a.queue), coalesce(q.depth, 0), coalesce(q.due, 0), q.oldest, coalesce(a.n, 0)
        FROM (
            SELECT environment_id, queue, count(*) AS depth, count(*) FILTER (WHERE available_at <= %s) AS due,
                   min(available_at) FILTER (WHERE available_at <= %s) AS oldest
            FROM {RUN} WHERE status = 'QUEUED' GROUP BY 1, 2
        ) q
        FULL JOIN (
            SELECT environment_id, queue, count(*) AS n FROM {RUN} WHERE status = ANY(%s::varchar[]) GROUP BY 1, 2
        ) a ON a.environment_id = q.environment_id AND a.queue = q.queue
        JOIN {ENVIRONMENT} e ON e.id = coalesce(q.environment_id, a.environment_id)
        ORDER BY 1, 2
        """,
        [now, now, sorted(ACTIVE_STATUSES)],
    )
    for slug, queue, queued, ready, oldest, active in cursor.fetchall():
        labels = {"environment": slug, "queue": queue}
        depth.add(queued, **labels)
        due.add(ready, **labels)
        wait.add(round((now - oldest).total_seconds(), 3) if oldest else 0.0, **labels)
        running.add(active, **labels)
    return [depth, due, wait, running]


def _recent(cursor: Any, now: datetime, window: int) -> list[Family]:
    """Transitions of the last `window` seconds, from the timeline."""
    finished = Family("runyard_runs_finished_recent", "gauge", "Runs that reached each final status in the window.")
    retries = Family("runyard_run_retries_recent", "gauge", "Failed attempts sent back to their queue in the window.")
    expired = Family("runyard_run_expirations_recent", "gauge", "Runs whose TTL passed before they started.")
    triggered = Family("runyard_runs_triggered_recent", "gauge", "Runs created in the window.")
    late = Family(
        "runyard_delayed_start_lateness_seconds",
        "gauge",
        "Quantiles of how long after their delay_until delayed runs first started, over the window.",
    )
    late_count = Family("runyard_delayed_starts_recent", "gauge", "Delayed runs that first started in the window.")
    cutoff = now - timedelta(seconds=window)
    first = _first_event_since(cursor, cutoff)
    for slug in Environment.objects.order_by("slug").values_list("slug", flat=True):
        retries.add(0, environment=slug)
        expired.add(0, environment=slug)
        triggered.add(0, environment=slug)
        late_count.add(0, environment=slug)
    families = [finished, retries, expired, triggered, late, late_count]
    if first is None:
        return families
    cursor.execute(
        f"""
        SELECT e.slug, ev.from_status, ev.to_status, count(*)
        FROM {EVENT} ev JOIN {RUN} r ON r.id = ev.run_id JOIN {ENVIRONMENT} e ON e.id = r.environment_id
        WHERE ev.id >= %s AND ev.at >= %s AND ev.from_status <> ev.to_status
          AND (ev.to_status = ANY(%s::varchar[]) OR ev.from_status = ''
               OR (ev.from_status, ev.to_status) = ('EXECUTING', 'QUEUED'))
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        """,
        [first, cutoff, FINAL],
    )
    for slug, from_status, to_status, count in cursor.fetchall():
        if from_status == "":
            _bump(triggered, count, environment=slug)
        elif to_status == RunStatus.QUEUED:
            _bump(retries, count, environment=slug)
        else:
            _bump(finished, count, environment=slug, status=to_status)
            if to_status == RunStatus.EXPIRED:
                _bump(expired, count, environment=slug)
    _lateness(cursor, first, cutoff, late, late_count)
    return families


def _lateness(cursor: Any, first: int, cutoff: datetime, late: Family, late_count: Family) -> None:
    # A run's first start is the event whose time is its started_at (later attempts keep it).
    cursor.execute(
        f"""
        SELECT e.slug, count(*), percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY x.late), max(x.late)
        FROM (
            SELECT r.environment_id, GREATEST(EXTRACT(EPOCH FROM r.started_at - r.delay_until), 0) AS late
            FROM {EVENT} ev JOIN {RUN} r ON r.id = ev.run_id
            WHERE ev.id >= %s AND ev.at >= %s AND ev.to_status = 'EXECUTING' AND ev.from_status = 'DEQUEUED'
              AND r.delay_until IS NOT NULL AND r.started_at = ev.at
        ) x JOIN {ENVIRONMENT} e ON e.id = x.environment_id
        GROUP BY 1 ORDER BY 1
        """,
        [list(QUANTILES), first, cutoff],
    )
    for slug, count, values, highest in cursor.fetchall():
        _bump(late_count, count, environment=slug)
        for quantile, value in zip((*QUANTILES, 1.0), (*values, highest), strict=True):
            late.add(round(float(value), 3), environment=slug, quantile=f"{quantile:g}")


def _first_event_since(cursor: Any, cutoff: datetime) -> int | None:
    """The smallest RunEvent id at or after cutoff, by binary search over the primary key.

    Ids come from a sequence and events are written at the time they carry, so `at` grows
    with the id (up to the length of a transaction): about 30 index probes, whatever the
    table's size.
    """
    cursor.execute(f"SELECT min(id), max(id) FROM {EVENT}")
    low, high = cursor.fetchone()
    if high is None or _event_at(cursor, high)[1] < cutoff:
        return None
    while low < high:
        middle = (low + high) // 2
        found, at = _event_at(cursor, middle)
        if at >= cutoff:
            high = middle
        else:
            low = found + 1  # every id from middle to found is older than the cutoff
    return int(low)


def _event_at(cursor: Any, event_id: int) -> tuple[int, datetime]:
    """The first event with id >= event_id (ids have gaps): (its id, its time)."""
    cursor.execute(f"SELECT id, at FROM {EVENT} WHERE id >= %s ORDER BY id LIMIT 1", [event_id])
    found, at = cursor.fetchone()
    return int(found), at


def _workers(now: datetime) -> Family:
    online = Family("runyard_workers_online", "gauge", "Workers seen within RUNYARD_WORKER_TIMEOUT.")
    cutoff = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    online.add(Worker.objects.filter(last_seen_at__gte=cutoff).count())
    return online


def _bump(family: Family, value: float, **labels: str) -> None:
    for index, (existing, current) in enumerate(family.samples):
        if existing == labels:
            family.samples[index] = (existing, current + value)
            return
    family.add(value, **labels)


# --- the text format --------------------------------------------------------------------


class _Scrape(Collector):
    """This scrape's families, for prometheus_client to write out (escaping and number format)."""

    def __init__(self, families: Iterable[Family]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            metric = Metric(family.name, family.help, family.kind)
            for labels, value in family.samples:
                metric.add_sample(family.name, labels, value)
            yield metric


def render(families: Iterable[Family]) -> str:
    # A registry per scrape: the values are read fresh from the database each time, so
    # nothing is kept between scrapes (and no process-global metric state to reset).
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(families))
    return generate_latest(registry).decode()
