from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.views import PAGE_SIZE
from runs.models import Run
from tests import factories


@pytest.fixture
def user(db: None) -> User:
    return User.objects.create_user(username="ada", password="a-long-password-1")


@pytest.fixture
def browser(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def make_runs(count: int, env: str = "dev", task_id: str = "hello-world") -> list[Run]:
    """`count` runs created one second apart, oldest first."""
    start = timezone.now() - timedelta(hours=1)
    runs = [factories.run(task_id, env=env) for _ in range(count)]
    for index, run in enumerate(runs):
        Run.objects.filter(pk=run.pk).update(created_at=start + timedelta(seconds=index))
    return list(Run.objects.filter(pk__in=[r.pk for r in runs]).order_by("created_at"))


def row_ids(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('<tr id="run-')[1:]]


@pytest.mark.parametrize("path", ["/runs/", "/runs/run_x/", "/"])
def test_pages_redirect_anonymous_users_to_login(client: Client, db: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_page_uses_the_layout(client: Client, db: None) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b"Log in to Runyard" in response.content
    assert b"runyard.css" in response.content


def test_logging_in_through_the_form_lands_on_runs(client: Client, user: User) -> None:
    response = client.post("/accounts/login/", {"username": "ada", "password": "a-long-password-1"}, follow=True)
    assert response.redirect_chain[-1][0] == "/runs/"
    assert b"Runs" in response.content


def test_home_redirects_to_runs(browser: Client) -> None:
    response = browser.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/runs/"


def test_list_shows_runs_newest_first_with_status_labels(browser: Client) -> None:
    runs = make_runs(3)
    Run.objects.filter(pk=runs[0].pk).update(status="EXECUTING", started_at=timezone.now())
    response = browser.get("/runs/")
    html = response.content.decode()
    assert response.status_code == 200
    assert row_ids(html) == [r.id for r in reversed(runs)]
    assert "Queued" in html and "Executing" in html
    assert 'class="badge badge-blue badge-active" data-status="EXECUTING"' in html
    assert 'class="badge badge-grey" data-status="QUEUED"' in html
    assert f'href="/runs/{runs[0].id}/"' in html


def test_list_shows_only_the_current_environment(browser: Client) -> None:
    dev_run, prod_run = factories.run(env="dev"), factories.run(env="prod")
    assert row_ids(browser.get("/runs/").content.decode()) == [dev_run.id]
    assert row_ids(browser.get("/runs/?env=prod").content.decode()) == [prod_run.id]
    # The choice is remembered in the session.
    assert row_ids(browser.get("/runs/").content.decode()) == [prod_run.id]


def test_list_pages_with_cursors(browser: Client) -> None:
    runs = make_runs(PAGE_SIZE * 2 + 3)
    newest_first = [r.id for r in reversed(runs)]
    first = browser.get("/runs/")
    assert row_ids(first.content.decode()) == newest_first[:PAGE_SIZE]
    page = first.context["page"]
    assert page.is_first and page.newer is None and page.older

    second = browser.get("/runs/", {"after": page.older})
    assert row_ids(second.content.decode()) == newest_first[PAGE_SIZE : PAGE_SIZE * 2]
    page2 = second.context["page"]
    assert not page2.is_first and page2.newer and page2.older

    third = browser.get("/runs/", {"after": page2.older})
    assert row_ids(third.content.decode()) == newest_first[PAGE_SIZE * 2 :]
    assert third.context["page"].older is None

    back = browser.get("/runs/", {"before": third.context["page"].newer})
    assert row_ids(back.content.decode()) == newest_first[PAGE_SIZE : PAGE_SIZE * 2]
    back_to_first = browser.get("/runs/", {"before": page2.newer})
    assert row_ids(back_to_first.content.decode()) == newest_first[:PAGE_SIZE]
    assert back_to_first.context["page"].is_first


def test_runs_created_in_the_same_microsecond_are_neither_lost_nor_repeated(browser: Client) -> None:
    runs = make_runs(PAGE_SIZE + 5)
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(created_at=runs[0].created_at)
    seen = row_ids(browser.get("/runs/").content.decode())
    older = browser.get("/runs/").context["page"].older
    seen += row_ids(browser.get("/runs/", {"after": older}).content.decode())
    assert sorted(seen) == sorted(r.id for r in runs)


def test_list_does_not_count_rows(browser: Client) -> None:
    make_runs(3)
    with CaptureQueriesContext(connection) as queries:
        browser.get("/runs/")
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)


def test_bad_cursor_shows_the_first_page(browser: Client) -> None:
    runs = make_runs(2)
    for cursor in ["not-a-cursor", "123", "9" * 30 + ".run_x", "-5.run_x"]:
        response = browser.get("/runs/", {"after": cursor, "before": cursor})
        assert response.status_code == 200
        assert row_ids(response.content.decode()) == [r.id for r in reversed(runs)]


def test_list_page_connects_its_websocket_with_the_rows_on_screen(browser: Client) -> None:
    make_runs(2)
    html = browser.get("/runs/").content.decode()
    assert 'hx-ext="ws"' in html
    assert 'ws-connect="/ws/runs/?env=dev&amp;since=' in html
    assert "prepend=1" in html
    assert "django_htmx/htmx-2.min.js" in html and "django_htmx/ext/hx-ws-2.js" in html


def test_run_page_shows_facts_timeline_payload_and_output(browser: Client) -> None:
    run = factories.run("hello-world", payload={"name": "Ada", "n": [1, 2]}, tags=["team:core"])
    Run.objects.filter(pk=run.pk).update(
        status="COMPLETED",
        started_at=run.created_at + timedelta(seconds=1),
        finished_at=run.created_at + timedelta(seconds=3),
        output=json.dumps({"message": "Hello, Ada!"}),
        output_type="application/json",
    )
    response = browser.get(f"/runs/{run.id}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="run-panel"' in html
    assert "Completed" in html and "Finished successfully." in html
    assert "hello-world" in html and "team:core" in html and "2.0 s" in html
    assert "triggered" in html and "created" in html  # the trigger event of the timeline
    assert json.dumps({"name": "Ada", "n": [1, 2]}, indent=2).replace('"', "&quot;") in html
    assert "&quot;message&quot;: &quot;Hello, Ada!&quot;" in html
    assert f'ws-connect="/ws/runs/{run.id}/?since=' in html


def test_run_page_shows_attempt_errors_with_stack_traces(browser: Client) -> None:
    from runs import engine

    run = factories.run("always-fails", max_attempts=1)
    engine.tick()
    engine.start_attempt(run_id=run.id, worker="w1")
    error = {"message": "boom", "name": "RuntimeError", "stackTrace": "Traceback...\nRuntimeError: boom"}
    engine.fail_attempt(run_id=run.id, attempt=1, error=error, retry=None)
    html = browser.get(f"/runs/{run.id}/").content.decode()
    assert "Failed" in html
    assert "<strong>RuntimeError</strong>: boom" in html
    assert '<pre class="code stack">Traceback...\nRuntimeError: boom</pre>' in html
    assert "Dequeued" in html and "Executing" in html  # timeline
    assert "worker:w1" in html


def test_run_of_another_environment_is_not_found(browser: Client) -> None:
    run = factories.run(env="prod")
    response = browser.get(f"/runs/{run.id}/")
    assert response.status_code == 404
    assert b"Run not found" in response.content
    assert f"/runs/{run.id}/?env=prod".encode() in response.content


def test_unknown_run_is_not_found(browser: Client) -> None:
    response = browser.get("/runs/run_doesnotexist/")
    assert response.status_code == 404
    assert b"Run not found" in response.content


def test_htmx_request_for_a_run_gets_only_its_panel(browser: Client) -> None:
    run = factories.run()
    response = browser.get(f"/runs/{run.id}/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.startswith('<div id="run-panel"')
    assert "<html" not in html


def test_markup_in_payload_tags_and_errors_is_escaped(browser: Client) -> None:
    run = factories.run(payload={"html": "<script>alert(1)</script>"}, tags=["<b>tag</b>"])
    Run.objects.filter(pk=run.pk).update(
        status="FAILED",
        finished_at=timezone.now(),
        error={"name": "<i>Err</i>", "message": "<img src=x>", "stackTrace": "</pre><script>x</script>"},
    )
    for path in ["/runs/", f"/runs/{run.id}/"]:
        html = browser.get(path).content.decode()
        assert "<script>alert" not in html and "<b>tag</b>" not in html
        assert "&lt;b&gt;tag&lt;/b&gt;" in html
    html = browser.get(f"/runs/{run.id}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x>" not in html and "<i>Err</i>" not in html and "</pre><script>" not in html


def test_logout_is_a_post_form_with_csrf(browser: Client) -> None:
    html = browser.get("/runs/").content.decode()
    assert 'action="/accounts/logout/"' in html and "csrfmiddlewaretoken" in html
    response = browser.post("/accounts/logout/")
    assert response.status_code == 302
    assert browser.get("/runs/").status_code == 302
