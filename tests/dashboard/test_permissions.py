"""Roles from Django groups: who sees payloads, who may open the admin pages, what websockets push."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.db import connections
from django.test import Client
from django.utils import timezone

from dashboard.asgi import application
from dashboard.routing import websocket_urlpatterns
from runs import engine, events
from runs.models import Run
from runs.options import parse_trigger_options
from tests import factories

# Unique markers: if one appears in a page, that page leaked what it hides.
PAYLOAD = "payload-marker-7f3a"
OUTPUT = "output-marker-91bc"
METADATA = "metadata-marker-55de"
RUN_ERROR = "run-error-marker-c0de"
STACK = "stack-marker-d00d"
MARKERS = [PAYLOAD, OUTPUT, METADATA, RUN_ERROR, STACK]
HIDDEN_NOTE = "Hidden: your role cannot see payloads."


def make_user(username: str, *groups: str, superuser: bool = False) -> User:
    # No password: tests log in with force_login, and hashing one costs a second on a busy machine.
    if superuser:
        return User.objects.create_superuser(username=username, password=None)
    user = User.objects.create_user(username=username, password=None)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def support_group() -> str:
    """A group that may see runs but not their payloads: how an admin hides payloads from some users."""
    group, _ = Group.objects.get_or_create(name="Support")
    group.permissions.add(Permission.objects.get(content_type__app_label="runs", codename="view_run"))
    return group.name


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def secret_run() -> Run:
    """A failed run whose payload, output, metadata, error and attempt error carry the markers."""
    factories.task_definition("hello-world")
    options = parse_trigger_options({"metadata": {"note": METADATA}, "tags": ["visible-tag"]})
    run = engine.trigger(
        environment=factories.environment("dev"),
        task_id="hello-world",
        payload=factories.superjson({"secret": PAYLOAD}),
        payload_type="application/super+json",
        options=options,
        actor="test",
    ).run
    engine.tick()  # admitted: DEQUEUED
    engine.start_attempt(run_id=run.id, worker="w1")
    error = {"name": "RuntimeError", "message": RUN_ERROR, "stackTrace": f"Traceback\n  {STACK}"}
    engine.fail_attempt(run_id=run.id, attempt=1, error=error, retry=None)
    # An output as well (a failed run has none; the panel shows whatever is stored).
    Run.objects.filter(pk=run.pk).update(output=json.dumps({"out": OUTPUT}), output_type="application/json")
    return run


def assert_hidden(html: str) -> None:
    leaked = [marker for marker in MARKERS if marker in html]
    assert not leaked, f"the page shows {leaked}"
    assert HIDDEN_NOTE in html


def assert_shown(html: str) -> None:
    missing = [marker for marker in MARKERS if marker not in html]
    assert not missing, f"the page lacks {missing}"
    assert HIDDEN_NOTE not in html


@pytest.fixture
def run(db: None) -> Run:
    return secret_run()


# --- payloads on the run page ------------------------------------------------------------


def test_a_role_without_view_payload_sees_the_run_but_no_payload_output_metadata_or_error(run: Run) -> None:
    response = client_for(make_user("sam", support_group())).get(f"/runs/{run.id}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert run.id in html and "Failed" in html and "visible-tag" in html
    assert_hidden(html)
    assert "attempt failed · error hidden" in html  # the timeline's failure reason holds the error message


def test_options_as_given_keep_everything_but_the_metadata_for_such_a_role(run: Run) -> None:
    html = client_for(make_user("sam", support_group())).get(f"/runs/{run.id}/").content.decode()
    assert "Options as given" in html and "visible-tag" in html.split("Options as given")[1]
    assert METADATA not in html


def test_the_htmx_panel_hides_payloads_too(run: Run) -> None:
    response = client_for(make_user("sam", support_group())).get(f"/runs/{run.id}/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.startswith('<div id="run-panel"')
    assert_hidden(html)


@pytest.mark.parametrize("groups", [("Viewers",), ("Operators",), ("Admins",)])
def test_each_standard_role_sees_payloads(run: Run, groups: tuple[str, ...]) -> None:
    assert_shown(client_for(make_user("pat", *groups)).get(f"/runs/{run.id}/").content.decode())


def test_a_superuser_sees_payloads_whatever_the_groups_say(run: Run) -> None:
    Group.objects.get(name="Viewers").permissions.clear()
    assert_shown(client_for(make_user("root", superuser=True)).get(f"/runs/{run.id}/").content.decode())


def test_a_user_in_no_group_has_exactly_the_viewers_permissions(run: Run) -> None:
    loner = make_user("lou")
    assert loner.has_perm("runs.view_payload") and not loner.has_perm("runs.operate_run")
    assert_shown(client_for(loner).get(f"/runs/{run.id}/").content.decode())
    # Taking runs.view_payload from Viewers hides payloads from every viewer, group or not.
    Group.objects.get(name="Viewers").permissions.remove(
        Permission.objects.get(content_type__app_label="runs", codename="view_payload")
    )
    viewer = make_user("vic", "Viewers")
    for user in (User.objects.get(pk=loner.pk), viewer):
        assert not user.has_perm("runs.view_payload")
        assert_hidden(client_for(user).get(f"/runs/{run.id}/").content.decode())


def test_a_user_in_some_group_gets_only_that_groups_permissions(run: Run) -> None:
    user = make_user("sam", support_group())
    assert user.has_perm("runs.view_run") and not user.has_perm("runs.view_payload")


def test_payload_permission_is_about_the_dashboard_not_the_api(run: Run) -> None:
    Group.objects.get(name="Viewers").permissions.clear()
    response = Client().get(f"/api/v3/runs/{run.id}", HTTP_AUTHORIZATION=f"Bearer {factories.api_key('dev')}")
    assert response.status_code == 200
    assert PAYLOAD in json.dumps(response.json())


# --- who may open what --------------------------------------------------------------------


ADMIN_PAGES = ["/settings/keys/", "/settings/environments/", "/audit/"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
@pytest.mark.parametrize("groups", [(), ("Viewers",), ("Operators",)])
def test_viewers_and_operators_get_403_on_admin_pages(db: None, path: str, groups: tuple[str, ...]) -> None:
    response = client_for(make_user("pat", *groups)).get(path)
    assert response.status_code == 403
    html = response.content.decode()
    assert "Not allowed" in html and "Admins group" in html


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admins_and_superusers_open_admin_pages(db: None, path: str) -> None:
    for user in (make_user("ada", "Admins"), make_user("root", superuser=True)):
        assert client_for(user).get(path).status_code == 200


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_send_anonymous_users_to_log_in(client: Client, db: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_a_forbidden_post_changes_nothing(db: None) -> None:
    response = client_for(make_user("pat", "Operators")).post("/settings/environments/", {"slug": "x1", "name": "X"})
    assert response.status_code == 403
    from runs.models import AuditEntry, Environment

    assert not Environment.objects.filter(slug="x1").exists() and not AuditEntry.objects.exists()


def test_navigation_shows_audit_and_settings_only_to_admins(db: None) -> None:
    viewer = client_for(make_user("vic", "Viewers")).get("/runs/").content.decode()
    admin = client_for(make_user("ada", "Admins")).get("/runs/").content.decode()
    assert 'href="/audit/"' not in viewer and 'href="/settings/keys/"' not in viewer
    assert 'href="/audit/"' in admin and 'href="/settings/keys/"' in admin


# --- Django admin: how roles are given --------------------------------------------------


def test_the_django_admin_has_its_own_login_page(client: Client, db: None) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"] == "/admin/login/?next=/admin/"
    assert client.get("/admin/login/").status_code == 200


def test_a_superuser_adds_a_user_to_a_group_in_the_django_admin(db: None) -> None:
    root = client_for(make_user("root", superuser=True))
    user = make_user("newbie")
    assert root.get("/admin/auth/group/").status_code == 200
    page = root.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    assert all(name in page for name in ("Viewers", "Operators", "Admins"))
    operators = Group.objects.get(name="Operators")
    form = {
        "username": "newbie",
        "is_active": "on",
        "groups": [operators.pk],
        "date_joined_0": "2026-11-29",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-11-29",
        "initial-date_joined_1": "00:00:00",
    }
    response = root.post(f"/admin/auth/user/{user.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(pk=user.pk).has_perm("runs.operate_run")


# --- websockets -----------------------------------------------------------------------------


@pytest.fixture
async def close_thread_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websockets_refuse_anonymous_users() -> None:
    batch_id = "batch_doesnotmatter"
    for path in ["/ws/runs/?env=dev", "/ws/runs/run_x/", f"/ws/batches/{batch_id}/"]:
        communicator = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://testserver")])
        assert (await communicator.connect())[0] is False
        direct = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        direct.scope["user"] = AnonymousUser()
        assert (await direct.connect())[0] is False


@database_sync_to_async
def live_setup() -> tuple[Run, User, User]:
    # Transactional tests start without the migration's groups: make the two roles here.
    run = secret_run()
    operators, _ = Group.objects.get_or_create(name="Operators")
    operators.permissions.add(
        *Permission.objects.filter(content_type__app_label="runs", codename__in=["view_run", "view_payload"])
    )
    return run, make_user("sam", support_group()), make_user("otto", "Operators")


async def panel_push(run: Run, user: Any) -> str:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/runs/{run.id}/")
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    try:
        await database_sync_to_async(Run.objects.filter(pk=run.pk).update)(updated_at=timezone.now())
        layer = get_channel_layer()
        assert layer is not None
        await layer.group_send(events.env_group(run.environment_id), {"type": "run.changed", "run_id": run.id})
        return str(await communicator.receive_from(timeout=3))
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_a_live_panel_push_hides_payloads_from_a_role_without_view_payload() -> None:
    run, support, operator = await live_setup()
    hidden = await panel_push(run, support)
    assert hidden.startswith('<div id="run-panel" class="run-panel" hx-swap-oob="true">')
    assert_hidden(hidden)
    assert_shown(await panel_push(run, operator))


# --- runs.view_run: a user whose groups grant nothing sees nothing --------------------------

SAMPLE_ARGS = {
    "run_id": "run_x",
    "batch_id": "batch_x",
    "bulk_id": "bulk_x",
    "task_id": "hello-world",
    "queue_id": "1",
    "schedule_id": "sched_x",
    "action": "pause",
    "hostname": "celery@box",
}
# Views anyone may open, or a user without view_run must reach.
NOT_GUARDED = {"login", "logout"}


def nobody_group() -> str:
    """A custom group that grants nothing (or only what needs view_run to be of use)."""
    group, _ = Group.objects.get_or_create(name="Nobody")
    group.permissions.add(Permission.objects.get(content_type__app_label="runs", codename="view_payload"))
    return group.name


def dashboard_paths() -> list[str]:
    """Every URL of the dashboard's own pages, with sample arguments, walked from the URLconf."""
    from django.urls import URLPattern, get_resolver

    paths = []
    for pattern in get_resolver().url_patterns:
        if not isinstance(pattern, URLPattern) or pattern.name in NOT_GUARDED:
            continue
        if not getattr(pattern.callback, "login_required", True):
            continue  # public: login, API, metrics
        route = str(pattern.pattern)
        for name, value in SAMPLE_ARGS.items():
            route = route.replace(f"<str:{name}>", value).replace(f"<int:{name}>", value)
        assert "<" not in route, f"no sample argument for {route}"
        paths.append("/" + route)
    return paths


def test_the_walk_finds_every_dashboard_page() -> None:
    expected = {"/runs/", "/runs/bulk/bulk_x/", "/runs/run_x/", "/batches/batch_x/", "/queues/", "/workers/"}
    expected |= {"/workers/celery@box/", "/workers/celery@box/pause/"}
    expected |= {"/schedules/", "/schedules/new/", "/schedules/sched_x/", "/schedules/sched_x/run/"}
    assert expected <= set(dashboard_paths())


@pytest.mark.parametrize("path", dashboard_paths())
@pytest.mark.parametrize("method", ["get", "post"])
def test_every_dashboard_page_is_403_for_a_user_whose_groups_grant_no_view_run(
    db: None, path: str, method: str
) -> None:
    client = client_for(make_user("nina", nobody_group()))
    response = getattr(client, method)(path, HTTP_HX_REQUEST="true")
    assert response.status_code == 403, path
    html = response.content.decode()
    assert "runs.view_run" in html and "Viewers group" in html
    assert 'href="/runs/"' not in html.split("</header>")[1]  # no "Back to runs" it could not open


def test_a_user_without_view_run_may_still_log_out(db: None) -> None:
    client = client_for(make_user("nina", nobody_group()))
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/runs/").status_code == 302  # logged out: sent to log in


def test_a_user_in_no_group_keeps_viewer_rights_on_every_page(run: Run) -> None:
    client = client_for(make_user("lou"))
    for path in ["/runs/", f"/runs/{run.id}/", "/tasks/", "/queues/", "/workers/", "/schedules/"]:
        assert client.get(path).status_code == 200, path


def test_taking_view_run_from_viewers_shuts_out_users_in_no_group(db: None) -> None:
    Group.objects.get(name="Viewers").permissions.remove(
        Permission.objects.get(content_type__app_label="runs", codename="view_run")
    )
    assert client_for(make_user("lou")).get("/runs/").status_code == 403


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_websockets_refuse_a_user_whose_groups_grant_no_view_run() -> None:
    run, _, _ = await live_setup()
    nobody = await database_sync_to_async(lambda: make_user("nina", nobody_group()))()
    for path in ["/ws/runs/?env=dev", f"/ws/runs/{run.id}/", "/ws/batches/batch_x/"]:
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        communicator.scope["user"] = nobody
        assert await communicator.connect() == (False, 4403), path


# --- a bulk action's page ---------------------------------------------------------------------


def bulk_in(slug: str) -> str:
    from runs.models import BulkAction

    bulk = BulkAction.objects.create(
        id=f"bulk_{slug}test",
        environment=factories.environment(slug),
        action="cancel",
        username="otto",
        reason="r",
        created_at=timezone.now(),
    )
    return bulk.id


def test_a_bulk_action_opens_in_its_own_environment_for_a_viewer(db: None) -> None:
    bulk_id = bulk_in("prod")
    response = client_for(make_user("vic", "Viewers")).get(f"/runs/bulk/{bulk_id}/?env=prod")
    assert response.status_code == 200 and bulk_id in response.content.decode()


def test_a_bulk_action_of_another_environment_is_not_found(db: None) -> None:
    bulk_id = bulk_in("prod")
    assert client_for(make_user("otto", "Operators")).get(f"/runs/bulk/{bulk_id}/?env=dev").status_code == 404


def test_a_bulk_action_is_403_without_view_run(db: None) -> None:
    bulk_id = bulk_in("prod")
    assert client_for(make_user("nina", nobody_group())).get(f"/runs/bulk/{bulk_id}/?env=prod").status_code == 403
