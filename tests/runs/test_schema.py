"""The runs table carries only the indexes some query uses (issue #8): a run's row is written
anew at each transition, and every index gains an entry each time."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def indexes(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return dict(cursor.fetchall())


def test_a_run_transition_updates_six_whole_indexes_and_the_partial_ones_that_fit() -> None:
    run_indexes = indexes("runs_run")
    whole = {name for name, definition in run_indexes.items() if " WHERE " not in definition}
    # The primary key, the runs list's orders and filters, and the tags.
    assert whole == {"runs_run_pkey", "run_env_created", "run_env_status", "run_env_task", "run_env_queue", "run_tags"}
    assert not [name for name, definition in run_indexes.items() if "pattern_ops" in definition]  # no LIKE on ids
    for link in ("parent", "root", "batch", "replayed_from"):
        assert run_indexes[f"run_{link}"].endswith(f"WHERE ({link}_id IS NOT NULL)"), run_indexes[f"run_{link}"]


def test_timeline_events_and_attempts_are_indexed_once_by_run() -> None:
    assert set(indexes("runs_runevent")) == {"runs_runevent_pkey", "runevent_run_order"}
    # And attempts once by worker, for the worker page's history (one entry per attempt: its
    # columns never change after the insert).
    assert set(indexes("runs_runattempt")) == {"runs_runattempt_pkey", "attempt_unique_number", "attempt_worker_recent"}
