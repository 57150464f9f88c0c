"""The schedules API as the official SDK calls it: create (an upsert by deduplicationKey),
retrieve, update, list, activate, deactivate, delete and the time zones."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.test import Client

from runs import engine
from runs.models import AuditEntry, Schedule, ScheduleType
from runs.schedule_spec import ScheduleSpec
from tests import factories
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 28, 12, 0, 30, tzinfo=UTC)  # a Saturday


def put(api: Api, path: str, body: Any) -> Any:
    return api.client.put(path, data=json.dumps(body), content_type="application/json", headers=api.headers())


def delete(api: Api, path: str) -> Any:
    return api.client.delete(path, headers=api.headers())


def create(api: Api, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/schedules", {"task": "hello-world", "cron": "0 9 * * *", **body})
    assert response.status_code == 200, response.json()
    created: dict[str, Any] = response.json()
    return created


@time_machine.travel(T0, tick=False)
def test_a_created_schedule_has_the_reference_shape(api: Api, dev) -> None:
    body = create(api, timezone="Europe/Paris", externalId="user-1", deduplicationKey="daily-user-1")
    assert body["id"].startswith("sched_")
    assert (body["type"], body["task"], body["active"]) == ("IMPERATIVE", "hello-world", True)
    assert body["generator"] == {"type": "CRON", "expression": "0 9 * * *", "description": "At 09:00 AM"}
    assert (body["timezone"], body["externalId"], body["deduplicationKey"]) == (
        "Europe/Paris",
        "user-1",
        "daily-user-1",
    )
    assert body["nextRun"] == "2026-11-29T08:00:00+00:00"  # 09:00 in Paris is 08:00 UTC in winter
    assert body["environments"] == [{"id": str(dev.pk), "type": "DEVELOPMENT"}]
    assert body["upcoming"][:2] == ["2026-11-29T08:00:00+00:00", "2026-11-30T08:00:00+00:00"]
    stored = Schedule.objects.get(pk=body["id"])
    assert (stored.environment_id, stored.cron, stored.timezone) == (dev.pk, "0 9 * * *", "Europe/Paris")
    assert stored.created_by.startswith("api:") and api.key not in stored.created_by
    assert AuditEntry.objects.filter(action="schedule.create", target=body["id"]).count() == 1


def test_optional_fields_left_out_are_absent_never_null(api: Api) -> None:
    body = create(api)
    assert "externalId" not in body and "deduplicationKey" not in body
    assert body["timezone"] == "UTC"
    assert [key for key, value in body.items() if value is None] == ["payload"]  # the caller's data: none


def test_runyards_own_fields_are_taken_and_returned(api: Api) -> None:
    body = create(
        api, payload={"report": "daily"}, options={"tags": ["nightly"], "ttl": "1h"}, overlap="skip", missed="skip"
    )
    assert (body["payload"], body["options"]) == ({"report": "daily"}, {"tags": ["nightly"], "ttl": "1h"})
    assert (body["overlap"], body["missed"]) == ("skip", "skip")
    stored = Schedule.objects.get(pk=body["id"])
    assert (stored.payload, stored.options["tags"], stored.overlap, stored.missed) == (
        {"report": "daily"},
        ["nightly"],
        "skip",
        "skip",
    )


def test_creating_twice_with_the_same_deduplication_key_updates_one_schedule(api: Api) -> None:
    first = create(api, deduplicationKey="nightly", externalId="a")
    second = create(api, deduplicationKey="nightly", cron="30 2 * * *", externalId="b")
    assert second["id"] == first["id"]
    assert (second["generator"]["expression"], second["externalId"]) == ("30 2 * * *", "b")
    assert Schedule.objects.filter(deduplication_key="nightly").count() == 1
    assert create(api)["id"] != first["id"]  # no key: a new schedule each time


def test_a_schedule_is_retrieved_as_it_was_created(api: Api) -> None:
    created = create(api, externalId="x")
    response = api.get(f"/api/v1/schedules/{created['id']}")
    assert response.status_code == 200
    assert {**response.json(), "upcoming": None} == {**created, "upcoming": None}


def test_an_update_replaces_the_reference_fields_and_keeps_runyards(api: Api) -> None:
    created = create(api, timezone="Asia/Tokyo", externalId="x", deduplicationKey="k", payload={"p": 1}, overlap="skip")
    response = put(api, f"/api/v1/schedules/{created['id']}", {"task": "other-task", "cron": "*/5 * * * *"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["task"], body["generator"]["expression"]) == ("other-task", "*/5 * * * *")
    assert body["generator"]["description"] == "Every 5 minutes"
    # As the reference: a time zone or external id left out goes back to UTC or none.
    assert body["timezone"] == "UTC" and "externalId" not in body
    # The key stays; what the official SDK cannot send stays too.
    assert (body["deduplicationKey"], body["payload"], body["overlap"]) == ("k", {"p": 1}, "skip")
    stored = Schedule.objects.get(pk=created["id"])
    assert (stored.task_id, stored.cron, stored.timezone, stored.external_id) == (
        "other-task",
        "*/5 * * * *",
        "UTC",
        None,
    )


def test_schedules_are_listed_newest_first_a_page_at_a_time(api: Api) -> None:
    made = [create(api, externalId=str(n))["id"] for n in range(5)]
    response = api.get("/api/v1/schedules?page=2&perPage=2")
    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["data"]] == [made[2], made[1]]
    assert body["pagination"] == {"currentPage": 2, "totalPages": 3, "count": 5}
    everything = api.get("/api/v1/schedules").json()
    assert [item["id"] for item in everything["data"]] == made[::-1]
    assert everything["pagination"] == {"currentPage": 1, "totalPages": 1, "count": 5}
    assert api.get("/api/v1/schedules?page=9").json()["data"] == []


@time_machine.travel(T0, tick=False)
def test_deactivating_clears_the_next_run_and_activating_sets_it_again(api: Api) -> None:
    created = create(api)
    off = api.post(f"/api/v1/schedules/{created['id']}/deactivate")
    assert off.status_code == 200
    assert (off.json()["active"], off.json()["nextRun"], off.json()["upcoming"]) == (False, None, [])
    assert Schedule.objects.get(pk=created["id"]).next_fire_at is None
    on = api.post(f"/api/v1/schedules/{created['id']}/activate")
    assert (on.json()["active"], on.json()["nextRun"]) == (True, "2026-11-29T09:00:00+00:00")
    actions = AuditEntry.objects.filter(target=created["id"]).values_list("action", flat=True)
    assert {"schedule.deactivate", "schedule.activate"} <= set(actions)


def test_deleting_answers_the_id_and_the_schedule_is_gone(api: Api) -> None:
    created = create(api)
    response = delete(api, f"/api/v1/schedules/{created['id']}")
    assert (response.status_code, response.json()) == (200, {"id": created["id"]})
    assert not Schedule.objects.filter(pk=created["id"]).exists()
    assert api.get(f"/api/v1/schedules/{created['id']}").status_code == 404
    assert delete(api, f"/api/v1/schedules/{created['id']}").status_code == 404


def test_the_time_zones_are_listed_utc_first_without_an_api_key(client: Client) -> None:
    zones = client.get("/api/v1/timezones").json()["timezones"]
    assert zones[0] == "UTC" and zones.count("UTC") == 1
    assert "Europe/Paris" in zones and "America/New_York" in zones
    assert zones[1:] == sorted(zones[1:])
    without = client.get("/api/v1/timezones?excludeUtc=true").json()["timezones"]
    assert "UTC" not in without and without == zones[1:]
    bad = client.get("/api/v1/timezones?excludeUtc=maybe")
    assert (bad.status_code, bad.json()["param"]) == (400, "excludeUtc")


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ({"cron": "0 9 * * *"}, 400, "task", "task is required"),
        ({"task": "hello-world"}, 400, "cron", "cron is required"),
        ({"task": 5, "cron": "0 9 * * *"}, 400, "task", "task must be"),
        ({"task": "hello-world", "cron": "61 * * * *"}, 422, "cron", "cron is not a valid expression"),
        ({"task": "hello-world", "cron": "* * *"}, 422, "cron", "cron must have 5 fields"),
        (
            {"task": "hello-world", "cron": "0 9 * * *", "timezone": "Mars/Base"},
            422,
            "timezone",
            "timezone 'Mars/Base'",
        ),
        ({"task": "hello-world", "cron": "0 9 * * *", "externalId": 7}, 400, "externalId", "externalId must be"),
        ({"task": "hello-world", "cron": "@hourly", "deduplicationKey": "k" * 300}, 400, "deduplicationKey", "dedup"),
        ({"task": "hello-world", "cron": "@hourly", "active": "yes"}, 400, "active", "active must be true or false"),
        ({"task": "hello-world", "cron": "@hourly", "overlap": "never"}, 400, "overlap", "overlap must be one of"),
        ({"task": "hello-world", "cron": "@hourly", "missed": 1}, 400, "missed", "missed must be one of"),
        ({"task": "hello-world", "cron": "@hourly", "window": "30m"}, 422, "window", "window is not supported"),
        ({"task": "hello-world", "cron": "@hourly", "options": {"delay": "1h"}}, 422, "options.delay", "options.delay"),
        ({"task": "hello-world", "cron": "@hourly", "options": {"ttl": []}}, 422, "options.ttl", ""),
        ({"task": "hello-world", "cron": "@hourly", "payload": {"a": "\u0000"}}, 400, "payload.a", "payload.a"),
        (
            {"task": "hello-world", "cron": "@hourly", "payload": "x" * 300_000},
            400,
            "payload",
            "payload must be at most",
        ),
        ({"task": "hello-world\u0000", "cron": "@hourly"}, 400, "task", "task"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(api: Api, body: Any, status: int, field: str, message: str) -> None:
    response = api.post("/api/v1/schedules", body)
    assert response.status_code == status, response.json()
    assert response.json()["param"] == field
    assert response.json()["error"].startswith(message)
    assert not Schedule.objects.exists()


def test_a_bad_update_is_refused_naming_the_field_and_changes_nothing(api: Api) -> None:
    created = create(api, externalId="kept")
    path = f"/api/v1/schedules/{created['id']}"
    for body, field in (
        ({"cron": "@hourly"}, "task"),
        ({"task": "t"}, "cron"),
        ({"task": "t", "cron": "@often"}, "cron"),
    ):
        response = put(api, path, body)
        assert response.status_code in (400, 422) and response.json()["param"] == field
    not_an_object = api.client.put(path, data="[1]", content_type="application/json", headers=api.headers())
    assert not_an_object.status_code == 400
    stored = Schedule.objects.get(pk=created["id"])
    assert (stored.task_id, stored.cron, stored.external_id) == ("hello-world", "0 9 * * *", "kept")


def test_another_environments_schedule_is_not_found(api: Api, prod_api: Api) -> None:
    theirs = create(prod_api, deduplicationKey="shared")
    path = f"/api/v1/schedules/{theirs['id']}"
    assert api.get(path).status_code == 404
    assert put(api, path, {"task": "hello-world", "cron": "@daily"}).status_code == 404
    assert api.post(f"{path}/deactivate").status_code == 404
    assert api.post(f"{path}/activate").status_code == 404
    assert delete(api, path).status_code == 404
    assert api.get("/api/v1/schedules").json()["data"] == []
    mine = create(api, deduplicationKey="shared")  # the same key elsewhere is another schedule
    assert mine["id"] != theirs["id"]
    assert Schedule.objects.get(pk=theirs["id"]).active is True
    assert api.get("/api/v1/schedules/sched_nope").json() == {
        "error": "No schedule with id 'sched_nope' in this environment"
    }


def test_a_schedule_declared_in_code_is_refused_changes_but_may_be_paused(api: Api, dev) -> None:
    spec = ScheduleSpec(task_id="hello-world", cron="@daily", deduplication_key="declared:hello-world")
    declared, _ = engine.create_schedule(environment=dev, spec=spec, actor="worker", type=ScheduleType.DECLARATIVE)
    path = f"/api/v1/schedules/{declared.id}"
    assert api.get(path).json()["type"] == "DECLARATIVE"
    changed = put(api, path, {"task": "hello-world", "cron": "@hourly"})
    assert changed.status_code == 422 and "declared by task hello-world's code" in changed.json()["error"]
    assert delete(api, path).status_code == 422
    again = api.post(
        "/api/v1/schedules", {"task": "hello-world", "cron": "@hourly", "deduplicationKey": spec.deduplication_key}
    )
    assert (again.status_code, again.json()["param"]) == (422, "deduplicationKey")
    assert Schedule.objects.get(pk=declared.id).cron == "@daily"
    assert api.post(f"{path}/deactivate").json()["active"] is False


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/schedules"),
        ("post", "/api/v1/schedules"),
        ("get", "/api/v1/schedules/sched_x"),
        ("put", "/api/v1/schedules/sched_x"),
        ("delete", "/api/v1/schedules/sched_x"),
        ("post", "/api/v1/schedules/sched_x/activate"),
        ("post", "/api/v1/schedules/sched_x/deactivate"),
    ],
)
def test_every_schedule_route_needs_an_api_key(client: Client, method: str, path: str) -> None:
    response = getattr(client, method)(path, content_type="application/json")
    assert (response.status_code, response.json()) == (401, {"error": "Invalid API key"})


@pytest.mark.parametrize("query", ["page=0", "page=x", "perPage=101", "perPage=-1"])
def test_bad_pages_are_refused_naming_the_parameter(api: Api, query: str) -> None:
    response = api.get(f"/api/v1/schedules?{query}")
    assert response.status_code == 400 and response.json()["param"] == query.split("=")[0]


def test_a_retrieved_run_names_the_schedule_that_fired_it_while_it_exists(api: Api) -> None:
    created = create(api, externalId="user-1", deduplicationKey="k")
    run = factories.run(schedule_id=created["id"])
    body = api.get(f"/api/v3/runs/{run.id}").json()
    assert body["schedule"] == {
        "id": created["id"],
        "externalId": "user-1",
        "deduplicationKey": "k",
        "generator": {"type": "CRON", "expression": "0 9 * * *", "description": "At 09:00 AM"},
    }
    assert "schedule" not in api.get(f"/api/v3/runs/{factories.run().id}").json()
    delete(api, f"/api/v1/schedules/{created['id']}")
    assert "schedule" not in api.get(f"/api/v3/runs/{run.id}").json()
