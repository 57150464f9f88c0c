"""The queues page shows a queue's pause and limit override; operators pause, resume, override
and reset there, through the engine (which audits)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from runs import engine
from runs.models import AuditEntry, Environment, Queue
from tests import factories

pytestmark = pytest.mark.django_db


def login(username: str, group: str) -> Client:
    factories.roles()
    user = User.objects.create_user(username=username, password=None)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator(dev: Environment) -> Client:
    return login("olga", "Operators")


@pytest.fixture
def viewer(dev: Environment) -> Client:
    return login("vic", "Viewers")


@pytest.fixture
def queue(dev: Environment) -> Queue:
    """task/limited (limit 2) with two queued runs."""
    factories.task_definition("limited", concurrency_limit=2)
    factories.run("limited")
    factories.run("limited")
    return Queue.objects.get(environment=dev, name="task/limited")


def url(queue: Queue, action: str) -> str:
    return f"/queues/{queue.pk}/{action}/?env=dev"


def row(html: str, name: str) -> str:
    match = re.search(rf'<tbody[^>]*data-queue="{re.escape(name)}">(.*?)</tbody>', html, re.S)
    assert match, f"no row for {name}"
    return match.group(1)


def test_a_paused_queue_shows_who_paused_it_since_when_why_and_the_runs_it_holds(
    operator: Client, queue: Queue
) -> None:
    engine.pause_queue(queue_id=queue.pk, actor="user:olga", reason="db migration")
    html = row(operator.get("/queues/?env=dev").content.decode(), "task/limited")
    assert "data-paused" in html
    found = re.search(r"<p[^>]*data-paused-detail>(.*?)</p>", html, re.S)
    assert found
    detail = " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())
    assert "Paused by olga since" in detail and "db migration" in detail and "2 runs held" in detail
    assert 'id="q-' in html and "-resume" in html and '-pause"' not in html


def test_an_override_shows_beside_the_base_limit(operator: Client, queue: Queue) -> None:
    engine.override_queue_limit(queue_id=queue.pk, limit=5, actor="user:olga")
    html = row(operator.get("/queues/?env=dev").content.decode(), "task/limited")
    limit_cell = re.search(r'<td class="num cell-limit">(.*?)</td>', html, re.S)
    assert limit_cell and limit_cell.group(1).startswith("5") and "override of 2" in limit_cell.group(1)
    assert "Limit 5 set by <strong>olga</strong>" in html and "Reset to 2" in html


def test_an_operator_pauses_and_resumes_from_the_page_and_both_are_audited(operator: Client, queue: Queue) -> None:
    response = operator.post(url(queue, "pause"), {"reason": "incident 7"})
    assert response.status_code == 302 and response["Location"] == "/queues/?env=dev"
    queue.refresh_from_db()
    assert queue.paused_by == "user:olga" and queue.pause_reason == "incident 7"
    assert operator.post(url(queue, "resume"), {}).status_code == 302
    queue.refresh_from_db()
    assert queue.paused_at is None
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "username", "user__username", "reason"))
    assert entries == [("queue.pause", "olga", "olga", "incident 7"), ("queue.resume", "olga", "olga", "")]


def test_an_operator_overrides_and_resets_the_limit(operator: Client, queue: Queue) -> None:
    assert operator.post(url(queue, "override"), {"limit": "7"}).status_code == 302
    queue.refresh_from_db()
    assert (queue.limit_override, queue.limit_overridden_by) == (7, "user:olga")
    assert operator.post(url(queue, "reset"), {}).status_code == 302
    queue.refresh_from_db()
    assert queue.limit_override is None and queue.concurrency_limit == 2
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "queue.limit_override",
        "queue.limit_reset",
    ]


@pytest.mark.parametrize("limit", ["", "x", "-1", "2.5", "100001"])
def test_a_bad_limit_is_shown_beside_its_input_and_changes_nothing(operator: Client, queue: Queue, limit: str) -> None:
    response = operator.post(url(queue, "override"), {"limit": limit})
    assert response.status_code == 422
    assert "Limit must be a whole number from 0 to 100000" in response.content.decode()
    queue.refresh_from_db()
    assert queue.limit_override is None and not AuditEntry.objects.exists()


def test_viewers_see_no_controls_and_get_403(viewer: Client, queue: Queue) -> None:
    html = row(viewer.get("/queues/?env=dev").content.decode(), "task/limited")
    assert "<form" not in html
    for action in ("pause", "resume", "override", "reset"):
        assert viewer.post(url(queue, action), {"limit": "3"}).status_code == 403
    queue.refresh_from_db()
    assert queue.paused_at is None and queue.limit_override is None


def test_a_queue_of_another_environment_or_an_unknown_action_is_not_found(
    operator: Client, queue: Queue, prod: Environment
) -> None:
    assert operator.post(f"/queues/{queue.pk}/pause/?env=prod", {}).status_code == 404
    assert operator.post(url(queue, "explode"), {}).status_code == 404
    assert operator.get(url(queue, "pause")).status_code == 405
    queue.refresh_from_db()
    assert queue.paused_at is None
