"""Hostile input to the dashboard never gives a 500 (#14.5): NUL characters, JSON nested a
thousand deep, and stored payloads or outputs a page cannot render."""

from __future__ import annotations

import string

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.models import Environment, Run
from tests import factories
from tests.dashboard.test_actions import DEEP_JSON as DEEP
from tests.dashboard.test_actions import field_error, make_user


@pytest.fixture
def operator(dev: Environment) -> Client:
    client = Client()
    client.force_login(make_user("olga", "Operators"))
    return client


def test_a_payload_nested_1000_deep_in_the_trigger_form_is_an_error_on_the_payload(operator: Client) -> None:
    factories.task_definition("hello-world")
    response = operator.post("/tasks/hello-world/", {"payload": DEEP})
    assert response.status_code == 422
    assert "payload: nested deeper than 100 levels" in field_error(response.content.decode(), "opt-payload")
    assert Run.objects.count() == 0


def test_metadata_nested_1000_deep_in_the_trigger_form_is_an_error_on_metadata(operator: Client) -> None:
    factories.task_definition("hello-world")
    response = operator.post("/tasks/hello-world/", {"payload": "{}", "metadata": '{"a": ' + DEEP + "}"})
    assert response.status_code == 422
    assert "metadata.a: nested deeper than 100 levels" in field_error(response.content.decode(), "opt-metadata")
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    "path", ["/runs/?env=d%00ev", "/runs/?tags=a%00", "/audit/?user=%00", "/admin/runs/run/?q=%00"]
)
def test_a_nul_in_a_dashboard_query_string_never_gives_a_500(dev: Environment, path: str) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password=None))
    assert client.get(path).status_code < 500, path


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/runs/run_%00x/", "run_id"),
        ("/batches/batch_%00x/", "batch_id"),
        ("/tasks/hello%00/", "task_id"),
        ("/runs/bulk/bulk_%00/", "bulk_id"),
    ],
)
def test_a_nul_in_a_dashboard_url_is_a_400_naming_where(dev: Environment, path: str, where: str) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password=None))
    response = client.get(path)
    assert response.status_code == 400, path
    assert f"{where}: contains a NUL character" in response.content.decode()


def test_a_nul_in_a_dashboard_form_is_a_400_naming_the_field(operator: Client) -> None:
    run = factories.run(delay_until=None)
    response = operator.post(f"/runs/{run.id}/cancel/", {"reason": "because\x00"})
    assert response.status_code == 400
    assert "reason: contains a NUL character" in response.content.decode()
    run.refresh_from_db()
    assert run.status != "CANCELED"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(alphabet=st.sampled_from(string.ascii_letters + '\x00[]{}"\\:,\n'), max_size=40),
    name=st.sampled_from(["task", "tags", "status", "queue", "env", "batch", "idempotencyKey", "from", "period"]),
)
def test_hostile_runs_list_filters_never_give_a_500(operator: Client, text: str, name: str) -> None:
    response = operator.get("/runs/", {name: text})
    assert response.status_code < 500


# --- stored values a page cannot render ------------------------------------------------------

SURROGATE = '{"note": "\\ud800"}'  # valid JSON text, decoding to a lone surrogate


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("payload", SURROGATE),
        ("payload", "[" * 5000 + "]" * 5000),
        ("output", SURROGATE),
        ("output", "[" * 5000 + "]" * 5000),
    ],
    ids=["payload-surrogate", "payload-deep", "output-surrogate", "output-deep"],
)
def test_a_run_whose_payload_or_output_cannot_be_rendered_still_shows_its_page(
    operator: Client, column: str, value: str
) -> None:
    run = factories.run(payload={"n": 1})
    kind = {"payload": "payload_type", "output": "output_type"}[column]
    Run.objects.filter(pk=run.id).update(
        **{column: value, kind: "application/json", "status": "COMPLETED", "finished_at": timezone.now()}
    )
    response = operator.get(f"/runs/{run.id}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "This cannot be displayed here" in page
    assert run.id in page
