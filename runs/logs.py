"""Reading run logs: a run's lines (filtered, paged), their text and JSON forms, and the runs
whose logs hold a text or ERROR lines. Written only by the worker's capture (runs.logcapture)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from runs import logsearch
from runs.models import RunLog, RunLogSummary
from runs.options import OptionError

PAGE_SIZE = 500  # lines per page of the API and of the run page's panel
MAX_API_PAGE_SIZE = 1000
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
    found = _filtered(run_id, which)
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


@dataclass(frozen=True)
class PageQuery:
    """A page of a run's lines as the API and the SDK ask for it."""

    which: LineFilter = LineFilter()
    after: tuple[int, int] | None = None
    limit: int = PAGE_SIZE


@dataclass(frozen=True)
class Page:
    lines: list[RunLog]
    next: str | None  # the cursor of the following page; None after the last line so far


def page(run_id: str, query: PageQuery) -> Page:
    """One page of the run's lines; `next` is set only when more lines follow."""
    # One line more than asked says whether a next page exists without a COUNT.
    found = lines(run_id, query.which, after=query.after, limit=query.limit + 1)
    shown = found[: query.limit]
    more = len(found) > query.limit
    return Page(lines=shown, next=encode_cursor(shown[-1].attempt, shown[-1].seq) if more else None)


def parse_query(params: Mapping[str, str]) -> PageQuery:
    """attempt, level, search, limit and cursor as the API takes them. Raises OptionError
    naming the parameter and the rule."""
    attempt = _positive(params, "attempt")
    level = params.get("level")
    min_level = None
    if level is not None:
        min_level = logsearch.parse_level(level)
        if min_level is None:
            names = ", ".join(logsearch.LEVELS)
            raise OptionError("level", f"level must be one of {names} (any case), not {level[:40]!r}")
    search = params.get("search") or ""
    if len(search) > logsearch.MAX_SEARCH_LENGTH:
        most = logsearch.MAX_SEARCH_LENGTH
        raise OptionError("search", f"search must be at most {most} characters, not {len(search)}")
    limit = _positive(params, "limit")
    if limit is not None and limit > MAX_API_PAGE_SIZE:
        raise OptionError("limit", f"limit must be an integer from 1 to {MAX_API_PAGE_SIZE}, not {limit}")
    cursor = params.get("cursor")
    return PageQuery(
        which=LineFilter(attempt=attempt, min_level=min_level, search=search),
        after=decode_cursor(cursor) if cursor else None,
        limit=limit or PAGE_SIZE,
    )


def _positive(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    # isdigit alone accepts digits of other scripts that int() reads; ASCII only.
    if not (text.isascii() and text.isdigit()) or int(text) < 1 or len(text) > 9:
        bound = f" from 1 to {MAX_API_PAGE_SIZE}" if name == "limit" else " of at least 1"
        raise OptionError(name, f"{name} must be an integer{bound}, not {text[:40]!r}")
    return int(text)


def encode_cursor(attempt: int, seq: int) -> str:
    """An opaque cursor for the line after (attempt, seq)."""
    return base64.urlsafe_b64encode(f"{attempt}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The (attempt, seq) of a cursor from `page`. Raises OptionError for any other text."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        attempt, seq = (int(part) for part in text.split(":"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise OptionError("cursor", "cursor must be a pagination.next value of an earlier page") from exc
    if not (0 <= attempt < 2**31 and 0 <= seq < 2**31):  # integer columns
        raise OptionError("cursor", "cursor must be a pagination.next value of an earlier page")
    return attempt, seq


def attempts_json(run_id: str) -> list[dict[str, int]]:
    """Per attempt with lines: its number and how many lines, ERROR lines and dropped lines."""
    return [
        {"attempt": s.attempt, "lines": s.lines, "errors": s.errors, "dropped": s.dropped} for s in summaries(run_id)
    ]


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
