"""Keyset pagination, newest first, on a time column and the primary key: every paged list's one paginator.

A page is found by comparing the key, never by OFFSET, and never counted: whether there are
newer or older rows is one EXISTS each. Rows created in the same microsecond are told apart by
their id, so paging through them loses none and repeats none. A cursor is the key of a row as
`<microseconds since the epoch>.<id>`; `decode` gives None for any text that is not one, and the
caller answers: the dashboard shows the newest page, the REST API (whose cursors are run ids,
runs.listing) a 400 naming its parameter. Pure: no engine, no models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from django.db.models import Model, Q, QuerySet

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INT_ID = re.compile(r"[0-9]{1,18}")  # a bigint's digits: more would overflow in PostgreSQL
M = TypeVar("M", bound=Model)
Cursor = tuple[datetime, Any]  # (the time column's value, the primary key)


def to_micros(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


def from_micros(value: str) -> datetime | None:
    """The time `value` microseconds after the epoch; None if that is no time."""
    try:
        return EPOCH + timedelta(microseconds=int(value)) if value.isascii() and value.isdigit() else None
    except OverflowError:
        return None


@dataclass
class Page(Generic[M]):
    rows: list[M]  # newest first
    has_newer: bool  # rows newer than the first exist (it is not the first page)
    has_older: bool
    newer: str | None  # cursor for `before` (the page of newer rows); None when there is none
    older: str | None  # cursor for `after` (the page of older rows); None on the last page

    @property
    def is_first(self) -> bool:
        return not self.has_newer


@dataclass(frozen=True)
class Keyset:
    """The key of a list: `at`, the time column, then the primary key: a string one whose text
    `ids` matches, or with `ids` None an integer one."""

    at: str
    ids: re.Pattern[str] | None = None

    # Each comparison carries a plain bound on the time column as well: PostgreSQL turns that into
    # an index condition (the OR alone would be a filter, read from the newest row).

    def newer(self, cursor: Cursor, *, inclusive: bool = False) -> Q:
        """Rows whose key sorts after the cursor (or is the cursor, if inclusive)."""
        at, pk = cursor
        same = Q(**{self.at: at, "pk__gte" if inclusive else "pk__gt": pk})
        return Q(**{f"{self.at}__gte": at}) & (Q(**{f"{self.at}__gt": at}) | same)

    def older(self, cursor: Cursor, *, inclusive: bool = False) -> Q:
        """Rows whose key sorts before the cursor (or is the cursor, if inclusive)."""
        at, pk = cursor
        same = Q(**{self.at: at, "pk__lte" if inclusive else "pk__lt": pk})
        return Q(**{f"{self.at}__lte": at}) & (Q(**{f"{self.at}__lt": at}) | same)

    def key(self, row: Model) -> Cursor:
        return getattr(row, self.at), row.pk

    def encode(self, cursor: Cursor) -> str:
        return f"{to_micros(cursor[0])}.{cursor[1]}"

    def decode(self, value: str | None) -> Cursor | None:
        """The key a cursor from `encode` names; None for anything else."""
        micros, _, pk = (value or "").partition(".")
        at = from_micros(micros)
        if at is None or not (self.ids or INT_ID).fullmatch(pk):
            return None
        return at, pk if self.ids else int(pk)

    def page(
        self,
        rows: QuerySet[M],
        *,
        size: int,
        after: Cursor | None = None,
        before: Cursor | None = None,
        refill: bool = False,
        look_newer: bool = True,
    ) -> Page[M]:
        """The `size` rows older than `after`, newer than `before` (which wins), or the newest.

        refill: fewer than a page of rows newer than `before` make the newest page instead (the
        dashboard's first page, where live updates prepend). look_newer=False spares the EXISTS
        for newer rows: any page after a cursor is then taken to have them.
        """
        if before is not None:
            found = list(rows.filter(self.newer(before)).order_by(self.at, "pk")[: size + 1])
            if not refill or len(found) >= size:
                shown = found[:size][::-1]
                has_older = bool(shown) and rows.filter(self.older(before, inclusive=True)).exists()
                return self._page(shown, has_newer=len(found) > size, has_older=has_older)
        elif after is not None:
            found = list(rows.filter(self.older(after)).order_by(f"-{self.at}", "-pk")[: size + 1])
            has_newer = not look_newer or rows.filter(self.newer(after, inclusive=True)).exists()
            return self._page(found[:size], has_newer=has_newer, has_older=len(found) > size)
        found = list(rows.order_by(f"-{self.at}", "-pk")[: size + 1])
        return self._page(found[:size], has_newer=False, has_older=len(found) > size)

    def _page(self, rows: list[M], *, has_newer: bool, has_older: bool) -> Page[M]:
        newer = self.encode(self.key(rows[0])) if has_newer and rows else None
        older = self.encode(self.key(rows[-1])) if has_older and rows else None
        return Page(rows=rows, has_newer=has_newer, has_older=has_older, newer=newer, older=older)
