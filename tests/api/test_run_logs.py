"""GET /api/v1/runs/{runId}/logs: a run's lines a page at a time, filtered, scoped to the key's
environment (runs executed by the real worker code; PostgreSQL for real)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from runs import engine, registry, worker
from runs.models import Environment, Run
from tests import factories
from tests.api.conftest import Api
from tests.runs.test_logs import executed

pytestmark = pytest.mark.django_db


@registry.task(id="test-api-logs-levels")
def logs_levels(payload: Any) -> None:
    log = logging.getLogger("tests.api_logs")
    for n in range(payload.get("n", 0)):
        log.info("line %d", n)
    log.warning("a warning about Disk")
    log.error("an error")
    print("printed")


def body(api: Api, run: Run, query: str = "") -> dict[str, Any]:
    response = api.get(f"/api/v1/runs/{run.id}/logs{query}")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_lines_come_as_json_with_each_attempts_counts(api: Api, dev: Environment) -> None:
    run = executed("test-api-logs-levels", {"n": 1})
    answer = body(api, run)
    assert [(line["level"], line["logger"], line["message"]) for line in answer["data"]] == [
        ("INFO", "tests.api_logs", "line 0"),
        ("WARNING", "tests.api_logs", "a warning about Disk"),
        ("ERROR", "tests.api_logs", "an error"),
        ("INFO", "stdout", "printed"),
    ]
    first = answer["data"][0]
    assert set(first) == {"attempt", "seq", "timestamp", "level", "logger", "message", "extra"}
    assert (first["attempt"], first["seq"]) == (1, 1) and first["timestamp"].endswith("Z")
    assert answer["pagination"] == {"next": None}
    assert answer["attempts"] == [{"attempt": 1, "lines": 4, "errors": 1, "dropped": 0}]


def test_level_is_a_minimum_in_any_case_and_search_a_substring_in_any_case(api: Api, dev: Environment) -> None:
    run = executed("test-api-logs-levels", {"n": 3})
    assert [line["message"] for line in body(api, run, "?level=warning")["data"]] == [
        "a warning about Disk",
        "an error",
    ]
    assert [line["message"] for line in body(api, run, "?search=DISK")["data"]] == ["a warning about Disk"]
    assert [line["message"] for line in body(api, run, "?level=ERROR&search=line")["data"]] == []


def test_pages_follow_the_cursor_to_every_line_once(api: Api, dev: Environment) -> None:
    run = executed("test-api-logs-levels", {"n": 7})  # 10 lines
    seen, query, pages = [], "?limit=3", 0
    while True:
        answer = body(api, run, query)
        pages += 1
        seen += [line["seq"] for line in answer["data"]]
        if answer["pagination"]["next"] is None:
            break
        query = f"?limit=3&cursor={answer['pagination']['next']}"
    assert seen == list(range(1, 11)) and pages == 4


def test_attempt_selects_one_attempts_lines(api: Api, dev: Environment) -> None:
    run = executed("test-logs-then-fails", max_attempts=2)
    engine.tick(now=timezone.now() + timedelta(seconds=30))
    worker.execute(run_id=run.id, hostname="w1")
    both = body(api, run)
    assert [(line["attempt"], line["message"]) for line in both["data"]] == [(1, "about to fail"), (2, "about to fail")]
    assert [line["attempt"] for line in body(api, run, "?attempt=2")["data"]] == [2]
    assert [a["attempt"] for a in both["attempts"]] == [1, 2]


def test_a_run_of_another_environment_is_not_found_as_retrieve_says(api: Api, prod_api: Api, dev: Environment) -> None:
    run = executed("test-api-logs-levels")
    for path in (f"/api/v1/runs/{run.id}/logs", f"/api/v3/runs/{run.id}"):
        response = prod_api.get(path)
        assert (response.status_code, response.json()) == (404, {"error": "Run not found"})
    assert api.get("/api/v1/runs/run_nonexistent/logs").status_code == 404


def test_a_run_with_no_lines_yet_has_an_empty_page(api: Api, dev: Environment) -> None:
    run = factories.run("test-api-logs-levels")
    assert body(api, run) == {"data": [], "pagination": {"next": None}, "attempts": []}


def test_without_a_key_it_is_refused(client: Any, dev: Environment) -> None:
    run = factories.run("test-api-logs-levels")
    assert client.get(f"/api/v1/runs/{run.id}/logs").status_code == 401


@pytest.mark.parametrize(
    ("query", "param", "rule"),
    [
        ("attempt=0", "attempt", "at least 1"),
        ("attempt=two", "attempt", "integer"),
        ("attempt=-1", "attempt", "integer"),
        ("attempt=%D9%A1", "attempt", "integer"),  # an Arabic-Indic digit one
        ("level=LOUD", "level", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("search=" + "x" * 201, "search", "at most 200 characters"),
        ("limit=0", "limit", "from 1 to 1000"),
        ("limit=1001", "limit", "from 1 to 1000"),
        ("limit=99999999999999999999", "limit", "from 1 to 1000"),
        ("cursor=not-a-cursor", "cursor", "pagination.next"),
        ("cursor=OTk5OTk5OTk5OTk6MQ", "cursor", "pagination.next"),  # "99999999999:1": out of range
    ],
)
def test_bad_parameters_are_400_naming_the_parameter_and_the_rule(
    api: Api, dev: Environment, query: str, param: str, rule: str
) -> None:
    run = factories.run("test-api-logs-levels")
    response = api.get(f"/api/v1/runs/{run.id}/logs?{query}")
    assert response.status_code == 400
    answer = response.json()
    assert answer["param"] == param and rule in answer["error"] and param in answer["error"]
