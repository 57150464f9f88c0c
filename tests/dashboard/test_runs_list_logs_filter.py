"""The runs list filtered by its runs' logs (`logs=<text>`, `log_errors=1`): the rows shown, with
the other filters and across pages, the chips, bad texts, and bulk actions over the same runs."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from dashboard.views import PAGE_SIZE
from runs import engine, logsearch, registry, worker
from runs.engine.bulk import in_scope
from runs.models import BulkAction, Run
from tests import factories

pytestmark = pytest.mark.django_db
log = logging.getLogger("tests.runs_list_logs")


@registry.task(id="test-list-says")
def says(payload: Any) -> None:
    log.log(logsearch.parse_level(payload.get("level", "INFO")) or logging.INFO, payload["text"])


def said(text: str, level: str = "INFO") -> Run:
    """A run the worker's code executed (its capture writes the logs) that logged `text`."""
    run = factories.run("test-list-says", payload={"text": text, "level": level})
    engine.admit(now=run.created_at)
    worker.execute(run_id=run.id, hostname="w1")
    return Run.objects.get(pk=run.pk)


@pytest.fixture
def operator(client: Client) -> Client:
    user = User.objects.create_user(username="olga", password=None)
    user.groups.add(Group.objects.get(name="Operators"))
    client.force_login(user)
    return client


def row_ids(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('<tr id="run-')[1:]]


def test_the_list_shows_only_runs_whose_logs_contain_the_words(operator: Client) -> None:
    order = said("processing order 4217 for customer-9")
    said("heartbeat ok")
    factories.run("hello-world")  # no logs
    html = operator.get("/runs/", {"logs": "Order 42"}).content.decode()
    assert row_ids(html) == [order.id]
    assert 'id="filter-logs" type="search" name="logs" value="Order 42"' in html


def test_has_error_logs_combines_with_the_status_filter(operator: Client) -> None:
    failed = said("payment declined", level="ERROR")
    said("payment accepted")
    queued_error = said("payment retried", level="CRITICAL")
    Run.objects.filter(pk=queued_error.pk).update(status="QUEUED", finished_at=None)
    assert sorted(row_ids(operator.get("/runs/", {"log_errors": "1"}).content.decode())) == sorted(
        [failed.id, queued_error.id]
    )
    html = operator.get("/runs/", {"log_errors": "1", "status": "QUEUED", "logs": "payment"}).content.decode()
    assert row_ids(html) == [queued_error.id]
    assert '<input type="checkbox" name="log_errors" value="1" checked>' in html


def test_the_log_filters_are_kept_across_pages(operator: Client) -> None:
    matching = [said(f"order {n} shipped") for n in range(PAGE_SIZE + 2)]
    said("nothing to see")
    first = operator.get("/runs/", {"logs": "shipped", "log_errors": "0"}).content.decode()
    assert len(row_ids(first)) == PAGE_SIZE
    older = first.split('rel="next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert older.startswith("?env=dev&logs=shipped&after=")
    second = operator.get(f"/runs/{older}").content.decode()
    assert set(row_ids(first)) | set(row_ids(second)) == {run.id for run in matching}


def test_active_log_filters_show_as_chips_that_remove_only_themselves(operator: Client) -> None:
    html = operator.get("/runs/?logs=order&log_errors=1&status=FAILED").content.decode()
    assert 'href="?env=dev&amp;status=FAILED&amp;log_errors=1" aria-label="Remove filter: Logs contain order"' in html
    assert 'href="?env=dev&amp;status=FAILED&amp;logs=order" aria-label="Remove filter: Has ERROR logs"' in html
    assert "data-filter-chip" not in operator.get("/runs/?status=FAILED").content.decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [("x" * 201, "At most 200 characters: this text has 201"), ("-- !", "&#x27;-- !&#x27; has no word to search for")],
)
def test_a_bad_logs_text_is_shown_next_to_its_field_and_ignored(operator: Client, text: str, message: str) -> None:
    run = said("anything")
    response = operator.get("/runs/", {"logs": text})
    html = response.content.decode()
    assert response.status_code == 200
    assert f'<p class="field-error" id="filter-logs-error">{message}' in html
    assert row_ids(html) == [run.id]


def test_bulk_actions_by_filter_count_and_store_only_the_runs_the_log_filter_shows(operator: Client) -> None:
    failed = [said("export failed: disk full", level="ERROR") for _ in range(2)]
    said("export done")
    preview = operator.post("/runs/bulk/?env=dev", {"do": "replay:matching", "logs": "export", "log_errors": "1"})
    assert re.search(r"Replay <span data-preview-count>2</span> runs", preview.content.decode())
    body = {"action": "replay", "scope": "matching", "logs": "export", "log_errors": "1", "confirm": "1", "reason": "r"}
    operator.post("/runs/bulk/?env=dev", body)
    bulk = BulkAction.objects.get()
    assert bulk.filters == {"logs": ["export"], "log_errors": ["1"]}
    assert set(in_scope(bulk).values_list("id", flat=True)) == {run.id for run in failed}


def test_a_bad_logs_text_refuses_a_bulk_action_by_filter(operator: Client) -> None:
    said("anything")
    response = operator.post("/runs/bulk/?env=dev", {"do": "cancel:matching", "logs": "!!"})
    assert response.status_code == 422
    assert "Fix the filters first (logs: " in response.content.decode()
