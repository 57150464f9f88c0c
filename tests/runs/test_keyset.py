"""runs.keyset: the one paginator of the runs list, the batch page, the audit log, a worker's
history and the REST API's runs.list."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from runs.keyset import EPOCH, Keyset, from_micros, to_micros
from runs.models import AuditEntry, Run
from tests import factories

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ENTRIES = Keyset("at")
RUNS = Keyset("created_at", ids=re.compile(r"[0-9a-z_]{1,64}"))


def entries(*offsets: float) -> list[int]:
    """Audit entries at T0 plus each offset in seconds; their ids, oldest first."""
    made = [AuditEntry.objects.create(at=T0 + timedelta(seconds=s), username="u", action="a") for s in offsets]
    return [entry.pk for entry in made]


def ids(page) -> list[int]:
    return [row.pk for row in page.rows]


def test_a_cursor_round_trips_to_the_key_it_was_made_from() -> None:
    at = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert ENTRIES.decode(ENTRIES.encode((at, 42))) == (at, 42)
    assert RUNS.decode(RUNS.encode((at, "run_abc123"))) == (at, "run_abc123")
    assert from_micros(str(to_micros(at))) == at and to_micros(EPOCH) == 0


@pytest.mark.parametrize(
    "cursor",
    [
        None,
        "",
        "nonsense",
        "123",  # no id
        "-5.1",
        "1.-5",
        "1.abc",  # an integer key takes digits only
        "1." + "9" * 19,  # more than a bigint: never reaches PostgreSQL
        "9" * 30 + ".1",  # no datetime that far
        "١٢٣.1",  # digits, but not ASCII ones
        "1.1\n",
        "1.1.1",
    ],
)
def test_a_tampered_cursor_is_refused(cursor: str | None) -> None:
    assert ENTRIES.decode(cursor) is None


@pytest.mark.parametrize("cursor", ["1.RUN_X", "1.run x", "1.run_x\n", "1." + "a" * 65, "1.run_%00"])
def test_a_string_key_must_match_its_pattern_whole(cursor: str) -> None:
    assert RUNS.decode(cursor) is None


@pytest.mark.django_db
def test_pages_go_newest_first_and_back_with_first_and_last_pages_marked() -> None:
    made = entries(*range(7))[::-1]  # newest first
    rows = AuditEntry.objects.all()
    first = ENTRIES.page(rows, size=3)
    assert ids(first) == made[:3] and first.is_first and first.newer is None and first.older
    second = ENTRIES.page(rows, size=3, after=ENTRIES.decode(first.older))
    assert ids(second) == made[3:6] and not second.is_first and second.newer and second.older
    last = ENTRIES.page(rows, size=3, after=ENTRIES.decode(second.older))
    assert ids(last) == made[6:] and last.older is None and not last.has_older
    back = ENTRIES.page(rows, size=3, before=ENTRIES.decode(last.newer))
    assert ids(back) == made[3:6] and back.has_newer and back.has_older


@pytest.mark.django_db
def test_rows_of_the_same_microsecond_are_ordered_by_id_and_neither_lost_nor_repeated() -> None:
    made = entries(*[0] * 5)
    rows, seen, after = AuditEntry.objects.all(), [], None
    while True:
        page = ENTRIES.page(rows, size=2, after=after)
        seen += ids(page)
        if page.older is None:
            break
        after = ENTRIES.decode(page.older)
    assert seen == sorted(made, reverse=True)
    back = ENTRIES.page(rows, size=2, before=(T0, made[1]))
    assert ids(back) == [made[3], made[2]]


@pytest.mark.django_db
def test_a_short_page_of_newer_rows_is_the_first_page_when_refilled() -> None:
    made = entries(*range(5))[::-1]
    rows = AuditEntry.objects.all()
    short = ENTRIES.page(rows, size=3, before=(T0 + timedelta(seconds=3), made[1]))
    assert ids(short) == made[:1] and not short.has_newer and short.older  # the REST API's previous page
    refilled = ENTRIES.page(rows, size=3, before=(T0 + timedelta(seconds=3), made[1]), refill=True)
    assert ids(refilled) == made[:3] and refilled.is_first


@pytest.mark.django_db
def test_before_the_newest_row_is_an_empty_page_without_cursors() -> None:
    made = entries(0, 1)
    page = ENTRIES.page(AuditEntry.objects.all(), size=2, before=(T0 + timedelta(seconds=1), made[1]))
    assert page.rows == [] and page.newer is None and page.older is None


@pytest.mark.django_db
def test_without_looking_for_newer_rows_a_page_after_a_cursor_is_not_the_first() -> None:
    entries(0, 1, 2)
    rows = AuditEntry.objects.all()
    page = ENTRIES.page(rows, size=5, after=(T0 + timedelta(seconds=10), 1), look_newer=False)
    assert len(page.rows) == 3 and not page.is_first  # nothing is newer, but that was not asked
    assert ENTRIES.page(rows, size=5, after=(T0 + timedelta(seconds=10), 1)).is_first


@pytest.mark.django_db
def test_runs_page_by_creation_and_their_string_ids() -> None:
    runs = [factories.run() for _ in range(4)]
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(created_at=T0)
    newest_first = sorted((run.id for run in runs), reverse=True)
    first = RUNS.page(Run.objects.all(), size=3)
    assert [run.id for run in first.rows] == newest_first[:3]
    rest = RUNS.page(Run.objects.all(), size=3, after=RUNS.decode(first.older))
    assert [run.id for run in rest.rows] == newest_first[3:] and rest.newer == RUNS.encode((T0, newest_first[3]))
