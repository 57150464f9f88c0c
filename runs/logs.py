"""Reading run logs: a run's lines (filtered, paged), their text and JSON forms, and the runs
whose logs hold a text or ERROR lines. Written only by the worker's capture (runs.logcapture)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from runs import logsearch
from runs.models import RunLog, RunLogSummary

PAGE_SIZE = 500  # lines per page of the API and of the run page's panel
MAX_PAGE_SIZE = 10_000


@dataclass(frozen=True)
class LineFilter:
    """Which lines of a run: one attempt (or all), from a level up, containing a text."""

    attempt: int | None = None
    min_level: int | None = None
    search: str = ""


def lines(
    run_id: str, which: LineFilter = LineFilter(), *, after: tuple[int, int] | None = None, limit: int = PAGE_SIZE
) -> list[RunLog]:
    """The run's lines in order (attempt, then seq), after the (attempt, seq) cursor `after`."""
    found = RunLog.objects.filter(run_id=run_id)
    if which.attempt is not None:
        found = found.filter(attempt=which.attempt)
    if which.min_level is not None:
        found = found.filter(level__gte=which.min_level)
    if which.search:
        found = found.filter(message__icontains=which.search)
    if after is not None:
        attempt, seq = after
        found = found.filter(Q(attempt__gt=attempt) | Q(attempt=attempt, seq__gt=seq))
    return list(found.order_by("attempt", "seq")[:limit])


def _filtered(run_id: str, which: LineFilter) -> QuerySet[RunLog]:
    found = RunLog.objects.filter(run_id=run_id)
    if which.attempt is not None:
        found = found.filter(attempt=which.attempt)
    if which.min_level is not None:
        found = found.filter(level__gte=which.min_level)
    if which.search:
        found = found.filter(message__icontains=which.search)
    return found


def newest_lines(
    run_id: str, which: LineFilter = LineFilter(), *, before: tuple[int, int] | None = None, limit: int = PAGE_SIZE
) -> list[RunLog]:
    """The run's last `limit` lines before the (attempt, seq) cursor `before` (or the last of
    all), in order: the page a run page shows first, and each "earlier" page above it."""
    found = _filtered(run_id, which)
    if before is not None:
        attempt, seq = before
        found = found.filter(Q(attempt__lt=attempt) | Q(attempt=attempt, seq__lt=seq))
    return list(found.order_by("-attempt", "-seq")[:limit])[::-1]


def pages(run_id: str, which: LineFilter = LineFilter(), *, size: int = PAGE_SIZE) -> Iterator[list[RunLog]]:
    """All of the run's lines that `which` selects, in order, a page at a time (downloads)."""
    after: tuple[int, int] | None = None
    while page := lines(run_id, which, after=after, limit=size):
        yield page
        after = (page[-1].attempt, page[-1].seq)


def written_since(run_id: str, since: datetime) -> bool:
    """Whether the run has lines stamped at or after `since` (a page rendered then lacks them)."""
    return RunLog.objects.filter(run_id=run_id, at__gte=since).exists()


def summaries(run_id: str) -> list[RunLogSummary]:
    """Per attempt with lines: how many, how many at ERROR or above, how many dropped."""
    return list(RunLogSummary.objects.filter(run_id=run_id).order_by("attempt"))


def as_json(line: RunLog) -> dict[str, Any]:
    """One line as the API and the JSON lines download give it."""
    return {
        "attempt": line.attempt,
        "seq": line.seq,
        "timestamp": line.at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": logsearch.level_name(line.level),
        "logger": line.logger,
        "message": line.message,
        "extra": line.extra or {},
    }


def as_text(line: RunLog) -> str:
    """One line of a .log download: timestamp, level, logger, message."""
    stamp = line.at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{stamp} {logsearch.level_name(line.level):<8} [{line.logger}] {line.message}"


def runs_matching(text: str = "", *, errors: bool = False) -> Q:
    """Runs (as a filter of a Run queryset) whose logs have words starting with each word of
    `text` and, with `errors`, a line at ERROR or above. A text with no words matches every run."""
    condition = Q()
    query = logsearch.tsquery(text) if text else None
    if query is not None:
        summaries = RunLogSummary.objects.filter(run_id=OuterRef("pk"))
        words = RawSQL("words @@ to_tsquery('simple', %s)", [query], output_field=BooleanField())
        condition &= Q(Exists(summaries.alias(hit=words).filter(hit=True)))
    if errors:
        condition &= Q(Exists(RunLogSummary.objects.filter(run_id=OuterRef("pk"), errors__gt=0)))
    return condition


def with_logs(runs: QuerySet[Any], text: str = "", *, errors: bool = False) -> QuerySet[Any]:
    return runs.filter(runs_matching(text, errors=errors))
