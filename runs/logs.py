"""Reading run logs: a run's lines (filtered, paged), their text and JSON forms, and the runs
whose logs hold a text or ERROR lines. Written only by the worker's capture (runs.logcapture)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from runs import logsearch
from runs.models import RunLog, RunLogSummary

PAGE_SIZE = 500  # lines per page of the API and of the run page's panel
MAX_PAGE_SIZE = 10_000
# Up to this many attempts with a word, "runs whose logs contain" is a list of their run ids.
FEW = 1000


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
    `text` and, with `errors`, a line at ERROR or above. A text with no words matches every run.

    A text on few runs is looked up now: the Q holds their ids, as of when it was made."""
    condition = Q()
    query = logsearch.tsquery(text) if text else None
    if query is not None:
        words = RawSQL("words @@ to_tsquery('simple', %s)", [query], output_field=BooleanField())
        # PostgreSQL guesses a prefix search's matches at about 2% whatever the word, so it walks
        # the runs newest first probing each one's summary: a whole scan of the environment for a
        # word few runs have (116 ms at 45,000 runs, not 7). Asking the GIN index first is one
        # cheap lookup; a word on many runs keeps the walk, which then finds a page soon.
        few = list(RunLogSummary.objects.alias(hit=words).filter(hit=True).values_list("run_id", flat=True)[: FEW + 1])
        if len(few) <= FEW:
            condition &= Q(pk__in=sorted(set(few)))
        else:
            summaries = RunLogSummary.objects.filter(run_id=OuterRef("pk"))
            condition &= Q(Exists(summaries.alias(hit=words).filter(hit=True)))
    if errors:
        condition &= Q(Exists(RunLogSummary.objects.filter(run_id=OuterRef("pk"), errors__gt=0)))
    return condition


def with_logs(runs: QuerySet[Any], text: str = "", *, errors: bool = False) -> QuerySet[Any]:
    return runs.filter(runs_matching(text, errors=errors))
