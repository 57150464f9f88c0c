"""Run actions and bulk actions through the dashboard's views: forms, errors, permissions, audit."""

from __future__ import annotations

import html as html_lib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard import actions
from runs import engine
from runs.engine.bulk import work_bulk_actions
from runs.filters import RunFilters
from runs.models import AuditEntry, BulkAction, Environment, Run, RunEvent
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
DEEP_JSON = "[" * 1000 + "]" * 1000


def make_user(username: str, *groups: str) -> User:
    user = User.objects.create_user(username=username, password=None)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    return user


@pytest.fixture
def operator(dev: Environment) -> Client:
    client = Client()
    client.force_login(make_user("olga", "Operators"))
    return client


@pytest.fixture
def viewer(dev: Environment) -> Client:
    client = Client()
    client.force_login(make_user("vic", "Viewers"))
    return client


def delayed_run(**options: Any) -> Run:
    return factories.run(delay_until=timezone.now() + timedelta(hours=1), **options)


def last_event(run: Run) -> RunEvent:
    event = RunEvent.objects.filter(run=run).last()
    assert event is not None
    return event


def field_error(html: str, field_id: str) -> str:
    """The error message shown next to the input `field_id` (fails when there is none)."""
    match = re.search(rf'<p class="field-error" id="{field_id}-error">([^<]*)</p>', html)
    assert match, f"no error next to {field_id}"
    return html_lib.unescape(match.group(1))


# --- buttons and permissions --------------------------------------------------------------


def action_links(html: str) -> list[str]:
    return re.findall(r'href="/runs/run_\w+/(cancel|reschedule|replay)/"', html)


def test_operators_see_only_the_actions_the_runs_status_allows(operator: Client) -> None:
    queued, delayed, finished = factories.run(), delayed_run(), factories.run()
    engine.cancel_run(run_id=finished.id, actor="test")
    assert action_links(operator.get(f"/runs/{queued.id}/").content.decode()) == ["cancel", "replay"]
    assert action_links(operator.get(f"/runs/{delayed.id}/").content.decode()) == ["cancel", "reschedule", "replay"]
    assert action_links(operator.get(f"/runs/{finished.id}/").content.decode()) == ["replay"]


def test_viewers_see_no_action_buttons(viewer: Client) -> None:
    run = delayed_run()
    assert action_links(viewer.get(f"/runs/{run.id}/").content.decode()) == []


@pytest.mark.parametrize("action", ["cancel", "reschedule", "replay"])
def test_viewers_get_403_and_change_nothing(viewer: Client, action: str) -> None:
    run = delayed_run()
    assert viewer.get(f"/runs/{run.id}/{action}/").status_code == 403
    body = {"reason": "x", "when": "now", "tags": "a"}
    assert viewer.post(f"/runs/{run.id}/{action}/", body).status_code == 403
    assert Run.objects.get(pk=run.id).status == RunStatus.DELAYED
    assert Run.objects.count() == 1 and not AuditEntry.objects.exists()


def test_bulk_actions_are_403_for_viewers(viewer: Client) -> None:
    run = factories.run()
    body = {"action": "cancel", "scope": "selected", "runs": [run.id], "reason": "x", "confirm": "1"}
    assert viewer.post("/runs/bulk/", body).status_code == 403
    assert not BulkAction.objects.exists()


def test_actions_need_the_csrf_token(dev: Environment) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("olga", "Operators"))
    run = factories.run()
    assert client.post(f"/runs/{run.id}/cancel/", {"reason": "x"}).status_code == 403
    page = client.get(f"/runs/{run.id}/cancel/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    response = client.post(f"/runs/{run.id}/cancel/", {"reason": "x", "csrfmiddlewaretoken": token.group(1)})
    assert response.status_code == 303
    # htmx requests carry the token in a header, from <body hx-headers>.
    header = re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"(\w+)\"\}'>", page)
    assert header is not None
    other = factories.run()
    response = client.post(f"/runs/{other.id}/cancel/", {"reason": "x"}, HTTP_X_CSRFTOKEN=header.group(1), **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == f"/runs/{other.id}/"


def test_a_run_of_another_environment_is_not_found(operator: Client, prod: Environment) -> None:
    run = factories.run(env="prod")
    response = operator.post(f"/runs/{run.id}/cancel/", {"reason": "x"})
    assert response.status_code == 404
    assert Run.objects.get(pk=run.id).status == RunStatus.QUEUED


# --- cancel -------------------------------------------------------------------------------


def test_the_cancel_form_is_a_dialog_for_htmx_and_a_page_without(operator: Client) -> None:
    run = factories.run()
    dialog = operator.get(f"/runs/{run.id}/cancel/", **HTMX).content.decode()
    assert dialog.lstrip().startswith("<dialog") and 'id="action-form"' in dialog
    page = operator.get(f"/runs/{run.id}/cancel/").content.decode()
    assert "<!doctype html>" in page and 'id="action-form"' in page and 'name="reason"' in page


def test_cancel_with_a_reason_lands_in_the_timeline_and_the_audit_log(operator: Client) -> None:
    run = factories.run()
    response = operator.post(f"/runs/{run.id}/cancel/", {"reason": "wrong customer"})
    assert (response.status_code, response["Location"]) == (303, f"/runs/{run.id}/")
    event = last_event(run)
    assert (event.to_status, event.actor, event.reason) == ("CANCELED", "user:olga", "wrong customer")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.reason, entry.username) == (
        "run.cancel",
        run.id,
        "wrong customer",
        "olga",
    )
    page = operator.get(f"/runs/{run.id}/").content.decode()
    assert "user:olga" in page and "wrong customer" in page


def test_an_htmx_cancel_sends_the_browser_to_the_run_page(operator: Client) -> None:
    run = factories.run()
    response = operator.post(f"/runs/{run.id}/cancel/", {"reason": ""}, **HTMX)
    assert response["HX-Redirect"] == f"/runs/{run.id}/"
    assert last_event(run).reason == "canceled"


def test_canceling_a_finished_run_says_so(operator: Client) -> None:
    run = factories.run()
    engine.cancel_run(run_id=run.id, actor="test")
    page = operator.get(f"/runs/{run.id}/cancel/", **HTMX).content.decode()
    assert "a finished run cannot be canceled" in page and 'type="submit"' not in page
    response = operator.post(f"/runs/{run.id}/cancel/", {"reason": "again"}, **HTMX)
    assert response.status_code == 422
    assert "a finished run cannot be canceled" in response.content.decode()
    assert not AuditEntry.objects.filter(username="olga").exists()  # only the setup's own cancel


def test_a_too_long_reason_is_refused_next_to_the_field(operator: Client) -> None:
    run = factories.run()
    response = operator.post(f"/runs/{run.id}/cancel/", {"reason": "x" * 501}, **HTMX)
    assert response.status_code == 422
    assert "at most 500 characters" in field_error(response.content.decode(), "action-reason")
    assert Run.objects.get(pk=run.id).status == RunStatus.QUEUED


# --- reschedule ---------------------------------------------------------------------------


def test_reschedule_by_a_duration(operator: Client) -> None:
    run = delayed_run()
    before = timezone.now()
    response = operator.post(f"/runs/{run.id}/reschedule/", {"when": "delay", "delay": "1h30m", "reason": "later"})
    assert response.status_code == 303
    run.refresh_from_db()
    assert run.delay_until is not None
    assert before + timedelta(minutes=90) <= run.delay_until <= timezone.now() + timedelta(minutes=90)
    event = last_event(run)
    assert event.actor == "user:olga" and event.reason.endswith(": later")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.reason, entry.data["to"]) == ("run.reschedule", "later", run.delay_until.isoformat())


def test_reschedule_to_a_date_and_time_in_utc(operator: Client) -> None:
    run = delayed_run()
    at = (timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0, tzinfo=UTC)
    body = {"when": "at", "at": at.strftime("%Y-%m-%dT%H:%M")}
    assert operator.post(f"/runs/{run.id}/reschedule/", body).status_code == 303
    assert Run.objects.get(pk=run.id).delay_until == at


def test_reschedule_to_now_queues_the_run_at_once(operator: Client) -> None:
    run = delayed_run()
    response = operator.post(f"/runs/{run.id}/reschedule/", {"when": "now", "reason": "customer waiting"}, **HTMX)
    assert response["HX-Redirect"] == f"/runs/{run.id}/"
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.queued_at is not None
    event = last_event(run)
    assert (event.from_status, event.to_status, event.actor) == ("DELAYED", "QUEUED", "user:olga")
    assert "customer waiting" in event.reason
    assert AuditEntry.objects.get().data["to"] == "now"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"when": "delay", "delay": "soon"}, "reschedule-delay", "Invalid delay 'soon'"),
        ({"when": "delay", "delay": ""}, "reschedule-delay", "Enter a delay"),
        ({"when": "at", "at": "2001-01-01T10:00"}, "reschedule-at", "in the future"),
        ({"when": "at", "at": "next week"}, "reschedule-at", "in the future"),
        ({"when": "someday"}, "reschedule-when", "Choose when the run starts"),
    ],
)
def test_bad_reschedule_input_is_shown_next_to_its_field(
    operator: Client, body: dict[str, str], field: str, message: str
) -> None:
    run = delayed_run()
    response = operator.post(f"/runs/{run.id}/reschedule/", body, **HTMX)
    assert response.status_code == 422
    html = response.content.decode()
    assert html.startswith('<form id="action-form"')  # the form alone, swapped into the dialog
    assert message in field_error(html, field)
    assert Run.objects.get(pk=run.id).delay_until == run.delay_until
    assert not AuditEntry.objects.exists()


def test_a_run_that_is_no_longer_delayed_cannot_be_rescheduled(operator: Client) -> None:
    run = factories.run()
    response = operator.post(f"/runs/{run.id}/reschedule/", {"when": "delay", "delay": "1h"})
    assert response.status_code == 422
    assert "Only a delayed run can be rescheduled" in response.content.decode()


# --- replay -------------------------------------------------------------------------------


def replay_form(client: Client, run: Run) -> dict[str, str]:
    """The replay form's inputs as the page fills them in."""
    html = client.get(f"/runs/{run.id}/replay/").content.decode()
    values = dict(re.findall(r'<input[^>]* name="(\w+)" value="([^"]*)"', html))
    for name in ("payload", "metadata"):
        match = re.search(rf'name="{name}"[^>]*>([^<]*)</textarea>', html)
        values[name] = match.group(1).replace("&quot;", '"').replace("&#x27;", "'") if match else ""
    machine = re.search(r'<option value="([^"]+)" selected>', html)
    values["machine"] = machine.group(1) if machine else ""
    values.pop("csrfmiddlewaretoken", None)
    return values


def test_the_replay_form_starts_from_the_originals_values(operator: Client) -> None:
    run = factories.run(payload={"order": 7}, tags=["a", "b"], metadata={"m": 1})
    values = replay_form(operator, run)
    assert json.loads(values["payload"]) == {"order": 7}
    assert json.loads(values["metadata"]) == {"m": 1}
    assert (values["tags"], values["queue"], values["machine"]) == ("a, b", run.queue, run.machine)


def test_replay_with_edits_makes_a_new_run_linked_back(operator: Client) -> None:
    original = factories.run(payload={"order": 7}, tags=["a"], metadata={"m": 1})
    values = replay_form(operator, original)
    values |= {
        "payload": '{"order": 8}',
        "tags": "a, retried",
        "machine": "large-1x",
        "delay": "10m",
        "reason": "fixed",
    }
    response = operator.post(f"/runs/{original.id}/replay/", values)
    replay = Run.objects.get(replayed_from=original)
    assert (response.status_code, response["Location"]) == (303, f"/runs/{replay.id}/")
    assert factories.decode_output(Run(output=replay.payload, output_type=replay.payload_type)) == {"order": 8}
    assert (replay.tags, replay.machine, replay.metadata, replay.status) == (
        ["a", "retried"],
        "large-1x",
        {"m": 1},
        "DELAYED",
    )
    assert replay.queue == original.queue
    event = last_event(replay)
    assert (event.actor, event.reason) == ("user:olga", f"replay of {original.id}: fixed")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.data["replay"]) == ("run.replay", original.id, replay.id)
    assert entry.data["changed"] == ["payload", "delay", "machine", "tags"]
    page = operator.get(f"/runs/{replay.id}/").content.decode()
    assert re.search(
        rf'Replayed from</dt>\s*<dd><span class="run-link"><a class="mono" href="/runs/{original.id}/">', page
    )


def test_an_unchanged_replay_keeps_the_original_exactly(operator: Client) -> None:
    original = factories.run(payload={"at": "2026-01-01"}, tags=["a"])
    # SuperJSON meta the form cannot show must survive a replay that does not touch the payload.
    payload = json.dumps({"json": {"at": "2026-01-01"}, "meta": {"values": {"at": ["Date"]}}})
    Run.objects.filter(pk=original.id).update(payload=payload)
    response = operator.post(f"/runs/{original.id}/replay/", replay_form(operator, original))
    assert response.status_code == 303
    replay = Run.objects.get(replayed_from=original)
    assert (replay.payload, replay.tags, replay.options) == (payload, ["a"], {})


def test_submitting_the_same_replay_form_twice_makes_one_replay(operator: Client) -> None:
    original = factories.run()
    values = replay_form(operator, original)
    first = operator.post(f"/runs/{original.id}/replay/", values)
    second = operator.post(f"/runs/{original.id}/replay/", values)
    assert first["Location"] == second["Location"]
    assert Run.objects.filter(replayed_from=original).count() == 1
    assert AuditEntry.objects.count() == 1


def test_the_same_replay_form_twice_at_one_instant_is_audited_once(operator: Client) -> None:
    import time_machine

    original = factories.run()
    values = replay_form(operator, original)
    with time_machine.travel(timezone.now(), tick=False):  # the earlier replay looks made "now"
        operator.post(f"/runs/{original.id}/replay/", values)
        operator.post(f"/runs/{original.id}/replay/", values)
    assert Run.objects.filter(replayed_from=original).count() == 1
    assert list(AuditEntry.objects.values_list("action", "username")) == [("run.replay", "olga")]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"payload": "{not json"}, "replay-payload", "Payload is not valid JSON"),
        ({"metadata": "[1, 2]"}, "replay-metadata", "Metadata must be a JSON object"),
        ({"machine": "huge-9x"}, "replay-machine", "options.machine must be one of"),
        ({"tags": ",".join(f"t{n}" for n in range(11))}, "replay-tags", "at most 10"),
        ({"delay": "whenever"}, "replay-delay", "Invalid delay 'whenever'"),
        ({"queue": "q" * 300}, "replay-queue", "at most 256 characters"),
        ({"payload": DEEP_JSON}, "replay-payload", "payload: nested deeper than 100 levels"),
        ({"metadata": '{"a": ' + DEEP_JSON + "}"}, "replay-metadata", "metadata.a: nested deeper than 100 levels"),
    ],
)
def test_bad_replay_input_is_shown_next_to_its_field(
    operator: Client, change: dict[str, str], field: str, message: str
) -> None:
    original = factories.run(payload={"n": 1})
    response = operator.post(f"/runs/{original.id}/replay/", replay_form(operator, original) | change, **HTMX)
    assert response.status_code == 422
    assert message in field_error(response.content.decode(), field)
    assert not Run.objects.filter(replayed_from=original).exists()


def test_every_wrong_replay_input_is_reported_at_once(operator: Client) -> None:
    original = factories.run()
    change = {"payload": "{", "machine": "nope", "delay": "x"}
    html = operator.post(f"/runs/{original.id}/replay/", replay_form(operator, original) | change).content.decode()
    for field in ("replay-payload", "replay-machine", "replay-delay"):
        field_error(html, field)


def test_operators_who_may_not_see_payloads_replay_them_unseen(dev: Environment) -> None:
    support = Group.objects.create(name="Ops without payloads")
    support.permissions.add(*Group.objects.get(name="Operators").permissions.exclude(codename="view_payload"))
    user = User.objects.create_user(username="sam")
    user.groups.add(support)
    client = Client()
    client.force_login(user)
    original = factories.run(payload={"secret": "marker-4711"})
    html = client.get(f"/runs/{original.id}/replay/").content.decode()
    assert "marker-4711" not in html and 'name="payload"' not in html
    response = client.post(f"/runs/{original.id}/replay/", {"payload": '{"x": 1}', "tags": "", "machine": "small-1x"})
    assert response.status_code == 303
    assert Run.objects.get(replayed_from=original).payload == original.payload


# --- bulk ---------------------------------------------------------------------------------


def test_the_bulk_bar_carries_the_filters_for_operators_only(dev: Environment) -> None:
    filters = RunFilters.from_query({"status": ["QUEUED", "FAILED"], "task": ["hello-world"]}, timezone.now())
    request = RequestFactory().get("/runs/")
    operator_user, viewer_user = make_user("olga", "Operators"), make_user("vic", "Viewers")
    html = render_to_string(
        "dashboard/partials/bulk_bar.html",
        {"filters": filters, "environment": dev, "perms": _perms(operator_user)},
        request=request,
    )
    assert '<form id="bulk-form"' in html and 'action="/runs/bulk/?env=dev"' in html
    hidden = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html)[1:]  # after the CSRF token
    assert hidden == [("status", "QUEUED"), ("status", "FAILED"), ("task", "hello-world")]
    viewer_html = render_to_string(
        "dashboard/partials/bulk_bar.html", {"filters": filters, "perms": _perms(viewer_user)}, request=request
    )
    assert "bulk-form" not in viewer_html


def _perms(user: User) -> Any:
    from django.contrib.auth.context_processors import PermWrapper

    return PermWrapper(user)


def test_the_preview_counts_the_selected_runs(operator: Client) -> None:
    runs = [factories.run() for _ in range(3)]
    body = {"do": "cancel:selected", "runs": [runs[0].id, runs[1].id, "run_unknown"]}
    response = operator.post("/runs/bulk/", body)
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r"Cancel <span data-preview-count>2</span> runs", html)
    assert re.findall(r'name="runs" value="(\w+)"', html) == sorted([runs[0].id, runs[1].id], key=html.index)
    assert not BulkAction.objects.exists()


def test_the_preview_of_all_matching_runs_is_capped(operator: Client, monkeypatch: Any) -> None:
    monkeypatch.setattr(actions, "PREVIEW_CAP", 3)
    for _ in range(5):
        factories.run()
    with CaptureQueriesContext(connection) as queries:
        response = operator.post("/runs/bulk/", {"do": "replay:matching", "task": "hello-world"})
    html = response.content.decode()
    assert "Replay <span data-preview-count>at least 3</span> runs" in html
    assert "the preview stops counting there" in html
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 4" in sql for sql in counts)


def test_nothing_selected_is_refused(operator: Client) -> None:
    factories.run()
    response = operator.post("/runs/bulk/", {"do": "cancel:selected"})
    assert response.status_code == 422
    assert "No runs selected" in response.content.decode()


def test_broken_filters_are_refused_rather_than_widened(operator: Client) -> None:
    factories.run()
    response = operator.post("/runs/bulk/", {"do": "cancel:matching", "status": "NOPE"})
    assert response.status_code == 422
    assert "Fix the filters first" in response.content.decode()


def test_confirming_needs_a_reason(operator: Client) -> None:
    run = factories.run()
    body = {"action": "cancel", "scope": "selected", "runs": [run.id], "confirm": "1", "reason": "  "}
    response = operator.post("/runs/bulk/", body)
    assert response.status_code == 422
    assert "Say why" in field_error(response.content.decode(), "action-reason")
    assert not BulkAction.objects.exists() and not AuditEntry.objects.exists()


def test_confirming_all_matching_stores_the_filters_and_goes_to_its_page(operator: Client) -> None:
    factories.run()
    body = {"action": "replay", "scope": "matching", "status": "QUEUED", "period": "1h", "confirm": "1", "reason": "r"}
    response = operator.post("/runs/bulk/?env=dev", body)
    bulk = BulkAction.objects.get()
    assert (response.status_code, response["Location"]) == (303, f"/runs/bulk/{bulk.id}/")
    assert (bulk.action, bulk.filters, bulk.run_ids, bulk.reason, bulk.username) == (
        "replay",
        {"status": ["QUEUED"], "period": ["1h"]},
        [],
        "r",
        "olga",
    )
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.reason, entry.data["preview"]) == ("bulk.replay", bulk.id, "r", "1")


def test_confirming_selected_runs_stores_their_ids(operator: Client) -> None:
    runs = [factories.run() for _ in range(2)]
    body = {"action": "cancel", "scope": "selected", "runs": [r.id for r in runs], "confirm": "1", "reason": "dup"}
    operator.post("/runs/bulk/", body)
    bulk = BulkAction.objects.get()
    assert sorted(bulk.run_ids) == sorted(r.id for r in runs) and bulk.filters == {}
    assert AuditEntry.objects.get().action == "bulk.cancel"


def test_the_bulk_page_polls_its_progress_until_done(operator: Client, dev: Environment) -> None:
    run = factories.run()
    bulk = engine_bulk(dev, [run.id])
    page = operator.get(f"/runs/bulk/{bulk.id}/").content.decode()
    assert 'id="bulk-progress"' in page and 'hx-trigger="every 1s"' in page and "Waiting for the engine" in page
    work_bulk_actions(now=timezone.now())
    partial = operator.get(f"/runs/bulk/{bulk.id}/", **HTMX).content.decode()
    assert partial.startswith('<section id="bulk-progress"')
    assert "<!doctype" not in partial and 'hx-trigger="every 1s"' not in partial
    assert 'data-count="succeeded">1<' in partial and 'value="100"' in partial and "Done" in partial


def test_an_unknown_bulk_action_is_404(operator: Client) -> None:
    assert operator.get("/runs/bulk/bulk_nope/").status_code == 404


def engine_bulk(env: Environment, run_ids: list[str]) -> BulkAction:
    from runs.engine.bulk import create_bulk_action

    at = datetime.now(UTC)
    return create_bulk_action(environment=env, action="cancel", reason="r", username="olga", run_ids=run_ids, now=at)
