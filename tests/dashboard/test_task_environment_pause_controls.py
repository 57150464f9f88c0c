"""Operators pause a task (tasks page) or the environment (queues page, banner); the tasks page,
the queues page, the banner, the runs list and the run page say what a pause holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from runs import engine
from runs.models import AuditEntry, Environment, Queue, Run, TaskPause
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
def mailer(dev: Environment) -> list[Run]:
    return [factories.run("mailer"), factories.run("mailer")]


def text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def task_row(html: str, task_id: str) -> str:
    match = re.search(rf'<tr id="task-{task_id}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row for {task_id}"
    return match.group(1)


def local(at: datetime) -> str:
    """As a datetime-local input sends it: UTC, to the minute."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def test_an_operator_pauses_a_task_with_a_resume_time_and_the_tasks_page_shows_what_it_holds(
    operator: Client, mailer: list[Run]
) -> None:
    later = (timezone.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    response = operator.post("/tasks/mailer/pause/?env=dev", {"reason": "smtp down", "resume_at": local(later)})
    assert response.status_code == 302 and response["Location"] == "/tasks/?env=dev"
    pause = TaskPause.objects.get()
    assert (pause.paused_by, pause.pause_reason, pause.resume_at) == ("user:olga", "smtp down", later)
    row = task_row(operator.get("/tasks/?env=dev").content.decode(), "mailer")
    assert "data-paused" in row and 'id="task-mailer-resume"' in row
    assert "Paused by olga since" in text(row) and "smtp down" in text(row) and "2 runs held" in text(row)
    assert "resumes" in text(row)
    assert operator.post("/tasks/mailer/resume/?env=dev", {}).status_code == 302
    assert TaskPause.objects.get().paused_at is None
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "username", "user__username", "target"))
    assert entries == [("task.pause", "olga", "olga", "task:mailer"), ("task.resume", "olga", "olga", "task:mailer")]


@pytest.mark.parametrize(
    ("resume_at", "message"), [("yesterday", "Enter a date and time in UTC"), ("2020-01-01T00:00", "in the future")]
)
def test_a_bad_resume_time_is_shown_beside_the_task_form_and_changes_nothing(
    operator: Client, mailer: list[Run], resume_at: str, message: str
) -> None:
    response = operator.post("/tasks/mailer/pause/?env=dev", {"resume_at": resume_at})
    assert response.status_code == 422
    row = task_row(response.content.decode(), "mailer")
    assert message in row and 'aria-invalid="true"' in row
    assert not TaskPause.objects.exists() and not AuditEntry.objects.exists()


def test_viewers_get_no_pause_controls_and_403(viewer: Client, mailer: list[Run], dev: Environment) -> None:
    assert "<form" not in task_row(viewer.get("/tasks/?env=dev").content.decode(), "mailer")
    assert viewer.post("/tasks/mailer/pause/?env=dev", {}).status_code == 403
    assert viewer.post("/environment/pause/?env=dev", {}).status_code == 403
    dev.refresh_from_db()
    assert not TaskPause.objects.exists() and dev.paused_at is None


def test_an_unknown_task_or_action_is_not_found(operator: Client, mailer: list[Run]) -> None:
    assert operator.post("/tasks/nope/pause/?env=dev", {}).status_code == 404
    assert operator.post("/tasks/mailer/explode/?env=dev", {}).status_code == 404
    assert operator.post("/environment/explode/?env=dev", {}).status_code == 404


def test_a_paused_environment_has_a_banner_on_every_page_and_is_resumed_from_it(
    operator: Client, mailer: list[Run], dev: Environment
) -> None:
    response = operator.post("/environment/pause/?env=dev", {"reason": "freeze"})
    assert response.status_code == 302 and response["Location"] == "/queues/?env=dev"
    for page in ["/runs/?env=dev", "/tasks/?env=dev", "/queues/?env=dev", f"/runs/{mailer[0].id}/?env=dev"]:
        html = operator.get(page).content.decode()
        banner = re.search(r'<div class="paused-banner".*?</div>', html, re.S)
        assert banner, page
        assert f"{dev.name} is paused by olga since" in text(banner.group(0))
        assert "freeze" in banner.group(0) and "2 queued runs held" in text(banner.group(0))
        assert 'id="environment-resume"' in banner.group(0)
    assert 'id="environment-pause"' not in operator.get("/queues/?env=dev").content.decode()
    response = operator.post("/environment/resume/?env=dev", {"next": "/tasks/?env=dev"})
    assert response.status_code == 302 and response["Location"] == "/tasks/?env=dev"
    assert "paused-banner" not in operator.get("/runs/?env=dev").content.decode()
    assert list(AuditEntry.objects.order_by("id").values_list("action", "user__username")) == [
        ("environment.pause", "olga"),
        ("environment.resume", "olga"),
    ]


def test_the_environment_form_refuses_a_past_resume_time_and_a_foreign_next(
    operator: Client, mailer: list[Run], dev: Environment
) -> None:
    response = operator.post("/environment/pause/?env=dev", {"resume_at": "2020-01-01T00:00"})
    assert response.status_code == 422 and "in the future" in response.content.decode()
    dev.refresh_from_db()
    assert dev.paused_at is None and not AuditEntry.objects.exists()
    engine.pause_environment(environment_id=dev.pk, actor="user:olga")
    response = operator.post("/environment/resume/?env=dev", {"next": "https://evil.example/"})
    assert response["Location"] == "/queues/?env=dev"


def test_the_queue_forms_take_a_resume_time_and_an_expiry(
    operator: Client, mailer: list[Run], dev: Environment
) -> None:
    queue = Queue.objects.get(environment=dev, name="task/mailer")
    later = (timezone.now() + timedelta(hours=1)).replace(second=0, microsecond=0)
    assert operator.post(f"/queues/{queue.pk}/pause/?env=dev", {"resume_at": local(later)}).status_code == 302
    assert (
        operator.post(f"/queues/{queue.pk}/override/?env=dev", {"limit": "3", "until": local(later)}).status_code == 302
    )
    queue.refresh_from_db()
    assert (queue.resume_at, queue.limit_override, queue.limit_override_until) == (later, 3, later)
    response = operator.post(f"/queues/{queue.pk}/override/?env=dev", {"limit": "4", "until": "2020-01-01T00:00"})
    assert response.status_code == 422 and "in the future" in response.content.decode()
    queue.refresh_from_db()
    assert queue.limit_override == 3


def marker(html: str, run: Run) -> str | None:
    row = re.search(rf'<tr id="run-{run.id}".*?</tr>', html, re.S)
    assert row, run.id
    found = re.search(r'<span class="run-paused" data-paused="(\w+)"', row.group(0))
    return found.group(1) if found else None


def test_the_runs_list_marks_queued_runs_held_by_a_queue_task_or_environment_pause(
    operator: Client, dev: Environment
) -> None:
    by_task, by_queue, free = factories.run("mailer"), factories.run("reports"), factories.run("other")
    delayed = factories.run("mailer", delay_until=timezone.now() + timedelta(hours=1))
    engine.pause_task(environment_id=dev.pk, task_id="mailer", actor="user:olga")
    engine.pause_queue(queue_id=Queue.objects.get(environment=dev, name="task/reports").pk, actor="user:olga")
    html = operator.get("/runs/?env=dev").content.decode()
    assert [marker(html, run) for run in (by_task, by_queue, free, delayed)] == ["task", "queue", None, None]
    engine.pause_environment(environment_id=dev.pk, actor="user:olga")
    html = operator.get("/runs/?env=dev").content.decode()
    assert [marker(html, run) for run in (by_task, by_queue, free)] == ["environment"] * 3


@pytest.mark.parametrize("paused", ["task", "environment"])
def test_the_run_page_says_which_pause_holds_it_by_whom_and_since_when(
    operator: Client, mailer: list[Run], dev: Environment, paused: str
) -> None:
    if paused == "task":
        engine.pause_task(environment_id=dev.pk, task_id="mailer", actor="user:olga", reason="smtp down")
        expected = "Task mailer is paused by user:olga since"
    else:
        engine.pause_environment(environment_id=dev.pk, actor="user:olga", reason="smtp down")
        expected = "Environment dev is paused by user:olga since"
    html = operator.get(f"/runs/{mailer[0].id}/?env=dev").content.decode()
    start = html.index('<p class="run-why"')
    why = text(html[start : html.index("</p>", start)])
    assert expected in why and "smtp down. It holds 2 queued runs." in why


def test_the_task_page_shows_its_pause_and_resumes_it(operator: Client, mailer: list[Run], dev: Environment) -> None:
    engine.pause_task(environment_id=dev.pk, task_id="mailer", actor="user:olga", reason="smtp down")
    html = operator.get("/tasks/mailer/?env=dev").content.decode()
    panel = re.search(r'<div class="task-pause-panel" id="task-pause">(.*?)</div>', html, re.S)
    assert panel and "Paused by olga since" in text(panel.group(1)) and "2 runs held" in text(panel.group(1))
    assert 'action="/tasks/mailer/resume/?env=dev"' in panel.group(1)
