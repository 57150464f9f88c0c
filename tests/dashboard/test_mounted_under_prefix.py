"""Runyard mounted by a project under /runyard/ (docs/adopting.md): links, websockets, login, API."""

from __future__ import annotations

import json

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client

from dashboard.routing import websocket_urlpatterns_under
from tests import factories
from tests.dashboard.test_consumers import make_run, make_user

# The project keeps its own pages open: no LoginRequiredMiddleware (docs/adopting.md).
PROJECT_MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "django.contrib.auth.middleware.LoginRequiredMiddleware"]


@pytest.fixture
def project(settings: object) -> None:
    settings.ROOT_URLCONF = "tests.dashboard.prefixed_urls"  # type: ignore[attr-defined]
    settings.MIDDLEWARE = PROJECT_MIDDLEWARE  # type: ignore[attr-defined]
    settings.LOGIN_URL = "login"  # type: ignore[attr-defined]


@pytest.fixture
def browser(client: Client, db: None, project: None) -> Client:
    factories.roles()
    client.force_login(User.objects.create_user(username="ada", password="a-long-password-1"))
    return client


def test_pages_link_and_connect_websockets_under_the_prefix(browser: Client) -> None:
    run = factories.run("hello-world", tags=["team:core"])
    html = browser.get("/runyard/runs/").content.decode()
    assert 'ws-connect="/runyard/ws/runs/?env=dev' in html
    assert f'href="/runyard/runs/{run.id}/"' in html
    assert 'href="/runyard/runs/?task=hello-world"' in html and 'href="/runyard/runs/?tag=team%3Acore"' in html
    assert 'href="/runyard/tasks/"' in html
    run_page = browser.get(f"/runyard/runs/{run.id}/").content.decode()
    assert f'ws-connect="/runyard/ws/runs/{run.id}/?' in run_page
    batch_link = browser.get("/runyard/runs/", {"batch": "batch_x"}).content.decode()
    assert 'href="/runyard/batches/batch_x/"' in batch_link


def test_anonymous_users_are_sent_to_the_login_page_under_the_prefix(client: Client, db: None, project: None) -> None:
    response = client.get("/runyard/runs/")
    assert response.status_code == 302
    assert response["Location"] == "/runyard/accounts/login/?next=/runyard/runs/"
    assert client.get("/runyard/accounts/login/").status_code == 200


def test_the_projects_own_pages_keep_their_rules(client: Client, db: None, project: None) -> None:
    assert client.get("/shop/").content == b"the project's own page"
    # Logged in without runs.view_run (a group with no permissions): Runyard refuses, the project does not.
    bob = User.objects.create_user(username="bob", password="a-long-password-1")
    bob.groups.add(Group.objects.create(name="Customers"))
    client.force_login(bob)
    assert client.get("/members/").status_code == 200
    assert client.get("/runyard/runs/").status_code == 403


def test_the_rest_api_answers_under_the_prefix(client: Client, db: None, project: None) -> None:
    factories.environment("dev")
    key = factories.api_key("dev")
    body = {"payload": '{"json":{"hello":"world"}}', "options": {"payloadType": "application/super+json"}}
    response = client.post(
        "/runyard/api/v1/tasks/hello-world/trigger",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.content
    assert client.get("/runyard/healthz").status_code in {200, 503}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websocket_routes_mount_under_the_projects_prefix() -> None:
    router = URLRouter(websocket_urlpatterns_under("runyard/"))
    user = await make_user()
    run = await make_run()
    for path in ["/runyard/ws/runs/?env=dev", f"/runyard/ws/runs/{run.id}/"]:
        communicator = WebsocketCommunicator(router, path)
        communicator.scope["user"] = user
        ok, _ = await communicator.connect()
        assert ok, path
        await communicator.disconnect()
    unmounted = WebsocketCommunicator(router, "/ws/runs/?env=dev")
    unmounted.scope["user"] = user
    with pytest.raises(ValueError, match="No route found"):
        await unmounted.connect()
