"""The schedules pages: the list with each schedule's cron in words and next ticks, a schedule's
page with its ticks and runs, and the operators' forms and buttons, which go through the
engine (it audits)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.test import Client

from runs import engine
from runs.filters import RunFilters
from runs.models import AuditEntry, BulkAction, Environment, Run, Schedule, ScheduleTick, ScheduleType
from runs.schedule_spec import ScheduleSpec
from tests import factories

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # a Saturday


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


@pytest.fixture(autouse=True)
def frozen() -> object:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def make(env: Environment, task: str = "report", cron: str = "0 9 * * 1-5", **fields: object) -> Schedule:
    spec = ScheduleSpec(task_id=task, cron=cron, **fields)  # type: ignore[arg-type]
    return engine.create_schedule(environment=env, spec=spec, actor="user:seed")[0]


def declared(env: Environment) -> Schedule:
    spec = ScheduleSpec(task_id="nightly", cron="@daily", deduplication_key="declared:nightly")
    return engine.create_schedule(environment=env, spec=spec, actor="worker", type=ScheduleType.DECLARATIVE)[0]


def text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def row(html: str, schedule: Schedule) -> str:
    match = re.search(rf'<tr id="{schedule.id}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row for {schedule.id}"
    return match.group(1)


def form(**changes: str) -> dict[str, str]:
    return {
        "task": "report",
        "cron": "*/15 * * * *",
        "timezone": "Europe/Paris",
        "external_id": "",
        "deduplication_key": "",
        "payload": "",
        "options": "",
        "overlap": "allow",
        "missed": "once",
        "active": "on",
        **changes,
    }


# --- the list ---------------------------------------------------------------------------


def test_the_list_shows_cron_in_words_time_zone_and_the_next_five_ticks(viewer: Client, dev: Environment) -> None:
    schedule = make(dev, timezone="Europe/Paris", external_id="customer-7")
    html = row(viewer.get("/schedules/?env=dev").content.decode(), schedule)
    words = text(html)
    assert "At 09:00 AM, Monday through Friday" in words
    assert "0 9 * * 1-5 · Europe/Paris" in words and "customer-7" in words and "imperative" in words
    # 09:00 in Paris is 08:00 UTC in winter: Monday 30 November to Friday 4 December.
    times = re.findall(r'<time datetime="([^"]+)"', html)
    assert times == [f"2026-{day}T08:00:00+00:00" for day in ("11-30", "12-01", "12-02", "12-03", "12-04")]
    assert "Mon 09:00 Europe/Paris" in words
    assert "Active" in words and "not yet" in words


def test_an_inactive_schedule_has_no_next_ticks(viewer: Client, dev: Environment) -> None:
    schedule = make(dev, active=False)
    html = row(viewer.get("/schedules/?env=dev").content.decode(), schedule)
    assert "Inactive" in text(html) and "none while inactive" in text(html) and "<time" not in html


def test_the_list_shows_the_last_run_with_its_status_and_links_it(viewer: Client, dev: Environment) -> None:
    schedule = make(dev)
    run = factories.run("report")
    Schedule.objects.filter(pk=schedule.pk).update(last_run_id=run.id, last_fired_at=T0)
    html = row(viewer.get("/schedules/?env=dev").content.decode(), schedule)
    assert f'href="/runs/{run.id}/"' in html and 'data-status="QUEUED"' in html


def test_the_list_shows_only_the_current_environment_and_pages(
    viewer: Client, dev: Environment, prod: Environment
) -> None:
    elsewhere = make(prod)
    mine = [make(dev, cron=f"{minute} * * * *") for minute in range(51)]
    first = viewer.get("/schedules/?env=dev").content.decode()
    assert elsewhere.id not in first
    assert first.count("data-schedule=") == 50 and "Page 1 of 2" in first
    second = viewer.get("/schedules/?env=dev&page=2").content.decode()
    shown = re.findall(r'data-schedule="([^"]+)"', first + second)
    assert sorted(shown) == sorted(s.id for s in mine)


def test_the_environment_switcher_opens_the_schedules_of_the_other_environment(
    viewer: Client, dev: Environment, prod: Environment
) -> None:
    html = viewer.get("/schedules/?env=dev").content.decode()
    assert 'href="/schedules/?env=prod"' in html


def test_viewers_see_no_buttons(viewer: Client, dev: Environment) -> None:
    schedule = make(dev)
    assert "New schedule" not in viewer.get("/schedules/?env=dev").content.decode()
    page = viewer.get(f"/schedules/{schedule.id}/?env=dev").content.decode()
    assert "<form" not in page.split('id="main"')[1] and "Run now" not in page


# --- the schedule's page ----------------------------------------------------------------


def test_the_page_shows_fired_and_skipped_ticks_and_the_schedules_runs(viewer: Client, dev: Environment) -> None:
    schedule = make(dev)
    fired = factories.run("report")
    other = factories.run("report")
    Run.objects.filter(pk__in=[fired.id, other.id]).update(schedule_id=schedule.id)
    unrelated = factories.run("report")
    ScheduleTick.objects.create(schedule=schedule, at=T0 - timedelta(days=1), recorded_at=T0, run_id=fired.id)
    ScheduleTick.objects.create(
        schedule=schedule, at=T0 - timedelta(hours=1), recorded_at=T0, skipped="the previous run is unfinished"
    )
    html = viewer.get(f"/schedules/{schedule.id}/?env=dev").content.decode()
    ticks = text(re.search(r'<tbody id="schedule-ticks">(.*?)</tbody>', html, re.S).group(1))  # type: ignore[union-attr]
    assert ticks.index("Skipped the previous run is unfinished") < ticks.index(f"Fired {fired.id}")
    runs = re.search(r'<tbody id="schedule-runs">(.*?)</tbody>', html, re.S).group(1)  # type: ignore[union-attr]
    assert fired.id in runs and other.id in runs and unrelated.id not in runs
    assert f'href="/runs/?env=dev&amp;schedule={schedule.id}"' in html


def test_a_schedule_of_another_environment_or_a_bad_id_is_not_found(
    operator: Client, dev: Environment, prod: Environment
) -> None:
    schedule = make(prod)
    assert operator.get(f"/schedules/{schedule.id}/?env=dev").status_code == 404
    assert operator.get("/schedules/sched_unknown/?env=dev").status_code == 404
    assert operator.get("/schedules/a%20b/?env=dev").status_code == 404
    assert operator.post(f"/schedules/{schedule.id}/deactivate/?env=dev").status_code == 404
    assert operator.post(f"/schedules/{schedule.id}/explode/?env=prod").status_code == 404
    assert operator.get(f"/schedules/{schedule.id}/deactivate/?env=prod").status_code == 405


def test_the_runs_list_filters_by_schedule(viewer: Client, dev: Environment) -> None:
    schedule = make(dev)
    mine = factories.run("report")
    Run.objects.filter(pk=mine.id).update(schedule_id=schedule.id)
    other = factories.run("report")
    html = viewer.get(f"/runs/?env=dev&schedule={schedule.id}").content.decode()
    assert mine.id in html and other.id not in html
    assert f'href="/schedules/{schedule.id}/?env=dev"' in html  # "Open the schedule"
    refused = viewer.get("/runs/?env=dev&schedule=nope").content.decode()
    assert "Schedule ids start with sched_" in refused and other.id in refused


def test_the_schedule_filter_bounds_bulk_actions_and_the_live_list(operator: Client, dev: Environment) -> None:
    schedule = make(dev)
    mine = factories.run("report")
    Run.objects.filter(pk=mine.id).update(schedule_id=schedule.id)
    factories.run("report")
    body = {"action": "cancel", "scope": "matching", "schedule": schedule.id, "confirm": "1", "reason": "r"}
    assert operator.post("/runs/bulk/?env=dev", body).status_code == 303
    stored = BulkAction.objects.get().filters
    assert stored == {"schedule": [schedule.id]}
    filters = RunFilters.from_query(stored, T0)
    assert list(Run.objects.filter(filters.q()).values_list("id", flat=True)) == [mine.id]
    # The runs list's websocket scopes new and changed runs by q_except_status.
    assert list(Run.objects.filter(filters.q_except_status()).values_list("id", flat=True)) == [mine.id]


# --- create -----------------------------------------------------------------------------


def test_an_operator_creates_a_schedule_through_the_form_and_it_is_audited(operator: Client, dev: Environment) -> None:
    data = form(
        external_id="acme",
        deduplication_key="acme-report",
        payload='{"customer": "acme"}',
        options='{"tags": ["nightly"], "maxAttempts": 2}',
        overlap="skip",
    )
    response = operator.post("/schedules/new/?env=dev", data)
    schedule = Schedule.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/schedules/{schedule.id}/?env=dev"
    assert (schedule.task_id, schedule.cron, schedule.timezone) == ("report", "*/15 * * * *", "Europe/Paris")
    assert (schedule.external_id, schedule.deduplication_key, schedule.overlap) == ("acme", "acme-report", "skip")
    assert schedule.payload == {"customer": "acme"} and schedule.options == {"tags": ["nightly"], "maxAttempts": 2}
    assert schedule.active and schedule.next_fire_at == T0 + timedelta(minutes=15)
    assert schedule.created_by == "user:olga"
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.username, entry.user.username) == (  # type: ignore[union-attr]
        "schedule.create",
        schedule.id,
        "olga",
        "olga",
    )


def test_creating_with_an_existing_deduplication_key_updates_that_schedule(operator: Client, dev: Environment) -> None:
    operator.post("/schedules/new/?env=dev", form(deduplication_key="k"))
    operator.post("/schedules/new/?env=dev", form(deduplication_key="k", cron="@hourly"))
    assert Schedule.objects.get().cron == "@hourly"
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "schedule.create",
        "schedule.update",
    ]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"task": ""}, "task", "This field is required."),
        ({"cron": "* * *"}, "cron", "cron must have 5 fields"),
        ({"cron": "61 * * * *"}, "cron", "cron is not a valid expression"),
        ({"cron": "@often"}, "cron", "cron nickname must be one of"),
        ({"timezone": "Mars/Base"}, "timezone", "timezone &#x27;Mars/Base&#x27; is not an IANA time zone name"),
        ({"external_id": "x" * 257}, "external_id", "at most 256 characters"),
        ({"payload": "{nope"}, "payload", "payload is not valid JSON"),
        ({"payload": "[" * 5000 + "]" * 5000}, "payload", "nested deeper than"),
        ({"payload": '{"a": "\\ud800"}'}, "payload", "payload.a: contains a lone surrogate"),
        ({"payload": '"\\u0000"'}, "payload", "payload: contains a NUL character"),
        ({"options": "[1]"}, "options", "options must be a JSON object of trigger options"),
        ({"options": '{"delay": "1h"}'}, "options", "options.delay cannot be set on a schedule"),
        ({"options": '{"maxAttempts": 0}'}, "options", "options.maxAttempts must be an integer of at least 1"),
        ({"overlap": "sometimes"}, "overlap", "Select a valid choice."),
    ],
)
def test_each_bad_field_is_shown_beside_it_and_nothing_is_made(
    operator: Client, dev: Environment, changes: dict[str, str], field: str, message: str
) -> None:
    response = operator.post("/schedules/new/?env=dev", form(**changes))
    assert response.status_code == 422
    html = response.content.decode()
    error = re.search(rf'<p class="field-error" id="schedule-{field}-error">(.*?)</p>', html, re.S)
    assert error and message in error.group(1)
    assert not Schedule.objects.exists() and not AuditEntry.objects.exists()


def test_the_deduplication_key_of_a_declared_schedule_is_refused_beside_its_field(
    operator: Client, dev: Environment
) -> None:
    schedule = declared(dev)
    response = operator.post("/schedules/new/?env=dev", form(deduplication_key="declared:nightly"))
    assert response.status_code == 422
    assert f"Schedule {schedule.id} is declared by task nightly" in response.content.decode()
    assert 'id="schedule-deduplication_key-error"' in response.content.decode()
    assert Schedule.objects.get().cron == "@daily" and not AuditEntry.objects.filter(username="olga").exists()


def test_the_form_offers_known_tasks_and_time_zones(operator: Client, dev: Environment) -> None:
    factories.task_definition("billing.invoice")
    html = operator.get("/schedules/new/?env=dev").content.decode()
    assert '<option value="billing.invoice">' in html and '<option value="America/New_York">' in html


# --- edit, activate, deactivate, delete -------------------------------------------------


def test_an_operator_edits_a_schedule_and_its_deduplication_key_stays(operator: Client, dev: Environment) -> None:
    schedule = make(dev, deduplication_key="keep-me", payload={"a": 1})
    page = operator.get(f"/schedules/{schedule.id}/edit/?env=dev").content.decode()
    assert 'value="0 9 * * 1-5"' in page and "deduplication_key" not in page and "&quot;a&quot;: 1" in page
    response = operator.post(f"/schedules/{schedule.id}/edit/?env=dev", form(cron="@daily", payload=""))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.timezone, schedule.payload) == ("@daily", "Europe/Paris", None)
    assert schedule.deduplication_key == "keep-me"
    assert AuditEntry.objects.filter(action="schedule.update", target=schedule.id, username="olga").exists()


def test_a_bad_edit_changes_nothing(operator: Client, dev: Environment) -> None:
    schedule = make(dev)
    response = operator.post(f"/schedules/{schedule.id}/edit/?env=dev", form(timezone="Nowhere"))
    assert response.status_code == 422 and 'id="schedule-timezone-error"' in response.content.decode()
    schedule.refresh_from_db()
    assert schedule.timezone == "UTC" and not AuditEntry.objects.filter(action="schedule.update").exists()


def test_an_operator_deactivates_and_activates_and_both_are_audited(operator: Client, dev: Environment) -> None:
    schedule = make(dev)
    assert operator.post(f"/schedules/{schedule.id}/deactivate/?env=dev").status_code == 302
    schedule.refresh_from_db()
    assert not schedule.active and schedule.next_fire_at is None
    assert operator.post(f"/schedules/{schedule.id}/activate/?env=dev").status_code == 302
    schedule.refresh_from_db()
    assert schedule.active and schedule.next_fire_at is not None
    actions = AuditEntry.objects.filter(username="olga").order_by("id").values_list("action", flat=True)
    assert list(actions) == ["schedule.deactivate", "schedule.activate"]


def test_an_operator_deletes_a_schedule_and_its_runs_stay(operator: Client, dev: Environment) -> None:
    schedule = make(dev)
    run = factories.run("report")
    Run.objects.filter(pk=run.id).update(schedule_id=schedule.id)
    response = operator.post(f"/schedules/{schedule.id}/delete/?env=dev")
    assert response.status_code == 302 and response["Location"] == "/schedules/?env=dev"
    assert not Schedule.objects.exists() and Run.objects.get(pk=run.id).schedule_id == schedule.id
    assert AuditEntry.objects.filter(action="schedule.delete", target=schedule.id, username="olga").exists()


def test_a_declared_schedule_cannot_be_edited_or_deleted_here_but_can_be_deactivated(
    operator: Client, dev: Environment
) -> None:
    schedule = declared(dev)
    page = operator.get(f"/schedules/{schedule.id}/?env=dev").content.decode()
    assert "Declared in the task's code" in page and "schedule-edit" not in page and "schedule-delete" not in page
    assert "schedule-deactivate" in page and "schedule-run-now" in page
    for response in (
        operator.get(f"/schedules/{schedule.id}/edit/?env=dev"),
        operator.post(f"/schedules/{schedule.id}/edit/?env=dev", form()),
        operator.post(f"/schedules/{schedule.id}/delete/?env=dev"),
    ):
        assert response.status_code == 409 and "Declared in the task's code" in response.content.decode()
    assert Schedule.objects.get().cron == "@daily"
    assert operator.post(f"/schedules/{schedule.id}/deactivate/?env=dev").status_code == 302
    assert not Schedule.objects.get().active


def test_viewers_get_403_for_every_change(viewer: Client, dev: Environment) -> None:
    schedule = make(dev)
    assert viewer.get("/schedules/new/?env=dev").status_code == 403
    assert viewer.post("/schedules/new/?env=dev", form()).status_code == 403
    assert viewer.get(f"/schedules/{schedule.id}/edit/?env=dev").status_code == 403
    assert viewer.post(f"/schedules/{schedule.id}/edit/?env=dev", form(cron="@daily")).status_code == 403
    for action in ("activate", "deactivate", "delete", "run"):
        assert viewer.post(f"/schedules/{schedule.id}/{action}/?env=dev").status_code == 403
    schedule.refresh_from_db()
    assert schedule.active and schedule.cron == "0 9 * * 1-5"
    assert Schedule.objects.count() == 1 and not AuditEntry.objects.filter(username="vic").exists()


def test_run_now_triggers_the_task_as_a_tick_would_and_is_audited(operator: Client, dev: Environment) -> None:
    schedule = make(dev, payload={"customer": "acme"})
    response = operator.post(f"/schedules/{schedule.id}/run/?env=dev")
    assert response.status_code == 302 and response["Location"] == f"/schedules/{schedule.id}/?env=dev"
    run = Run.objects.get(schedule_id=schedule.id)
    assert run.task_identifier == "report"
    assert AuditEntry.objects.filter(target=schedule.id, username="olga").exists()
    schedule.refresh_from_db()
    assert schedule.next_fire_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # the next tick did not move
