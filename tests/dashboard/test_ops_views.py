"""The queues page and the workers page: counts per queue and key, links, environments, liveness."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard import ops_views
from runs import engine
from runs.models import Environment, Queue, Run, Worker
from tests import factories


@pytest.fixture
def browser(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_user(username="ada", password="a-long-password-1"))
    return client


def at(minutes: float) -> datetime:
    return datetime(2026, 11, 28, 12, 0, tzinfo=timezone.get_fixed_timezone(0)) + timedelta(minutes=minutes)


def trigger(minutes: float, env: str = "dev", **options: Any) -> Run:
    with time_machine.travel(at(minutes), tick=False):
        return factories.run("hello-world", env=env, **options)


def start(run: Run, worker: str = "celery@w1") -> None:
    attempt = engine.start_attempt(run_id=run.id, worker=worker)
    assert attempt is not None


def complete(run: Run) -> None:
    start(run)
    assert engine.complete_attempt(run_id=run.id, attempt=1, output="{}", output_type="application/json")


def status(run: Run) -> str:
    return Run.objects.get(pk=run.pk).status


@pytest.fixture
def busy(dev: Environment, prod: Environment) -> dict[str, Run]:
    """Runs in every relevant status on two queues of dev (one with keys), and prod runs on the same queue name.

    emails (limit 2 per key): key a: a1 executing, a2 dequeued, a3 queued, a4 delayed;
    key b: b1 completed, b2 canceled, b3 queued. reports (no limit): r3 completed, r1 queued, r2 delayed.
    """
    runs: dict[str, Run] = {}
    for i, (name, key) in enumerate((("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("b2", "b"))):
        runs[name] = trigger(i / 10, queue="emails", concurrency_key=key, queue_concurrency_limit=2)
    runs["r3"] = trigger(0, queue="reports")
    runs["p1"] = trigger(0, env="prod", queue="emails", concurrency_key="a")
    engine.admit(now=at(1))
    start(runs["a1"])
    complete(runs["b1"])
    complete(runs["r3"])
    engine.cancel_run(run_id=runs["b2"].id, actor="test")
    runs["a3"].refresh_from_db()
    runs["b3"] = trigger(3, queue="emails", concurrency_key="b")
    runs["a4"] = trigger(4, queue="emails", concurrency_key="a", delay_until=at(60))
    runs["r1"] = trigger(5, queue="reports")
    runs["r2"] = trigger(6, queue="reports", delay_until=at(90))
    runs["p2"] = trigger(7, env="prod", queue="emails", concurrency_key="a")
    expected = {"a1": "EXECUTING", "a2": "DEQUEUED", "a3": "QUEUED", "b1": "COMPLETED", "b2": "CANCELED"}
    expected |= {"b3": "QUEUED", "a4": "DELAYED", "r1": "QUEUED", "r2": "DELAYED", "r3": "COMPLETED"}
    assert {name: status(runs[name]) for name in expected} == expected
    return runs


def queue_cells(html: str, queue: str) -> dict[str, str]:
    """The text of each counted cell of a queue's row (or of a key row, with `queue` = 'key:<key>')."""
    if queue.startswith("key:"):
        block = html.split(f'data-key="{queue[4:]}"', 1)[1].split("</tr>", 1)[0]
    else:
        block = html.split(f'data-queue="{queue}"', 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r'data-count="(\w+)">(.*?)</td>', block, re.S)
    return {name: re.sub(r"<[^>]+>", "", text).strip() for name, text in cells}


def test_queues_page_counts_running_queued_and_delayed_but_not_finished_runs(
    browser: Client, busy: dict[str, Run]
) -> None:
    html = browser.get("/queues/?env=dev").content.decode()
    assert queue_cells(html, "emails") == {"running": "2", "queued": "2", "delayed": "1"}
    assert queue_cells(html, "reports") == {"running": "0", "queued": "1", "delayed": "1"}
    row = html.split('data-queue="emails"', 1)[1].split("</tr>", 1)[0]
    assert "2 <span" in row and "per key" in row  # the limit, which each key has a copy of
    assert "1 key at limit" in row
    assert "no limit" in html.split('data-queue="reports"', 1)[1].split("</tr>", 1)[0]


def test_queues_are_ordered_busiest_first_with_waiting_since_of_the_oldest_queued_run(
    dev: Environment, busy: dict[str, Run]
) -> None:
    Queue.objects.create(environment=dev, name="idle", concurrency_limit=3)
    rows, total = ops_views.queue_rows(dev, opened=[])
    assert [r.name for r in rows][:2] == ["emails", "reports"]
    assert total == len(rows) == len({r.name for r in rows})
    by_name = {r.name: r for r in rows}
    assert by_name["emails"].waiting_since == busy["a3"].queued_at == at(0.2)
    assert by_name["reports"].waiting_since == at(5)
    idle = by_name["idle"]
    assert (idle.limit, idle.running, idle.queued, idle.delayed, idle.waiting_since) == (3, 0, 0, 0, None)
    assert "task/hello-world" not in by_name or by_name["task/hello-world"].queued == 0


def test_expanding_a_queue_shows_each_keys_counts_against_the_limit(browser: Client, busy: dict[str, Run]) -> None:
    closed = browser.get("/queues/?env=dev").content.decode()
    assert 'data-key="a"' not in closed
    toggle = re.search(r'<a id="q-\w+-toggle"[^>]*href="([^"]+)"[^>]*aria-expanded="false"', closed)
    assert toggle is not None
    response = browser.get(toggle.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.startswith('<div id="queues-table"')  # only the partial, for htmx to swap in
    assert "<html" not in html
    assert queue_cells(html, "key:a") == {"running": "2 / 2", "queued": "1", "delayed": "1"}
    assert queue_cells(html, "key:b") == {"running": "0 / 2", "queued": "1", "delayed": "0"}
    assert "At limit" in html.split('data-key="a"', 1)[1].split("</tr>", 1)[0]
    assert "At limit" not in html.split('data-key="b"', 1)[1].split("</tr>", 1)[0]
    assert 'aria-expanded="true"' in html
    # The poll keeps the queue open.
    poll = re.search(r'hx-get="([^"]+)"', html)
    assert poll is not None and "open=emails" in poll.group(1)


def test_each_count_links_to_the_runs_list_filtered_by_queue_and_status(browser: Client, busy: dict[str, Run]) -> None:
    html = browser.get("/queues/?env=dev").content.decode()
    row = html.split('data-queue="emails"', 1)[1].split("</tr>", 1)[0]
    links = dict(re.findall(r'id="q-\w+-(running|queued|delayed)" href="([^"]+)"', row))
    assert links == {
        "running": "/runs/?env=dev&amp;queue=emails&amp;status=DEQUEUED&amp;status=EXECUTING",
        "queued": "/runs/?env=dev&amp;queue=emails&amp;status=QUEUED",
        "delayed": "/runs/?env=dev&amp;queue=emails&amp;status=DELAYED",
    }
    trigger(9)  # on the task's own queue, task/hello-world
    slashed = browser.get("/queues/?env=dev&q=task/").content.decode()
    assert "queue=task%2Fhello-world&amp;status=QUEUED" in slashed


def test_another_environments_queues_and_runs_are_not_shown(browser: Client, busy: dict[str, Run]) -> None:
    prod = Environment.objects.get(slug="prod")
    Queue.objects.create(environment=prod, name="prod-only")
    html = browser.get("/queues/?env=dev").content.decode()
    assert "prod-only" not in html
    assert queue_cells(html, "emails")["queued"] == "2"  # not p2
    prod_html = browser.get("/queues/?env=prod").content.decode()
    assert "prod-only" in prod_html and "reports" not in prod_html
    assert queue_cells(prod_html, "emails") == {"running": "1", "queued": "1", "delayed": "0"}


def test_a_queue_only_named_by_runs_is_listed_without_a_limit(browser: Client, dev: Environment) -> None:
    trigger(0, queue="legacy")
    Queue.objects.filter(name="legacy").delete()
    html = browser.get("/queues/").content.decode()
    assert queue_cells(html, "legacy")["queued"] == "1"
    assert "no limit" in html.split('data-queue="legacy"', 1)[1]


def test_counting_filters_every_run_query_on_unfinished_statuses(
    browser: Client, busy: dict[str, Run], dev: Environment
) -> None:
    for i in range(30):  # more queues must not mean more queries
        Queue.objects.create(environment=dev, name=f"q{i}")
    with CaptureQueriesContext(connection) as queries:
        browser.get("/queues/?env=dev&open=emails&open=reports")
    run_queries = [q["sql"] for q in queries.captured_queries if 'FROM "runs_run"' in q["sql"]]
    assert len(run_queries) == 6  # running, queued and delayed per queue, then per key of the open queues
    for sql in run_queries:
        assert re.search(r'"runs_run"\."status" (IN|=) ', sql), sql
        assert "GROUP BY" in sql, sql
        assert "COMPLETED" not in sql and "CANCELED" not in sql


def test_only_the_busiest_queues_are_listed_when_there_are_many(
    browser: Client, dev: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops_views, "QUEUES_SHOWN", 2)
    for name, n in (("quiet", 1), ("busiest", 3), ("busy", 2)):
        for _ in range(n):
            trigger(0, queue=name)
    html = browser.get("/queues/").content.decode()
    assert re.findall(r'data-queue="([^"]+)"', html) == ["busiest", "busy"]
    assert "The 2 busiest of" in html and "Find the others by name" in html
    found = browser.get("/queues/?q=qui").content.decode()
    assert re.findall(r'data-queue="([^"]+)"', found) == ["quiet"]


def test_polling_gets_no_content_until_something_changes(browser: Client, busy: dict[str, Run]) -> None:
    page = browser.get("/queues/?env=dev").content.decode()
    poll = re.search(r'hx-get="([^"]+)" hx-trigger="every 2s"', page)
    assert poll is not None
    url = poll.group(1).replace("&amp;", "&")
    assert browser.get(url, headers={"HX-Request": "true"}).status_code == 204
    trigger(10, queue="reports")
    changed = browser.get(url, headers={"HX-Request": "true"})
    assert changed.status_code == 200
    assert queue_cells(changed.content.decode(), "reports")["queued"] == "2"


def test_empty_queues_page_says_how_queues_appear(browser: Client, dev: Environment) -> None:
    html = browser.get("/queues/").content.decode()
    assert "No queues in Development yet" in html and "make run" in html


@pytest.mark.parametrize("path", ["/queues/", "/workers/"])
def test_polling_pages_have_a_plain_title_and_a_polling_indicator(browser: Client, dev: Environment, path: str) -> None:
    html = browser.get(path).content.decode()
    title = html.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.endswith("· Development · Runyard") and "<" not in title
    assert '<span class="live-indicator" data-polling' in html


@pytest.mark.parametrize("query", ["?open=" + "x" * 5000, "?q=%00", "?env=nowhere", "?open=&open=a&q=" + "é" * 400])
def test_odd_query_strings_never_fail(browser: Client, busy: dict[str, Run], query: str) -> None:
    assert browser.get("/queues/" + query).status_code == 200


@pytest.mark.parametrize("path", ["/queues/", "/workers/"])
def test_pages_need_a_login(client: Client, db: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


# --- workers -------------------------------------------------------------------------------


def register(hostname: str, seen: datetime, queues: list[str] | None = None) -> None:
    engine.register_worker(
        hostname=hostname, queues=queues or ["runyard.small-1x"], specs=[], now=seen - timedelta(hours=1)
    )
    engine.worker_seen(hostname=hostname, now=seen)


def worker_row(html: str, hostname: str) -> str:
    return html.split(f'data-worker="{hostname}"', 1)[1].split("</tr>", 1)[0]


def test_workers_page_lists_online_workers_with_queues_and_active_runs(
    browser: Client, dev: Environment, prod: Environment
) -> None:
    now = timezone.now()
    register("celery@alive", now - timedelta(seconds=5), queues=["runyard.micro", "runyard.small-1x"])
    Worker.objects.filter(hostname="celery@alive").update(tasks=["hello-world", "sleep"])
    here, there, done = trigger(0), trigger(0, env="prod"), trigger(0)
    engine.admit(now=at(1))  # before their TTL ran out
    start(here, "celery@alive")
    start(there, "celery@alive")
    complete(done)  # on celery@w1: finished runs are nobody's active runs
    html = browser.get("/workers/?env=dev").content.decode()
    row = worker_row(html, "celery@alive")
    assert "Online" in row and "runyard.micro" in row and "runyard.small-1x" in row
    assert "hello-world" in row and "sleep" in row
    assert f'href="/runs/{here.id}/"' in row and "Executing" in row
    assert there.id not in html and "+1 run of other environments" in row
    assert done.id not in html


def test_offline_workers_are_listed_apart_and_greyed_then_dropped(browser: Client, dev: Environment) -> None:
    now = timezone.now()
    timeout = timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    register("celery@alive", now - timeout + timedelta(seconds=5))
    register("celery@gone", now - timeout - timedelta(seconds=5))
    register("celery@long-gone", now - timedelta(hours=25))
    html = browser.get("/workers/").content.decode()
    online, offline = html.split('id="workers-offline-title"', 1)
    assert 'data-worker="celery@alive"' in online and "celery@gone" not in online
    assert 'class="worker-row worker-offline" data-worker="celery@gone"' in offline
    assert "Offline" in worker_row(offline, "celery@gone")
    assert "long-gone" not in html


def test_no_workers_online_says_how_to_start_one(browser: Client, dev: Environment) -> None:
    html = browser.get("/workers/").content.decode()
    assert "No workers online" in html
    assert "make run" in html and "celery -A dashboard worker -l info -Q runyard.micro," in html


def test_workers_partial_polls_and_answers_204_while_nothing_changes(browser: Client, dev: Environment) -> None:
    register("celery@alive", timezone.now())
    page = browser.get("/workers/").content.decode()
    poll = re.search(r'<div id="workers-table"[^>]*hx-get="([^"]+)"', page)
    assert poll is not None
    url = poll.group(1).replace("&amp;", "&")
    assert browser.get(url, headers={"HX-Request": "true"}).status_code == 204
    engine.worker_seen(hostname="celery@alive", now=timezone.now() + timedelta(seconds=1))
    again = browser.get(url, headers={"HX-Request": "true"})
    assert again.status_code == 200 and again.content.decode().startswith('<div id="workers-table"')
