"""The runs list's filters (runs.filters.RunFilters): parsing, errors, and the runs each one selects."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.http import QueryDict
from django.utils import timezone

from runs import engine, logs, logsearch, registry, worker
from runs.filters import (
    PERIODS,
    RunFilters,
    parse_when,
    period_choices,
    seen_tasks,
    status_choices,
    task_choices,
)
from runs.models import Environment, Run
from runs.states import COLOURS, LABELS, RunStatus
from tests import factories

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def parse(query: str, now: datetime = NOW) -> RunFilters:
    return RunFilters.from_query(QueryDict(query), now)


def matching(filters: RunFilters, env: Environment) -> set[str]:
    return set(Run.objects.filter(filters.q(), environment=env).values_list("id", flat=True))


# --- parsing and errors ------------------------------------------------------------------------


def test_an_empty_query_filters_nothing() -> None:
    filters = parse("")
    assert not filters.active and filters.errors == {} and filters.params() == []
    assert filters.q() == parse("").q()


def test_multi_valued_filters_keep_every_value_once_in_order() -> None:
    filters = parse("status=FAILED&status=queued&status=FAILED&task=b&task=a&tag=x&tag=&tag=y")
    assert filters.status == ("FAILED", "QUEUED")
    assert filters.task == ("b", "a") and filters.tag == ("x", "y")
    assert filters.errors == {}


def test_unknown_status_is_an_error_naming_it_and_is_dropped() -> None:
    filters = parse("status=QUEUED&status=RUNNING")
    assert filters.status == ("QUEUED",)
    assert filters.errors["status"] == "Unknown status RUNNING: pick from the list"


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("from=yesterday", "from", "'yesterday' is not a date or date-time like 2026-11-28 or 2026-11-28 14:30"),
        ("to=2026-13-01", "to", "'2026-13-01' is not a date or date-time"),
        ("from=2026-11-28&to=2026-11-27", "to", "Must be later than From"),
        ("period=forever", "period", "'forever' is not a duration like 1h or 7d"),
        ("period=0s", "period", "'0s' is not a period we can count back from now"),
        ("period=99999999999d", "period", "'99999999999d' is not a period we can count back from now"),
        ("machine=huge", "machine", "Unknown machine 'huge': one of micro, small-1x"),
        ("id=batch_abc", "id", "Run ids start with run_: 'batch_abc' is not one"),
        ("batch=run_abc", "batch", "Batch ids start with batch_: 'run_abc' is not one"),
        ("queue=a%00b", "queue", "Must not contain NUL characters"),
        ("tag=a%00", "tag", "Must not contain NUL characters"),
        ("logs=" + "a" * 201, "logs", "At most 200 characters: this text has 201"),
        ("logs=--%20:%20!", "logs", "'-- : !' has no word to search for: give letters or digits"),
        ("logs=a%00", "logs", "Must not contain NUL characters"),
    ],
)
def test_a_bad_value_is_an_error_for_its_field_and_is_ignored(query: str, field: str, message: str) -> None:
    filters = parse(query)
    assert filters.errors[field].startswith(message), filters.errors
    assert field not in dict(filters.params())
    assert set(filters.errors) == {field}


def test_bad_dates_at_the_edges_of_the_calendar_are_errors_not_crashes() -> None:
    assert parse("to=9999-12-31").errors["to"].startswith("'9999-12-31' is not a date")
    assert parse("from=0001-01-01").errors == {}


def test_dates_are_utc_unless_an_offset_is_given_and_to_includes_its_day_or_minute() -> None:
    assert parse_when("2026-11-28") == datetime(2026, 11, 28, tzinfo=UTC)
    assert parse_when("2026-11-28", end=True) == datetime(2026, 11, 29, tzinfo=UTC)
    assert parse_when("2026-11-28 14:30", end=True) == datetime(2026, 11, 28, 14, 31, tzinfo=UTC)
    assert parse_when("2026-11-28T14:30:15", end=True) == datetime(2026, 11, 28, 14, 30, 15, tzinfo=UTC)
    assert parse_when("2026-11-28T14:30+01:00") == datetime(2026, 11, 28, 13, 30, tzinfo=UTC)


def test_round_trip_through_the_url_and_through_storage() -> None:
    query = (
        "status=EXECUTING&status=FAILED&task=hello-world&tag=a&tag=b c&from=2026-11-01&to=2026-11-28 14:30"
        "&period=7d&batch=batch_1&queue=emails&machine=large-1x&region=eu&idempotency=order-42&id=run_1&root=1"
        "&logs=order 42&log_errors=1"
    )
    filters = parse(query)
    assert filters.errors == {}
    assert RunFilters.from_query(filters.as_dict(), NOW) == filters
    assert parse(filters.query_string()) == filters
    assert filters.as_dict()["status"] == ["EXECUTING", "FAILED"] and filters.as_dict()["root"] == ["1"]
    assert (filters.logs, filters.log_errors, filters.as_dict()["log_errors"]) == ("order 42", True, ["1"])
    assert parse(filters.query_string(), NOW + timedelta(days=1)) == filters  # the period is kept, not its start


def test_a_logs_text_of_200_characters_with_one_word_is_kept() -> None:
    text = "-" * 199 + "x"
    filters = parse(f"logs={text}&log_errors=0")
    assert (filters.errors, filters.logs, filters.log_errors) == ({}, text, False)
    assert dict(filters.params()) == {"logs": text}


def test_a_value_can_be_dropped_from_the_query_string() -> None:
    filters = parse("tag=a&tag=b&status=QUEUED")
    assert parse(filters.query_string_without("tag", "a")).tag == ("b",)
    assert parse(filters.query_string_without("tag")).tag == ()
    assert parse(filters.query_string_without("tag")).status == ("QUEUED",)


def test_status_choices_use_the_reference_labels_and_colours() -> None:
    choices = status_choices()
    assert [choice["value"] for choice in choices] == list(RunStatus.values)
    assert {choice["value"]: choice["label"] for choice in choices} == LABELS
    assert {choice["value"]: choice["colour"] for choice in choices} == COLOURS
    assert LABELS["SYSTEM_FAILURE"] == "System failure" and COLOURS["FAILED"] == "red"


def test_period_choices_are_the_presets_plus_a_custom_one_from_the_url() -> None:
    assert period_choices("") == PERIODS
    assert period_choices("1h") == PERIODS
    assert period_choices("90m") == [*PERIODS, "90m"]


# --- the runs each filter selects -----------------------------------------------------------------


@pytest.fixture
def zoo(db: None) -> dict[str, Run]:
    return make_zoo()


def make_zoo() -> dict[str, Run]:
    """Runs that differ from `plain` in one way each."""
    plain = factories.run("hello-world")
    runs = {
        "plain": plain,
        "other_task": factories.run("sleep"),
        "tagged": factories.run(tags=["team:core", "urgent"]),
        "emails": factories.run(queue="emails"),
        "large": factories.run(machine="large-1x"),
        "eu": factories.run(region="eu-west"),
        "keyed": factories.run(idempotency_key="5f3c0ffee", idempotency_key_user="order-42"),
        "raw_key": factories.run(idempotency_key="plain-key"),
        "child": factories.run(parent_run_id=plain.id),
        "old": factories.run(),
        "executing": factories.run(),
    }
    factories.task_definition("hello-world")
    batch = engine.trigger_batch(
        environment=factories.environment(), entries=[engine.BatchEntry(task_id="hello-world")], actor="test"
    )
    runs["batched"] = Run.objects.get(batch=batch)
    old_at = timezone.now() - timedelta(days=3)
    Run.objects.filter(pk=runs["old"].pk).update(created_at=old_at, status="FAILED", finished_at=old_at)
    Run.objects.filter(pk=runs["executing"].pk).update(status="EXECUTING", started_at=timezone.now())
    return {name: Run.objects.get(pk=run.pk) for name, run in runs.items()}


def query_for(name: str, zoo: dict[str, Run]) -> tuple[str, set[str]]:
    """The query that selects exactly some runs of the zoo, and their names."""
    two_days_ago = (timezone.now() - timedelta(days=2)).strftime("%Y-%m-%d %H:%M")
    cases = {
        "status": ("status=EXECUTING&status=FAILED", {"executing", "old"}),
        "task": ("task=sleep", {"other_task"}),
        "tag": ("tag=urgent&tag=nobody-uses-this", {"tagged"}),
        "from": (f"from={two_days_ago}", set(zoo) - {"old"}),
        "to": (f"to={two_days_ago}", {"old"}),
        "period": ("period=1d", set(zoo) - {"old"}),
        "batch": (f"batch={zoo['batched'].batch_id}", {"batched"}),
        "queue": ("queue=emails", {"emails"}),
        "machine": ("machine=large-1x", {"large"}),
        "region": ("region=eu-west", {"eu"}),
        "idempotency": ("idempotency=order-42", {"keyed"}),
        "idempotency_as_given": ("idempotency=plain-key", {"raw_key"}),
        "id": (f"id={zoo['tagged'].id}", {"tagged"}),
        "root": ("root=1", set(zoo) - {"child"}),
        "several": ("status=QUEUED&task=hello-world&root=1&tag=team:core", {"tagged"}),
    }
    return cases[name]


CASES = [
    "status",
    "task",
    "tag",
    "from",
    "to",
    "period",
    "batch",
    "queue",
    "machine",
    "region",
    "idempotency",
    "idempotency_as_given",
    "id",
    "root",
    "several",
]


@pytest.mark.parametrize("case", CASES)
def test_each_filter_selects_the_runs_it_names(zoo: dict[str, Run], case: str) -> None:
    query, expected = query_for(case, zoo)
    filters = RunFilters.from_query(QueryDict(query), timezone.now())
    assert filters.errors == {}
    assert matching(filters, factories.environment()) == {zoo[name].id for name in expected}


def test_filters_never_reach_into_another_environment(zoo: dict[str, Run]) -> None:
    prod_run = factories.run("sleep", env="prod")
    filters = parse("task=sleep")
    assert matching(filters, factories.environment("dev")) == {zoo["other_task"].id}
    assert matching(filters, factories.environment("prod")) == {prod_run.id}


def test_task_choices_are_defined_tasks_tasks_seen_in_runs_and_the_selected_ones(db: None) -> None:
    dev = factories.environment("dev")
    factories.run("hello-world")
    factories.run("hello-world")
    engine.trigger(environment=dev, task_id="nobody-defines-this", actor="test")  # a run, no definition
    engine.trigger(environment=factories.environment("prod"), task_id="prod-only-task", actor="test")
    factories.task_definition("defined-never-run")
    assert seen_tasks(dev.id) == ["hello-world", "nobody-defines-this"]
    choices = task_choices(dev.id, ("typed-in-the-url",))
    assert {"hello-world", "nobody-defines-this", "defined-never-run", "typed-in-the-url"} <= set(choices)
    assert "prod-only-task" not in choices
    assert choices == sorted(choices)


def test_seen_tasks_is_a_loose_index_scan_not_a_distinct_over_every_run(db: None) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    dev = factories.environment("dev")
    with CaptureQueriesContext(connection) as queries:
        seen_tasks(dev.id)
    sql = queries.captured_queries[0]["sql"].upper()
    assert "WITH RECURSIVE" in sql and "DISTINCT" not in sql and "LIMIT 1" in sql


# --- the runs the log filters select ----------------------------------------------------------

log = logging.getLogger("tests.filters")


@registry.task(id="test-filters-says")
def says(payload: Any) -> None:
    log.log(logsearch.parse_level(payload.get("level", "INFO")) or logging.INFO, payload["text"])


def said(text: str, level: str = "INFO") -> Run:
    """A run executed by the worker's code (its capture writes the logs) that logged `text`."""
    run = factories.run("test-filters-says", payload={"text": text, "level": level})
    engine.admit(now=run.created_at)
    worker.execute(run_id=run.id, hostname="w1")
    return Run.objects.get(pk=run.pk)


def test_logs_and_log_errors_select_runs_by_their_logs_and_combine_with_other_filters(db: None) -> None:
    order = said("processing order 4217 for customer-9")
    failed = said("payment declined for order 4218", level="ERROR")
    quiet = factories.run("hello-world")  # never executed: no logs at all
    env = factories.environment()
    assert matching(parse("logs=order"), env) == {order.id, failed.id}
    assert matching(parse("logs=ORD 4217"), env) == {order.id}  # prefixes of every word, any case
    assert matching(parse("logs=4217 declined"), env) == set()
    assert matching(parse("log_errors=1"), env) == {failed.id}
    assert matching(parse("logs=order&log_errors=1"), env) == {failed.id}
    assert matching(parse(f"logs=order&id={order.id}"), env) == {order.id}
    assert matching(parse("logs=order&status=QUEUED"), env) == set()
    assert quiet.id in matching(parse("logs=--"), env)  # a rejected text filters nothing


def test_a_logs_text_on_many_runs_selects_the_same_runs_by_a_subquery(db: None, monkeypatch: Any) -> None:
    monkeypatch.setattr(logs, "FEW", 1)  # more attempts match than the list of ids holds
    both = {said("order 1 shipped").id, said("order 2 shipped").id}
    said("heartbeat")
    env = factories.environment()
    assert matching(parse("logs=shipped"), env) == both
    assert "EXISTS" in str(Run.objects.filter(parse("logs=shipped").q()).query)
    assert "EXISTS" not in str(Run.objects.filter(parse("logs=heartbeat").q()).query)
