"""Security of the dashboard: login rate limit, escaping of user data, no secrets in logs, CSRF."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from dashboard import login
from runs import engine, worker
from runs.models import Environment, Queue, Run
from runs.ratelimit import redis_client
from tests import factories

PASSWORD = "correct-horse-battery-staple-9"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src="x" onerror="window.__pwned=2">'
MARKUP = f"{SCRIPT}{IMG}"


@pytest.fixture
def admin(db: None) -> User:
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


@pytest.fixture(autouse=True)
def fast_hasher(settings: Any) -> None:
    # Dozens of logins: PBKDF2's deliberate slowness would dominate the test's time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def forget_login_failures() -> Iterator[None]:
    def clear() -> None:
        client = redis_client()
        for key in client.scan_iter(f"{login.KEY_PREFIX}:*"):
            client.delete(key)

    clear()
    yield
    clear()


def log_in(client: Client, username: str, password: str, address: str = "10.0.0.1", **headers: str) -> Any:
    data = {"username": username, "password": password}
    return client.post(reverse("login"), data, REMOTE_ADDR=address, **headers)


def admin_log_in(client: Client, username: str, password: str, address: str = "10.0.0.1") -> Any:
    data = {"username": username, "password": password, "next": "/admin/"}
    return client.post("/admin/login/", data, REMOTE_ADDR=address)


# --- login attempts are rate limited ---------------------------------------------------------


@pytest.mark.django_db
def test_five_failed_logins_lock_out_that_username_and_address_for_five_minutes(admin: User) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        client = Client()
        for _ in range(login.MAX_FAILURES):
            response = log_in(client, "root", "wrong")
            assert response.status_code == 200 and b"match" in response.content
        clock.move_to(T0 + timedelta(seconds=61))

        refused = log_in(client, "root", PASSWORD)  # even the right password is not checked now
        assert refused.status_code == 429
        assert "Too many attempts, try again in 4 minutes." in refused.content.decode()
        assert refused["Retry-After"] == "239"
        assert "_auth_user_id" not in client.session
        assert b'value="root"' in refused.content

        clock.move_to(T0 + timedelta(seconds=login.WINDOW))
        assert log_in(client, "root", PASSWORD).status_code == 302
        assert client.session["_auth_user_id"] == str(admin.pk)


@pytest.mark.django_db
def test_the_lockout_is_per_username_and_address(admin: User) -> None:
    User.objects.create_user("other", password=PASSWORD)
    client = Client()
    for _ in range(login.MAX_FAILURES):
        log_in(client, "root", "wrong")
    assert log_in(client, "ROOT", "wrong").status_code == 429  # usernames match case-insensitively
    assert log_in(Client(), "root", PASSWORD, address="10.0.0.2").status_code == 302
    assert log_in(Client(), "other", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_successful_login_clears_the_failures(admin: User) -> None:
    client = Client()
    for _ in range(login.MAX_FAILURES - 1):
        log_in(client, "root", "wrong")
    assert log_in(client, "root", PASSWORD).status_code == 302
    for _ in range(login.MAX_FAILURES - 1):
        assert log_in(Client(), "root", "wrong").status_code == 200
    assert log_in(Client(), "root", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_failed_admin_logins_are_throttled_with_the_same_counters(admin: User) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(login.MAX_FAILURES - 2):
            assert admin_log_in(Client(), "root", "wrong").status_code == 200
        for _ in range(2):
            assert log_in(Client(), "root", "wrong").status_code == 200

        refused = admin_log_in(Client(), "root", PASSWORD)
        assert refused.status_code == 429 and refused["Retry-After"] == str(login.WINDOW)
        assert "Too many attempts" in refused.content.decode()
        assert log_in(Client(), "root", PASSWORD).status_code == 429

        clock.move_to(T0 + timedelta(seconds=login.WINDOW))
        client = Client()
        assert admin_log_in(client, "root", PASSWORD).status_code == 302
        assert client.session["_auth_user_id"] == str(admin.pk)


@pytest.mark.django_db
def test_usernames_that_django_normalises_alike_are_counted_as_one(admin: User) -> None:
    # Stripped, NFKC (fullwidth letters, the "ﬁ" ligature) and case-folded, as the form sends them.
    User.objects.create_user("fiona", password=PASSWORD)
    for spelling in ("fiona", " fiona ", "\ufb01ona", "\uff46\uff49\uff4f\uff4e\uff41", "FIONA"):
        assert log_in(Client(), spelling, "wrong").status_code == 200
    assert log_in(Client(), "fiona", PASSWORD).status_code == 429
    assert log_in(Client(), "root", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_failures_per_address_lock_out_that_address_for_any_username(admin: User, settings: Any) -> None:
    settings.RUNYARD_LOGIN_ADDRESS_MAX_FAILURES = 8
    with time_machine.travel(T0, tick=False) as clock:
        for number in range(8):  # a spray: each username fails once or twice only
            assert log_in(Client(), f"user{number // 2}", "wrong").status_code == 200
        refused = log_in(Client(), "root", PASSWORD)
        assert refused.status_code == 429 and refused["Retry-After"] == str(login.WINDOW)
        assert log_in(Client(), "root", PASSWORD, address="10.0.0.2").status_code == 302

        clock.move_to(T0 + timedelta(seconds=login.WINDOW))
        assert log_in(Client(), "root", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_failures_across_all_addresses_lock_out_every_login(admin: User, settings: Any) -> None:
    settings.RUNYARD_LOGIN_GLOBAL_MAX_FAILURES = 6
    with time_machine.travel(T0, tick=False) as clock:
        for number in range(6):  # a distributed spray: a new address and username every time
            assert log_in(Client(), f"user{number}", "wrong", address=f"198.51.100.{number}").status_code == 200
        clock.move_to(T0 + timedelta(seconds=100))
        refused = log_in(Client(), "root", PASSWORD, address="203.0.113.9")
        assert refused.status_code == 429 and refused["Retry-After"] == str(login.WINDOW - 100)

        clock.move_to(T0 + timedelta(seconds=login.WINDOW))
        assert log_in(Client(), "root", PASSWORD, address="203.0.113.9").status_code == 302


@pytest.mark.django_db
def test_x_forwarded_for_is_ignored_by_default(admin: User) -> None:
    # A new forwarded address for every guess does not escape the limit...
    for number in range(login.MAX_FAILURES):
        log_in(Client(), "root", "wrong", address="10.0.0.9", HTTP_X_FORWARDED_FOR=f"192.0.2.{number}")
    assert log_in(Client(), "root", PASSWORD, address="10.0.0.9").status_code == 429
    # ...and naming the victim's address does not lock the victim out.
    for _ in range(login.MAX_FAILURES):
        log_in(Client(), "root", "wrong", address="10.0.0.8", HTTP_X_FORWARDED_FOR="10.0.0.1")
    assert log_in(Client(), "root", PASSWORD, address="10.0.0.1").status_code == 302


@pytest.mark.django_db
def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(admin: User, settings: Any) -> None:
    settings.RUNYARD_TRUSTED_PROXIES = ["10.0.0.0/24", "172.16.0.1"]
    for _ in range(login.MAX_FAILURES):
        # The client wrote the left-most entry itself; our two proxies appended the rest.
        forwarded = "198.51.100.50, 203.0.113.5, 172.16.0.1"
        log_in(Client(), "root", "wrong", address="10.0.0.254", HTTP_X_FORWARDED_FOR=forwarded)
    behind_proxy = {"address": "10.0.0.254"}
    assert log_in(Client(), "root", PASSWORD, **behind_proxy, HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 429
    assert log_in(Client(), "root", PASSWORD, **behind_proxy, HTTP_X_FORWARDED_FOR="198.51.100.50").status_code == 302
    # From an address that is no proxy of ours, the header is ignored.
    spoofed = log_in(Client(), "root", PASSWORD, address="198.51.100.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert spoofed.status_code == 302


# --- markup in user data is escaped wherever shown -------------------------------------------


class Elements(HTMLParser):
    """Every element of a page, with its attributes, and the text of each script element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def assert_inert(html: str) -> None:
    parser = Elements()
    parser.feed(html)
    assert not any("__pwned" in script for script in parser.scripts), "injected <script> is live"
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), f"injected handler on <{tag} {attrs}>"
        assert attrs.get("src") != "x", f"injected <{tag}> element"
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert SCRIPT not in html and IMG not in html


def marked_run(env: Environment) -> Run:
    """A run carrying markup in every field the dashboard shows, its error included."""
    factories.task_definition("hello-world", max_attempts=1)
    run = factories.run(
        payload={"name": MARKUP},
        tags=[SCRIPT, IMG],
        metadata={MARKUP: MARKUP},
        concurrency_key=MARKUP,
        queue=f"q{MARKUP}",
        idempotency_key=MARKUP,
        idempotency_key_user=MARKUP,
        region=IMG,
        raw={"tags": [SCRIPT, IMG], "metadata": {MARKUP: MARKUP}, MARKUP: MARKUP},
    )
    engine.admit(now=run.created_at)
    attempt = engine.start_attempt(run_id=run.id, worker=f"w{MARKUP}")
    assert attempt is not None
    error = {"message": MARKUP, "name": MARKUP, "stackTrace": MARKUP}
    engine.fail_attempt(run_id=run.id, attempt=1, error=error, retry=None)
    return Run.objects.get(pk=run.pk)


@pytest.mark.django_db
def test_markup_in_payloads_tags_metadata_and_errors_is_escaped_on_the_run_page(
    client: Client, admin: User, dev: Environment
) -> None:
    run = marked_run(dev)
    client.force_login(admin)
    page = client.get(reverse("run", args=[run.id]), {"env": "dev"})
    assert page.status_code == 200
    html = page.content.decode()
    assert_inert(html)
    # Shown escaped in the payload, tags, metadata, error, queue, keys and options: not dropped.
    assert html.count("&lt;script&gt;window.__pwned=1") >= 8 and html.count("&lt;img src=") >= 8


@pytest.mark.django_db
def test_markup_is_escaped_in_the_runs_list(client: Client, admin: User, dev: Environment) -> None:
    marked_run(dev)
    client.force_login(admin)
    page = client.get(reverse("runs"), {"env": "dev"})
    assert page.status_code == 200
    assert_inert(page.content.decode())


@pytest.mark.django_db
def test_a_task_id_with_markup_can_never_be_triggered(client: Client, dev: Environment) -> None:
    key = factories.api_key("dev")
    body = json.dumps({"payload": "{}", "options": {}})
    response = client.post(
        "/api/v1/tasks/%3Cscript%3E/trigger", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code in (400, 404, 422), response.content
    assert "taskId" in response.json()["error"] or "task" in response.json()["error"].lower()
    assert not Run.objects.exists()


# --- no secret reaches the logs ------------------------------------------------------------


@pytest.mark.django_db
def test_no_api_key_password_or_session_id_is_logged_in_a_trigger_and_login_flow(
    client: Client, admin: User, dev: Environment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = factories.api_key("dev")
    factories.task_definition("hello-world")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    trigger = {"payload": '{"json":{"name":"Ada"}}', "options": {"payloadType": "application/super+json"}}

    response = client.post("/api/v1/tasks/hello-world/trigger", json.dumps(trigger), "application/json", **auth)
    assert response.status_code == 200
    run_id = response.json()["id"]
    engine.admit(now=Run.objects.get(pk=run_id).created_at)
    import example_tasks  # noqa: F401 - the worker runs the real hello-world

    worker.execute(run_id=run_id, hostname="w1")
    assert client.get(f"/api/v3/runs/{run_id}", **auth).json()["status"] == "COMPLETED"
    assert client.get("/api/v3/runs/run_missing", HTTP_AUTHORIZATION=f"Bearer {key}x").status_code == 401
    assert log_in(client, "root", PASSWORD + "x").status_code == 200
    assert log_in(client, "root", PASSWORD).status_code == 302
    session_id = client.cookies["sessionid"].value
    assert client.get(reverse("run", args=[run_id])).status_code == 200
    assert client.post(reverse("logout")).status_code == 302

    assert caplog.records, "the flow logged nothing at all: the capture is not working"
    logged = (
        "\n".join(f"{record.getMessage()} {record.args!r} {record.__dict__!r}" for record in caplog.records)
        + caplog.text
    )
    for secret in (key, key[7:], PASSWORD, session_id):
        assert secret not in logged


# --- CSRF on every dashboard form ------------------------------------------------------------


def dashboard_routes() -> Iterator[tuple[str, str]]:
    """(name, route) of every dashboard page: not the API (bearer keys), not Django's admin."""
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLPattern) and pattern.name and pattern.name not in {"metrics"}:
            yield pattern.name, str(pattern.pattern)
        elif isinstance(pattern, URLResolver) and pattern.app_name != "admin":
            continue


@pytest.mark.django_db
def test_every_dashboard_post_without_a_csrf_token_is_refused(admin: User, dev: Environment) -> None:
    run = factories.run()
    queue = Queue.objects.get(environment=dev, name=run.queue)
    arguments = {
        "run_id": run.id,
        "batch_id": "batch_x",
        "bulk_id": "bulk_x",
        "task_id": "hello-world",
        "queue_id": queue.pk,
        "schedule_id": "sched_x",
        "action": "pause",
        "hostname": engine.register_worker(hostname="celery@csrf", queues=[], specs=[]).hostname,
    }
    client = Client(enforce_csrf_checks=True)
    client.get(reverse("login"))  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    checked, reachable = [], []
    for name, route in dashboard_routes():
        client.force_login(admin)  # again: a POST to logout with a token logs out
        kwargs = {key: value for key, value in arguments.items() if re.search(rf"<(str:|int:)?{key}>", route)}
        if name == "worker_action":
            kwargs["action"] = "drain"
        url = reverse(name, kwargs=kwargs)
        refused = client.post(url, {"reason": "csrf test"})
        assert refused.status_code == 403, (name, refused.status_code)
        assert b"CSRF verification failed" in refused.content, name
        checked.append(name)
        allowed = client.post(url, {"reason": "csrf test", "csrfmiddlewaretoken": token})
        assert b"CSRF verification failed" not in allowed.content, f"{name} refused a valid token"
        if allowed.status_code not in (404, 405):  # a stub still to be filled in, or GET only
            reachable.append(name)
    assert {"login", "logout", "run_cancel", "run_replay", "run_reschedule", "api_keys"} <= set(checked)
    print("POST forms reached with a valid token:", sorted(reachable))
    forms = {
        *("logout", "run_cancel", "run_replay", "run_reschedule", "bulk_start", "task", "api_keys", "environments"),
        "queue_action",
        "worker_action",
        "schedule_new",
    }
    assert forms <= set(reachable), reachable
