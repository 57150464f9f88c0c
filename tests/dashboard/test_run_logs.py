"""The Logs panel of the run page, its live tail and its downloads: runs executed for real (the
worker's capture writes the lines into PostgreSQL), read through the dashboard's views."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client, override_settings
from django.utils import timezone

import example_tasks  # noqa: F401 - registers hello-world
from runs import engine, logs, registry, worker
from runs.models import Environment, Run
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db
log = logging.getLogger("tests.panel")


@registry.task(id="test-panel-mixed")
def logs_mixed(payload: Any) -> None:
    log.info("starting order", extra={"order": 7})
    log.warning("stock is low")
    print("printed by the task")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("charge failed")


@registry.task(id="test-panel-many")
def logs_many(payload: Any) -> None:
    for n in range(payload["n"]):
        log.info("line %d", n)


@registry.task(id="test-panel-silent")
def logs_nothing(payload: Any) -> None:
    return None


@registry.task(id="test-panel-retried", retry=registry.Retry(max_attempts=2, min_timeout=1))
def logs_then_fails(payload: Any) -> None:
    log.error("attempt failing")
    raise RuntimeError("failed after logging")


def executed(task_id: str, payload: Any = None, env: str = "dev", **options: Any) -> Run:
    run = factories.run(task_id, payload=payload, env=env, **options)
    engine.admit(now=run.created_at)
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    return run


def retried(run: Run) -> Run:
    engine.tick(now=timezone.now() + timedelta(seconds=30))
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    return run


@pytest.fixture
def browser(client: Client, dev: Environment) -> Client:
    client.force_login(User.objects.create_user(username="ada", password=None))
    return client


def panel(browser: Client, run: Run, **query: str) -> str:
    response = browser.get(f"/runs/{run.id}/logs/", query, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content
    html = response.content.decode()
    assert html.startswith('<section id="run-logs"')
    return html


def shown_messages(html: str) -> list[str]:
    return re.findall(r'<pre class="log-message">([^<]*)</pre>', html)


def test_the_run_page_shows_each_line_with_its_time_level_logger_and_extra_fields(browser: Client) -> None:
    run = executed("test-panel-mixed")
    html = browser.get(f"/runs/{run.id}/").content.decode()
    logs_panel = html[html.index('<section id="run-logs"') :]
    assert logs_panel.index('<section id="run-logs"') < logs_panel.index('id="run-logs-lines"')
    assert html.index('id="run-panel"') < html.index('id="run-logs"')  # below the panel, not in it
    first = logs.lines(run.id)[0]
    assert f'<time datetime="{first.at.isoformat()}"' in logs_panel
    shown = timezone.localtime(first.at)
    assert f">{shown:%H:%M:%S}.{shown.microsecond // 1000:03d}</time>" in logs_panel  # to the millisecond
    assert '<span class="badge badge-grey log-level">INFO</span>' in logs_panel
    assert '<span class="badge badge-amber log-level">WARNING</span>' in logs_panel
    assert '<span class="badge badge-red log-level">ERROR</span>' in logs_panel
    assert '<span class="log-logger mono">tests.panel</span>' in logs_panel
    assert '<span class="log-logger mono">stdout</span>' in logs_panel
    assert "<span>order=7</span>" in logs_panel
    messages = shown_messages(logs_panel)
    assert messages[:3] == ["starting order", "stock is low", "printed by the task"]
    assert messages[3].startswith("charge failed\nTraceback (most recent call last):")
    assert 'Attempt 1: 4 lines, <span class="log-errors">1 error</span>' in logs_panel


def test_the_level_filter_keeps_lines_from_that_level_up(browser: Client) -> None:
    run = executed("test-panel-mixed")
    assert [m.split("\n")[0] for m in shown_messages(panel(browser, run, level="WARNING"))] == [
        "stock is low",
        "charge failed",
    ]
    assert len(shown_messages(panel(browser, run, level="error"))) == 1


def test_the_search_finds_lines_containing_the_text_in_any_case(browser: Client) -> None:
    run = executed("test-panel-mixed")
    assert shown_messages(panel(browser, run, q="STOCK")) == ["stock is low"]
    assert shown_messages(panel(browser, run, q="nowhere")) == []


def test_the_latest_attempt_is_shown_by_default_and_any_attempt_or_all_on_request(browser: Client) -> None:
    run = retried(executed("test-panel-retried", max_attempts=2))
    assert run.attempt_count == 2
    latest = panel(browser, run)
    assert re.findall(r'id="log-(\d+)-\d+"', latest) == ["2"]
    assert re.findall(r'id="log-(\d+)-\d+"', panel(browser, run, attempt="1")) == ["1"]
    assert re.findall(r'id="log-(\d+)-\d+"', panel(browser, run, attempt="all")) == ["1", "2"]
    assert '<option value="1">Attempt 1</option>' in latest and "All attempts" in latest


def test_timeline_events_are_interleaved_with_the_lines_by_time_on_request(browser: Client) -> None:
    run = retried(executed("test-panel-retried", max_attempts=2))
    assert "log-event" not in panel(browser, run, attempt="all")
    html = panel(browser, run, attempt="all", events="1")
    kinds = re.findall(r'class="log-line (log-event|log-error)"', html)
    # created, dequeued, executing, then the first line; the retry's events before the second.
    assert kinds.index("log-error") > kinds.index("log-event")
    assert kinds[-1] == "log-event"  # the run failed after its last line
    assert "Executing → Queued" in html or "Executing → Failed" in html
    first_line, second_line = [m.start() for m in re.finditer('class="log-line log-error"', html)]
    assert "Dequeued → Executing" in html[first_line:second_line]  # the second attempt began


@override_settings(RUNYARD_LOG_MAX_LINES=5)
def test_an_attempt_past_its_limit_shows_how_many_lines_were_dropped(browser: Client) -> None:
    run = executed("test-panel-many", {"n": 12})
    html = panel(browser, run)
    assert "Attempt 1: 7 lines were dropped (limit 5 lines or 5 MB per attempt)." in html


def test_an_empty_log_says_so_while_running_and_once_final(browser: Client) -> None:
    quiet = executed("test-panel-silent")
    assert quiet.status == RunStatus.COMPLETED
    assert "This run logged nothing." in panel(browser, quiet)
    waiting = factories.run("test-panel-silent")
    assert "No log lines yet." in panel(browser, waiting)


def test_a_long_log_shows_its_newest_page_and_loads_earlier_pages(browser: Client) -> None:
    run = executed("test-panel-many", {"n": logs.PAGE_SIZE + 20})
    html = panel(browser, run)
    messages = shown_messages(html)
    assert len(messages) == logs.PAGE_SIZE
    assert messages[0] == "line 20" and messages[-1] == f"line {logs.PAGE_SIZE + 19}"
    earlier = re.search(r'hx-get="([^"]*before=[^"]*)"', html)
    assert earlier is not None and "Load earlier lines" in html
    response = browser.get(earlier.group(1).replace("&amp;", "&"), HTTP_HX_REQUEST="true")
    rows = response.content.decode()
    assert shown_messages(rows) == [f"line {n}" for n in range(20)]
    assert "Load earlier lines" not in rows


def test_the_tail_gives_only_the_lines_after_the_cursor_with_the_filters(browser: Client) -> None:
    run = executed("test-panel-mixed")
    response = browser.get(f"/runs/{run.id}/logs/tail/", {"after": "1.2", "level": "WARNING"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert [m.split("\n")[0] for m in shown_messages(html)] == ["charge failed"]
    assert '<input type="hidden" id="run-logs-after" name="after" value="1.4" hx-swap-oob="true">' in html
    assert '<div id="run-logs-summary" class="log-summary" hx-swap-oob="true">' in html
    assert browser.get(f"/runs/{run.id}/logs/tail/", {"after": "1.4"}).content.count(b"log-line") == 0


def test_the_tail_sends_nothing_while_the_user_does_not_follow(browser: Client) -> None:
    run = executed("test-panel-mixed")
    response = browser.get(f"/runs/{run.id}/logs/tail/?after=1.1&follow=0", HTTP_HX_REQUEST="true")
    assert response.status_code == 204


def test_the_tail_redraws_the_panel_when_a_new_attempt_began(browser: Client) -> None:
    run = retried(executed("test-panel-retried", max_attempts=2))
    response = browser.get(f"/runs/{run.id}/logs/tail/", {"after": "1.1"}, HTTP_HX_REQUEST="true")
    assert response["HX-Retarget"] == "#run-logs" and response["HX-Reswap"] == "outerHTML"
    assert re.findall(r'id="log-(\d+)-\d+"', response.content.decode()) == ["2"]


def test_the_log_download_is_every_line_as_text_named_after_the_run(browser: Client) -> None:
    run = executed("test-panel-many", {"n": logs.PAGE_SIZE + 3})
    response = browser.get(f"/runs/{run.id}/logs/download.log", {"attempt": "all"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{run.id}.log"'
    text = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    lines = text.splitlines()
    assert len(lines) == logs.PAGE_SIZE + 3
    assert lines[0] == logs.as_text(logs.lines(run.id)[0])
    assert lines[-1].endswith(f"INFO     [tests.panel] line {logs.PAGE_SIZE + 2}")


def test_the_json_lines_download_of_one_attempt_has_one_object_per_line(browser: Client) -> None:
    run = retried(executed("test-panel-retried", max_attempts=2))
    response = browser.get(f"/runs/{run.id}/logs/download.jsonl", {"attempt": "2"})
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{run.id}-attempt-2.jsonl"'
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]  # type: ignore[attr-defined]
    assert rows == [logs.as_json(line) for line in logs.lines(run.id, logs.LineFilter(attempt=2))]
    assert [(row["attempt"], row["level"], row["message"]) for row in rows] == [(2, "ERROR", "attempt failing")]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"attempt": "abc"}, "attempt:"),
        ({"attempt": "-1"}, "attempt:"),
        ({"level": "LOUD"}, "level:"),
        ({"q": "x" * 10_000}, "q:"),
        ({"before": "soon"}, "before:"),
        ({"until": "yesterday", "before": "1.2"}, "until:"),
    ],
)
@pytest.mark.parametrize("path", ["logs/", "logs/tail/", "logs/download.log", "logs/download.jsonl"])
def test_bad_parameters_are_a_400_naming_the_parameter(
    browser: Client, query: dict[str, str], named: str, path: str
) -> None:
    run = factories.run("test-panel-silent")
    response = browser.get(f"/runs/{run.id}/{path}", query)
    if path != "logs/" and named in ("before:", "until:"):
        assert response.status_code in (200, 204)  # not a parameter of these
        return
    assert response.status_code == 400
    assert named in response.content.decode()


@pytest.mark.parametrize("path", ["logs/", "logs/tail/", "logs/download.log", "logs/download.jsonl"])
def test_another_environments_run_is_a_404(browser: Client, path: str) -> None:
    elsewhere = executed("test-panel-mixed", env="prod")
    response = browser.get(f"/runs/{elsewhere.id}/{path}", {"env": "dev"})
    assert response.status_code == 404
    assert b"starting order" not in response.content


@pytest.mark.parametrize("path", ["logs/", "logs/tail/", "logs/download.log", "logs/download.jsonl"])
def test_a_user_who_may_not_view_runs_is_refused(client: Client, dev: Environment, path: str) -> None:
    run = executed("test-panel-mixed")
    group, _ = Group.objects.get_or_create(name="Nobody")
    group.permissions.add(Permission.objects.get(content_type__app_label="runs", codename="view_payload"))
    user = User.objects.create_user(username="nina", password=None)
    user.groups.add(group)
    client.force_login(user)
    response = client.get(f"/runs/{run.id}/{path}")
    assert response.status_code == 403
    assert b"starting order" not in response.content


def test_the_tail_of_a_run_that_ended_silent_says_it_logged_nothing(browser: Client) -> None:
    run = factories.run("test-panel-silent")
    assert "No log lines yet." in panel(browser, run)
    engine.admit(now=run.created_at)
    worker.execute(run_id=run.id, hostname="w1")
    response = browser.get(f"/runs/{run.id}/logs/tail/", {"after": ""}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert '<div id="run-logs-summary" class="log-summary" hx-swap-oob="true">' in html
    assert "This run logged nothing." in html


@pytest.mark.parametrize("path", ["logs/", "logs/tail/", "logs/download.log", "logs/download.jsonl"])
def test_a_user_who_may_not_see_payloads_sees_no_lines(client: Client, dev: Environment, path: str) -> None:
    # What a task logs often holds its payload: hello-world greets the name it was given.
    run = executed("hello-world", {"name": "secret-name"})
    group, _ = Group.objects.get_or_create(name="Support")
    group.permissions.add(Permission.objects.get(content_type__app_label="runs", codename="view_run"))
    user = User.objects.create_user(username="sam", password=None)
    user.groups.add(group)
    client.force_login(user)
    page = client.get(f"/runs/{run.id}/").content.decode()
    assert "secret-name" not in page
    assert "Hidden: your role cannot see payloads." in page[page.index('id="run-logs"') :]
    response = client.get(f"/runs/{run.id}/{path}")
    assert response.status_code == 403
    assert b"runs.view_payload" in response.content and b"secret-name" not in response.content


@pytest.mark.parametrize("path", ["logs/", "logs/tail/", "logs/download.log"])
def test_the_logs_answer_only_reads(browser: Client, path: str) -> None:
    run = executed("test-panel-mixed")
    assert browser.post(f"/runs/{run.id}/{path}").status_code == 405
