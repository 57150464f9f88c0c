"""The run page says why a queued run does not start while its queue is paused, and counts the
queue's limit as an override sets it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from runs import engine
from runs.models import Environment, Queue, Run
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_user(username="ada", password="a-long-password-1"))
    return client


@pytest.fixture
def held(dev: Environment) -> Run:
    factories.task_definition("limited", concurrency_limit=2)
    factories.run("limited")
    return factories.run("limited")


def why(browser: Client, run: Run) -> str:
    html = browser.get(f"/runs/{run.id}/?env=dev").content.decode()
    start = html.index('<p class="run-why"')
    return " ".join(html[start : html.index("</p>", start)].split())


def queue_of(run: Run) -> Queue:
    return Queue.objects.get(environment_id=run.environment_id, name=run.queue)


def test_a_queued_run_of_a_paused_queue_says_who_paused_it_why_and_how_many_runs_wait(
    browser: Client, held: Run
) -> None:
    engine.pause_queue(queue_id=queue_of(held).pk, actor="user:olga", reason="database migration")
    text = why(browser, held)
    assert 'data-kind="paused"' in text
    assert "Queue <code>task/limited</code> is paused by user:olga since" in text
    assert ": database migration. It holds 2 queued runs." in text


def test_a_pause_with_a_resume_time_says_when_it_ends(browser: Client, held: Run) -> None:
    later = held.created_at + timedelta(hours=2)
    engine.pause_queue(queue_id=queue_of(held).pk, actor="user:olga", resume_at=later)
    assert f'resumes by itself at <time datetime="{later.isoformat()}"' in why(browser, held)


def test_after_resume_the_run_waits_for_admission_again(browser: Client, held: Run) -> None:
    queue = queue_of(held)
    engine.pause_queue(queue_id=queue.pk, actor="user:olga")
    engine.resume_queue(queue_id=queue.pk, actor="user:olga")
    assert 'data-kind="queued"' in why(browser, held)


def test_the_limit_shown_is_the_override_while_it_holds(browser: Client, held: Run) -> None:
    engine.override_queue_limit(queue_id=queue_of(held).pk, limit=7, actor="user:olga")
    assert "(limit 7, 0 running)" in why(browser, held)
