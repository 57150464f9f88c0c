"""The tasks list and the manual trigger page: every option reaches the run, errors sit next to their field."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pydantic import BaseModel, Field

from dashboard import task_views
from runs.models import AuditEntry, Queue, Run, RunEvent, TaskDefinition, Worker
from runs.registry import task
from tests import factories

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Signup(BaseModel):
    """A new user to welcome."""

    email: str = Field(description="Where the welcome goes")
    plan: str = Field(default="free", json_schema_extra={"enum": ["free", "pro"]})
    seats: int = Field(default=1, ge=1, le=50)
    newsletter: bool = False


@task(id="test-typed-signup", queue="signups")
def welcome(payload: Signup) -> str:
    return payload.email


def make_user(username: str, group: str | None) -> User:
    user = User.objects.create_user(username=username)  # no password: force_login, and no slow hashing
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def operator(client: Client, dev: Any) -> Client:
    client.force_login(make_user("otto", "Operators"))
    return client


@pytest.fixture
def viewer(client: Client, dev: Any) -> Client:
    client.force_login(make_user("vic", "Viewers"))
    return client


def field_error(page: str, input_id: str) -> str:
    """The text of the error shown under an input (by the input's id), or ""."""
    found = re.search(rf'id="{re.escape(input_id)}-error">(.*?)</p>', page, re.S)
    return html.unescape(found.group(1)).strip() if found else ""


def textarea(page: str, name: str) -> str:
    found = re.search(rf'<textarea[^>]*name="{re.escape(name)}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, f"no textarea {name}"
    return html.unescape(found.group(1))


# --- the tasks list --------------------------------------------------------------------------


def test_the_tasks_list_shows_defaults_workers_last_run_and_runs_of_the_last_day(operator: Client) -> None:
    now = timezone.now()
    Worker.objects.create(hostname="w-live@host", tasks=["hello-world"], started_at=now, last_seen_at=now)
    Worker.objects.create(
        hostname="w-gone@host", tasks=["hello-world"], started_at=now, last_seen_at=now - timedelta(minutes=10)
    )
    old = factories.run("hello-world")
    Run.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=2))
    factories.run("hello-world")
    last = factories.run("hello-world")
    factories.run("hello-world", env="prod")  # another environment: not counted
    # Defined after the runs: factories.run records a plain definition of its own.
    factories.task_definition("hello-world", queue="greetings", max_attempts=3, max_duration=600, machine="large-1x")
    dev = factories.environment("dev")
    Queue.objects.update_or_create(environment=dev, name="greetings", defaults={"concurrency_limit": 4})

    page = operator.get("/tasks/").content.decode()
    row = re.search(r'<tr id="task-hello-world".*?</tr>', page, re.S)
    assert row is not None
    cells = row.group(0)
    assert "greetings" in cells and "limit 4" in cells
    assert "large-1x" in cells and ">3<" in cells and "10m" in cells
    assert 'class="worker-chip worker-online"' in cells and "w-live@host" in cells
    assert "w-gone@host" in cells and "(offline)" in cells
    assert f'href="/runs/{last.id}/"' in cells
    assert re.search(r'cell-runs-24h">2<', cells)
    assert 'href="/tasks/hello-world/">Trigger<' in cells
    # Registered in this process only (no worker recorded it): still listed, marked typed.
    assert 'data-task="test-typed-signup"' in page and "this process only" in page


def test_the_runs_count_of_a_busy_task_is_bounded(operator: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_views, "COUNT_CAP", 2)
    for _ in range(3):
        factories.run("hello-world")
    page = operator.get("/tasks/").content.decode()
    assert re.search(r'cell-runs-24h">2\+<', page)


# --- triggering --------------------------------------------------------------------------------


EVERY_OPTION = {
    "payload_mode": "json",
    "payload": '{"name": "Ada", "n": [1, 2]}',
    "metadata": '{"customer": "acme"}',
    "delay": "1h30m",
    "ttl": "2h",
    "idempotencyKey": "order-42",
    "idempotencyKeyTTL": "1d",
    "debounce.key": "user-7",
    "debounce.delay": "5s",
    "debounce.mode": "trailing",
    "debounce.maxDelay": "1m",
    "queue": "manual",
    "queue.concurrencyLimit": "3",
    "concurrencyKey": "acme",
    "priority": "2.5",
    "maxAttempts": "4",
    "maxDuration": "300",
    "tags": "customer:acme, manual,\nurgent",
    "machine": "medium-2x",
    "region": "eu-west-1",
    "test": "true",
}


def test_every_option_of_the_form_reaches_the_run(operator: Client) -> None:
    factories.task_definition("hello-world")
    with time_machine.travel(NOW, tick=False):
        response = operator.post("/tasks/hello-world/?env=dev", EVERY_OPTION)
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.id}/"
    assert json.loads(run.payload) == {"name": "Ada", "n": [1, 2]}
    assert run.metadata == {"customer": "acme"}
    assert run.status == "DELAYED" and run.delay_until == NOW + timedelta(hours=1, minutes=30)
    assert run.ttl == 7200
    assert run.idempotency_key == "order-42" and run.idempotency_key_expires_at == NOW + timedelta(days=1)
    assert run.debounce == {"key": "user-7", "delay": 5, "mode": "trailing", "max_delay": 60}
    assert run.queue == "manual" and Queue.objects.get(name="manual").concurrency_limit == 3
    assert run.concurrency_key == "acme" and run.priority_ms == 2500
    assert run.max_attempts == 4 and run.max_duration == 300
    assert run.tags == ["customer:acme", "manual", "urgent"]
    assert run.machine == "medium-2x" and run.region == "eu-west-1"
    assert run.is_test is True and run.trigger_source == "dashboard"
    # Run.options holds what the API's body would have carried.
    assert run.options["queue"] == {"name": "manual", "concurrencyLimit": 3}
    assert run.options["priority"] == 2.5 and run.options["tags"] == ["customer:acme", "manual", "urgent"]
    assert RunEvent.objects.get(run=run).actor == "user:otto"
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.username) == ("run.trigger", run.id, "otto")
    assert entry.data["task"] == "hello-world" and entry.data["options"]["idempotencyKey"] == "order-42"


def test_an_empty_form_triggers_with_the_task_defaults(operator: Client) -> None:
    factories.task_definition("hello-world", queue="greetings", max_attempts=3, machine="large-1x")
    response = operator.post("/tasks/hello-world/", {"payload_mode": "json", "payload": ""})
    run = Run.objects.get()
    assert response.status_code == 302
    assert (run.queue, run.max_attempts, run.machine, run.payload, run.status) == (
        "greetings",
        3,
        "large-1x",
        "",
        "QUEUED",
    )
    assert run.options == {} and run.is_test is False


def test_a_repeated_idempotency_key_lands_on_the_first_run(operator: Client) -> None:
    factories.task_definition("hello-world")
    first = operator.post("/tasks/hello-world/", {"payload": "{}", "idempotencyKey": "once"})
    second = operator.post("/tasks/hello-world/", {"payload": "{}", "idempotencyKey": "once"})
    assert first["Location"] == second["Location"] and Run.objects.count() == 1
    assert [e.data["cached"] for e in AuditEntry.objects.order_by("id")] == [False, True]


@pytest.mark.parametrize(
    ("name", "value", "input_id", "message"),
    [
        ("payload", '{"name": "Ada",}', "opt-payload", "payload is not valid JSON: Expecting property name"),
        ("metadata", "{oops", "opt-metadata", "metadata is not valid JSON"),
        ("metadata", "[1, 2]", "opt-metadata", "options.metadata must be a JSON object"),
        ("delay", "-5m", "opt-delay", "Invalid delay '-5m'"),
        ("delay", "2001-01-01T00:00:00Z", "opt-delay", "is not in the future"),
        ("ttl", "ten minutes", "opt-ttl", 'options.ttl must be a duration like "10m"'),
        ("maxDuration", "1h", "opt-max_duration", "options.maxDuration must be a number of seconds"),
        ("maxAttempts", "0", "opt-max_attempts", "options.maxAttempts must be an integer of at least 1"),
        ("priority", "-1", "opt-priority", "options.priority must be a number of seconds from 0"),
        ("machine", "huge-9x", "opt-machine", "options.machine must be one of micro, small-1x"),
        ("tags", ",".join(f"t{i}" for i in range(11)), "opt-tags", "Too many tags: 11 given"),
        ("queue.concurrencyLimit", "-1", "opt-queue_limit", "must be an integer of 0 or more"),
        ("idempotencyKeyTTL", "forever", "opt-idempotency_key_ttl", "options.idempotencyKeyTTL must be a duration"),
        ("debounce.delay", "soon", "opt-debounce_delay", "options.debounce.delay must be a duration of at least 1s"),
    ],
)
def test_a_bad_field_is_refused_next_to_itself_keeping_what_was_typed(
    operator: Client, name: str, value: str, input_id: str, message: str
) -> None:
    factories.task_definition("hello-world")
    form = {"payload": '{"kept": true}', "concurrencyKey": "kept-key", name: value}
    if name.startswith("debounce."):
        form["debounce.key"] = "k"
    response = operator.post("/tasks/hello-world/", form)
    page = response.content.decode()
    assert response.status_code == 422
    assert message in field_error(page, input_id), field_error(page, input_id) or page
    assert Run.objects.count() == 0 and AuditEntry.objects.count() == 0
    assert 'value="kept-key"' in page
    assert textarea(page, "payload") == form["payload"]


def test_a_queue_limit_without_a_queue_name_is_reported_on_the_queue(operator: Client) -> None:
    factories.task_definition("hello-world")
    page = operator.post("/tasks/hello-world/", {"queue.concurrencyLimit": "2"}).content.decode()
    assert "options.queue.name is required with options.queue.concurrencyLimit" in field_error(page, "opt-queue")


def test_every_bad_field_is_reported_at_once(operator: Client) -> None:
    factories.task_definition("hello-world")
    response = operator.post("/tasks/hello-world/", {"delay": "later", "machine": "huge", "payload": "nope"})
    page = response.content.decode()
    assert response.status_code == 422
    assert field_error(page, "opt-delay") and field_error(page, "opt-machine") and field_error(page, "opt-payload")
    assert "3 fields need attention" in page


def test_an_unknown_task_is_a_404_page(operator: Client) -> None:
    response = operator.get("/tasks/no-such-task/")
    assert response.status_code == 404
    assert b"Task not found" in response.content and b"no-such-task" in response.content
    assert operator.post("/tasks/no-such-task/", {"payload": "{}"}).status_code == 404


def test_a_viewer_sees_the_form_read_only_and_may_not_trigger(viewer: Client) -> None:
    factories.task_definition("hello-world")
    page = viewer.get("/tasks/hello-world/").content.decode()
    assert '<fieldset class="trigger-fieldset" disabled>' in page
    assert "Trigger run</button>" not in page and "Operators group" in page
    response = viewer.post("/tasks/hello-world/", {"payload": "{}"})
    assert response.status_code == 403
    assert Run.objects.count() == 0 and AuditEntry.objects.count() == 0


def test_the_form_needs_its_csrf_token(dev: Any) -> None:
    factories.task_definition("hello-world")
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("otto", "Operators"))
    page = client.get("/tasks/hello-world/").content.decode()
    assert 'name="csrfmiddlewaretoken"' in page
    assert client.post("/tasks/hello-world/", {"payload": "{}"}).status_code == 403
    assert Run.objects.count() == 0


# --- start from a recent run -------------------------------------------------------------------


def test_starting_from_a_recent_run_fills_payload_and_metadata(operator: Client) -> None:
    older = factories.run("hello-world", payload={"name": "Grace"}, metadata={"from": "old"})
    page = operator.get("/tasks/hello-world/").content.decode()
    assert f'<option value="{older.id}">{older.id} · Queued' in page

    full = operator.get(f"/tasks/hello-world/?from_run={older.id}").content.decode()
    assert json.loads(textarea(full, "payload")) == {"name": "Grace"}
    assert json.loads(textarea(full, "metadata")) == {"from": "old"}
    assert f'<option value="{older.id}" selected>' in full

    partial = operator.get(f"/tasks/hello-world/?from_run={older.id}", HTTP_HX_REQUEST="true").content.decode()
    assert partial.startswith('<div id="task-editor"') and "<html" not in partial
    assert json.loads(textarea(partial, "payload")) == {"name": "Grace"}


def test_only_runs_of_this_task_in_this_environment_can_be_copied(operator: Client) -> None:
    factories.task_definition("hello-world")
    other_task = factories.run("sleep", payload={"seconds": 1})
    other_env = factories.run("hello-world", env="prod", payload={"secret": 1})
    for run in (other_task, other_env):
        page = operator.get(f"/tasks/hello-world/?from_run={run.id}").content.decode()
        assert f"No run {run.id} of hello-world" in page
        assert textarea(page, "payload") == "{}"


def test_a_typed_task_starts_from_a_run_in_its_typed_fields(operator: Client) -> None:
    run = factories.run("test-typed-signup", payload={"email": "ada@example.com", "seats": 7, "newsletter": True})
    page = operator.get(f"/tasks/test-typed-signup/?from_run={run.id}").content.decode()
    assert 'name="p.email" value="ada@example.com"' in page
    assert 'name="p.seats" value="7"' in page
    assert re.search(r'name="p.newsletter" value="true" checked', page)


# --- typed payloads ----------------------------------------------------------------------------


def test_a_typed_task_offers_fields_with_required_marks_defaults_and_descriptions(operator: Client) -> None:
    page = operator.get("/tasks/test-typed-signup/").content.decode()
    assert 'name="payload_mode" value="fields" checked' in page
    email = re.search(r'<div class="field" data-field="email".*?</div>', page, re.S)
    assert email is not None and 'title="required"' in email.group(0) and "Where the welcome goes" in email.group(0)
    seats = re.search(r'<div class="field" data-field="seats".*?</div>', page, re.S)
    assert seats is not None and 'type="number" step="1"' in seats.group(0) and 'min="1"' in seats.group(0)
    assert 'name="p.seats" value="1"' in page  # the default, filled in
    assert '<option value="pro">pro</option>' in page
    assert 'type="checkbox" id="tf-newsletter" name="p.newsletter"' in page
    assert "A new user to welcome." in page


def test_typed_fields_are_validated_by_the_model_next_to_each_field(operator: Client) -> None:
    form = {"payload_mode": "fields", "p.email": "", "p.plan": "pro", "p.seats": "99"}
    response = operator.post("/tasks/test-typed-signup/", form)
    page = response.content.decode()
    assert response.status_code == 422
    assert "less than or equal to 50" in field_error(page, "tf-seats")
    assert 'name="p.seats" value="99"' in page and Run.objects.count() == 0

    form = {
        "payload_mode": "fields",
        "p.email": "ada@example.com",
        "p.plan": "pro",
        "p.seats": "3",
        "p.newsletter": "true",
    }
    response = operator.post("/tasks/test-typed-signup/", form)
    run = Run.objects.get()
    assert response.status_code == 302
    assert json.loads(run.payload) == {"email": "ada@example.com", "plan": "pro", "seats": 3, "newsletter": True}


def test_a_typed_field_that_is_not_a_number_says_so(operator: Client) -> None:
    form = {"payload_mode": "fields", "p.email": "a@b.c", "p.seats": "many"}
    page = operator.post("/tasks/test-typed-signup/", form).content.decode()
    assert field_error(page, "tf-seats") == "must be a whole number"


def test_the_json_editor_of_a_typed_task_is_checked_too(operator: Client) -> None:
    response = operator.post("/tasks/test-typed-signup/", {"payload_mode": "json", "payload": '{"seats": "x"}'})
    error = field_error(response.content.decode(), "opt-payload")
    assert response.status_code == 422
    assert "payload.email: Field required" in error and "payload.seats" in error


SCHEMA_ONLY = {
    "type": "object",
    "title": "Report",
    "properties": {
        "day": {"type": "string", "description": "ISO date"},
        "format": {"$ref": "#/$defs/Format", "default": "pdf"},
        "copies": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "default": None},
    },
    "required": ["day"],
    "$defs": {"Format": {"enum": ["pdf", "csv"], "type": "string", "title": "Format"}},
}


def test_a_schema_recorded_by_a_worker_checks_payloads_without_the_task_code(operator: Client) -> None:
    factories.task_definition("remote-report", payload_schema=SCHEMA_ONLY)
    page = operator.get("/tasks/remote-report/").content.decode()
    assert '<option value="csv">csv</option>' in page and '<option value="pdf" selected>' in page

    form = {"payload_mode": "fields", "p.day": "", "p.format": "pdf", "p.copies": "0"}
    page = operator.post("/tasks/remote-report/", form).content.decode()
    assert field_error(page, "tf-copies") == "must be at least 1"
    assert Run.objects.count() == 0

    response = operator.post("/tasks/remote-report/", {"payload_mode": "json", "payload": '{"format": "xls"}'})
    error = field_error(response.content.decode(), "opt-payload")
    assert "payload.day is required" in error and 'payload.format must be one of "pdf", "csv"' in error

    form = {"payload_mode": "fields", "p.day": "2026-11-28", "p.format": "csv", "p.copies": ""}
    assert operator.post("/tasks/remote-report/", form).status_code == 302
    assert json.loads(Run.objects.get().payload) == {"day": "2026-11-28", "format": "csv"}


def test_the_recorded_schema_is_shown_on_the_tasks_list(operator: Client) -> None:
    factories.task_definition("remote-report", payload_schema=SCHEMA_ONLY)
    assert TaskDefinition.objects.get(task_id="remote-report").payload_schema == SCHEMA_ONLY
    row = re.search(r'<tr id="task-remote-report".*?</tr>', operator.get("/tasks/").content.decode(), re.S)
    assert row is not None and ">typed</span>" in row.group(0)


def test_regions_from_settings_are_offered_and_reach_the_run(operator: Client, settings: Any) -> None:
    settings.RUNYARD_REGIONS = ["eu-central-1", "us-east-1"]
    factories.task_definition("hello-world")
    page = operator.get("/tasks/hello-world/").content.decode()
    assert '<select id="opt-region" name="region"' in page
    assert '<option value="eu-central-1">eu-central-1</option>' in page
    operator.post("/tasks/hello-world/", {"payload": "{}", "region": "us-east-1"})
    assert Run.objects.get().region == "us-east-1"


def test_users_who_may_not_see_payloads_cannot_copy_one(client: Client, dev: Any) -> None:
    Group.objects.get(name="Viewers").permissions.clear()
    client.force_login(make_user("vic", "Viewers"))
    run = factories.run("hello-world", payload={"secret": "payload-marker-31"})
    page = client.get(f"/tasks/hello-world/?from_run={run.id}").content.decode()
    assert "payload-marker-31" not in page and 'id="from-run"' not in page


def test_the_tasks_list_counts_with_bounded_index_queries(operator: Client) -> None:
    for task_id in ("a-task", "b-task", "c-task"):
        factories.run(task_id)
    with CaptureQueriesContext(connection) as queries:
        assert operator.get("/tasks/").status_code == 200
    run_queries = [q["sql"] for q in queries.captured_queries if '"runs_run"' in q["sql"]]
    counts = [sql for sql in run_queries if "COUNT(" in sql.upper()]
    # Per task: its last run and its bounded count, both on (environment, task, created_at).
    assert len(counts) == 3 and all("LIMIT 10001" in sql for sql in counts)
    assert all('"runs_run"."task_identifier" = ' in sql for sql in run_queries)
