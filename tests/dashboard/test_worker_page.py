"""A worker's page shows its state, the runs it executes and the attempts it ran; operators
drain and undrain it there (the engine audits); the workers page links it and badges a drain."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

import example_tasks  # noqa: F401 - registers the example tasks
from dashboard import worker_views
from runs import engine, registry, worker
from runs.models import AuditEntry, Environment, Run, Worker
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db

HOST = "celery@box-1"


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
def box(dev: Environment) -> Worker:
    return engine.register_worker(hostname=HOST, queues=["runyard.small-1x"], specs=list(registry.REGISTRY.values()))


def page(client: Client, hostname: str = HOST, query: str = "env=dev") -> str:
    response = client.get(f"/workers/{hostname}/?{query}")
    assert response.status_code == 200
    return response.content.decode()


def text_of(html: str, attribute: str) -> str:
    found = re.search(rf"<p[^>]*{attribute}[^>]*>(.*?)</p>", html, re.S)
    assert found, attribute
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def ran(hostname: str, task_id: str = "hello-world") -> Run:
    run = factories.run(task_id, payload={"name": "Ada"})
    engine.admit(now=timezone.now())
    worker.execute(run_id=run.id, hostname=hostname)
    run.refresh_from_db()
    return run


def executing(hostname: str) -> Run:
    run = factories.run("sleep", payload={"seconds": 1})
    engine.admit(now=timezone.now())
    assert engine.start_attempt(run_id=run.id, worker=hostname) is not None
    return run


def test_the_page_shows_the_queues_tasks_active_run_and_history_with_links(operator: Client, box: Worker) -> None:
    done = ran(HOST)
    busy = executing(HOST)
    html = page(operator)
    assert 'data-worker-status="online"' in html
    assert "runyard.small-1x" in html and '<span class="tag">hello-world</span>' in html
    assert f'data-active-run="{busy.id}"' in html and f'href="/runs/{busy.id}/"' in html
    assert f'data-attempt="{done.id}-1"' in html and f'href="/runs/{done.id}/"' in html
    history = html.split('id="worker-history-title"')[1]
    assert history.index(f"{busy.id}-1") < history.index(f"{done.id}-1")  # newest first


def test_the_history_pages_older_attempts_with_a_cursor(
    operator: Client, box: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_views, "HISTORY_SHOWN", 2)
    runs = [ran(HOST) for _ in range(3)]
    first = page(operator)
    assert f"{runs[2].id}-1" in first and f"{runs[1].id}-1" in first and f"{runs[0].id}-1" not in first
    cursor = re.search(r'before=([0-9.]+)"', first)
    assert cursor
    older = page(operator, query=f"env=dev&before={cursor.group(1)}")
    assert f"{runs[0].id}-1" in older and f"{runs[1].id}-1" not in older
    assert "Older" not in older.split('id="worker-history-title"')[1] and "Newest" in older


def test_a_bad_cursor_shows_the_newest_attempts(operator: Client, box: Worker) -> None:
    done = ran(HOST)
    assert f"{done.id}-1" in page(operator, query="env=dev&before=zzz.1")
    assert f"{done.id}-1" in page(operator, query="env=dev&before=99999999999999999999999.1")


def test_an_operator_drains_and_undrains_from_the_page_and_both_are_audited(operator: Client, box: Worker) -> None:
    assert 'id="worker-drain"' in page(operator)
    response = operator.post(f"/workers/{HOST}/drain/?env=dev", {"reason": "kernel upgrade"})
    assert response.status_code == 302 and response["Location"] == f"/workers/{HOST}/?env=dev"
    html = page(operator)
    assert 'data-worker-status="draining"' in html and 'id="worker-undrain"' in html
    detail = text_of(html, "data-draining-detail")
    assert "Draining since" in detail and "by olga" in detail and "kernel upgrade" in detail
    entry = AuditEntry.objects.get(action="worker.drain")
    assert (entry.username, entry.target, entry.reason) == ("olga", HOST, "kernel upgrade")
    assert operator.post(f"/workers/{HOST}/undrain/?env=dev").status_code == 302
    assert Worker.objects.get(hostname=HOST).draining_at is None
    assert AuditEntry.objects.filter(action="worker.undrain", username="olga").exists()
    assert 'data-worker-status="online"' in page(operator)


def test_a_reason_too_long_is_a_form_error_and_drains_nothing(operator: Client, box: Worker) -> None:
    response = operator.post(f"/workers/{HOST}/drain/?env=dev", {"reason": "x" * 501})
    assert response.status_code == 422
    assert "Reason must be at most 500 characters" in response.content.decode()
    assert Worker.objects.get(hostname=HOST).draining_at is None and not AuditEntry.objects.exists()


def test_viewers_see_no_buttons_and_get_403(viewer: Client, box: Worker) -> None:
    html = page(viewer)
    assert 'id="worker-drain"' not in html and "<form" not in html.split('id="worker-detail"')[1]
    for action in ("drain", "undrain"):
        assert viewer.post(f"/workers/{HOST}/{action}/?env=dev").status_code == 403
    assert Worker.objects.get(hostname=HOST).draining_at is None and not AuditEntry.objects.exists()


def test_unknown_workers_and_actions_are_not_found(operator: Client, box: Worker) -> None:
    assert operator.get("/workers/nobody@nowhere/?env=dev").status_code == 404
    assert operator.post("/workers/nobody@nowhere/drain/?env=dev").status_code == 404
    assert operator.post(f"/workers/{HOST}/explode/?env=dev").status_code == 404
    assert operator.get(f"/workers/{HOST}/drain/?env=dev").status_code == 405
    assert not AuditEntry.objects.exists()


def test_a_worker_that_shut_down_keeps_a_page_with_its_history_and_no_buttons(operator: Client, box: Worker) -> None:
    done = ran(HOST)
    engine.unregister_worker(hostname=HOST)
    html = page(operator)
    assert 'data-worker-status="gone"' in html and f"{done.id}-1" in html and 'id="worker-drain"' not in html


def test_a_draining_worker_not_seen_lately_shows_offline_too(operator: Client, box: Worker) -> None:
    engine.drain_worker(hostname=HOST, actor="user:olga")
    Worker.objects.filter(hostname=HOST).update(last_seen_at=timezone.now() - timedelta(hours=1))
    html = page(operator)
    assert 'data-worker-status="draining"' in html and "Offline" in html.split('id="worker-state-title"')[1]


def test_the_workers_page_links_each_worker_and_badges_a_drain(operator: Client, box: Worker) -> None:
    engine.register_worker(hostname="celery@box-2", queues=["runyard.small-1x"], specs=[])
    engine.drain_worker(hostname=HOST, actor="user:olga", reason="disk")
    html = operator.get("/workers/?env=dev").content.decode()
    rows = dict(re.findall(r'<tr class="worker-row[^"]*" data-worker="([^"]+)">(.*?)</tr>', html, re.S))
    assert f'href="/workers/{HOST}/?env=dev"' in rows[HOST] and "data-draining" in rows[HOST]
    assert "data-draining" not in rows["celery@box-2"]


def test_the_page_polls_and_answers_204_while_nothing_changed(operator: Client, box: Worker) -> None:
    poll = re.search(r'id="worker-detail" data-poll hx-get="([^"]+)"', page(operator))
    assert poll
    url = poll.group(1).replace("&amp;", "&")
    assert operator.get(url, HTTP_HX_REQUEST="true").status_code == 204
    engine.drain_worker(hostname=HOST, actor="user:olga")
    changed = operator.get(url, HTTP_HX_REQUEST="true")
    assert changed.status_code == 200 and 'data-worker-status="draining"' in changed.content.decode()


def test_the_drain_form_carries_a_csrf_token_and_a_post_without_one_is_refused(box: Worker) -> None:
    client = login("olga", "Operators")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.get(username="olga"))
    assert "csrfmiddlewaretoken" in page(client).split('id="worker-drain"')[0].rsplit("<form", 1)[1]
    assert strict.post(f"/workers/{HOST}/drain/?env=dev").status_code == 403
    assert Worker.objects.get(hostname=HOST).draining_at is None


def why(client: Client, run: Run) -> str:
    html = client.get(f"/runs/{run.id}/?env=dev").content.decode()
    if '<p class="run-why"' not in html:
        return ""
    start = html.index('<p class="run-why"')
    return " ".join(re.sub(r"<[^>]+>", " ", html[start : html.index("</p>", start)]).split())


def dequeued() -> Run:
    run = factories.run("hello-world", payload={"name": "Ada"})
    engine.admit(now=timezone.now())
    run.refresh_from_db()
    assert run.status == RunStatus.DEQUEUED
    return run


def test_a_sent_run_whose_only_worker_drains_says_so_on_its_page(operator: Client, box: Worker) -> None:
    run = dequeued()
    assert why(operator, run) == ""  # a worker may take it
    engine.drain_worker(hostname=HOST, actor="user:olga", reason="disk")
    text = why(operator, run)
    assert "Sent to Celery queue runyard.small-1x" in text and f"{HOST} (disk)" in text and "draining" in text
    engine.register_worker(hostname="celery@box-2", queues=["runyard.small-1x"], specs=[])
    assert why(operator, run) == ""  # another worker of the queue takes it


def test_a_sent_run_no_worker_consumes_says_so_on_its_page(operator: Client, dev: Environment) -> None:
    run = dequeued()
    assert "no worker online consumes it" in why(operator, run)
