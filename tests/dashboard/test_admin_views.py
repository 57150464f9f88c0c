"""Admin pages: API keys (shown once, stored hashed, revocable), environments, and the audit log."""

from __future__ import annotations

import hashlib
import html as html_module
import json
import logging
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard import admin_views
from runs.models import ApiKey, AuditEntry, Environment, Run
from tests import factories

SECRET = re.compile(r"tr_(?:dev|stg|prod)_[A-Za-z0-9]{32}")
TRIGGER_BODY = json.dumps({"payload": json.dumps({"json": {"name": "Ada"}}), "options": {}})


@pytest.fixture
def admin(db: None) -> User:
    user = User.objects.create_user(username="ada", password=None)
    user.groups.add(Group.objects.get(name="Admins"))
    return user


@pytest.fixture
def browser(client: Client, admin: User) -> Client:
    client.force_login(admin)
    return client


def trigger_with(key: str) -> int:
    """POST /api/v1/tasks/hello-world/trigger with the key, as the SDK does; the status code."""
    factories.task_definition("hello-world")
    response = Client().post(
        "/api/v1/tasks/hello-world/trigger",
        TRIGGER_BODY,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    return response.status_code


def create_key(browser: Client, name: str = "billing", env: str = "dev", **headers: str) -> tuple[str, str]:
    """Create a key through the page; the response's HTML and the secret it shows."""
    response = browser.post(f"/settings/keys/?env={env}", {"action": "create", "name": name}, **headers)
    assert response.status_code == 200
    html = response.content.decode()
    secrets = set(SECRET.findall(html))
    assert len(secrets) == 1, secrets
    return html, secrets.pop()


# --- API keys -------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_only_its_sha256_is_stored(
    browser: Client, caplog: pytest.LogCaptureFixture
) -> None:
    factories.environment("dev")
    with caplog.at_level(logging.DEBUG):
        html, secret = create_key(browser)
    assert "shown only once" in html
    key = ApiKey.objects.get(name="billing")
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps(list(ApiKey.objects.values()), default=str)  # no column holds it
    assert key.hint == secret[:11] and f"{key.hint}…" in html
    assert secret not in caplog.text
    # Never again: not on the next visit.
    again = browser.get("/settings/keys/?env=dev").content.decode()
    assert secret not in again and not SECRET.search(again)
    assert f"{key.hint}…" in again and "billing" in again


def test_the_response_showing_a_secret_is_never_cached(browser: Client) -> None:
    response = browser.post("/settings/keys/?env=dev", {"action": "create", "name": "ci"})
    assert "no-store" in response["Cache-Control"]
    assert "no-store" not in browser.get("/settings/keys/?env=dev").get("Cache-Control", "")


def test_a_key_created_in_the_dashboard_works_against_the_api_until_revoked(browser: Client) -> None:
    _, secret = create_key(browser, "deploys")
    assert trigger_with(secret) == 200
    key = ApiKey.objects.get(name="deploys")
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None
    listed = browser.get("/settings/keys/?env=dev").content.decode()
    assert "never" not in listed.split(f'id="key-{key.pk}"')[1].split("</tr>")[0]

    response = browser.post("/settings/keys/?env=dev", {"action": "revoke", "key": key.pk, "reason": "leaked in a log"})
    assert response.status_code == 303 and response["Location"] == "/settings/keys/?env=dev"
    assert trigger_with(secret) == 401
    page = browser.get(response["Location"]).content.decode()
    assert "Revoked “deploys”: requests with it now get 401." in page
    row = page.split(f'id="key-{key.pk}"')[1].split("</tr>")[0]
    assert "Revoked" in row and "Revoke…" not in row


def test_creating_and_revoking_are_audited_without_the_secret(browser: Client) -> None:
    _, secret = create_key(browser, "billing")
    key = ApiKey.objects.get(name="billing")
    browser.post("/settings/keys/?env=dev", {"action": "revoke", "key": key.pk, "reason": "rotation"})
    entries = list(AuditEntry.objects.order_by("id"))
    assert [(e.action, e.target, e.username) for e in entries] == [
        ("apikey.create", f"apikey_{key.pk}", "ada"),
        ("apikey.revoke", f"apikey_{key.pk}", "ada"),
    ]
    assert entries[0].data == {"name": "billing", "hint": key.hint} and entries[1].reason == "rotation"
    assert all(e.environment is not None and e.environment.slug == "dev" for e in entries)
    stored = json.dumps(list(AuditEntry.objects.values()), default=str)
    assert secret not in stored and secret[len(key.hint) :] not in stored


def test_htmx_create_swaps_only_the_keys_panel(browser: Client) -> None:
    html, _ = create_key(browser, "htmx", HTTP_HX_REQUEST="true")
    assert html.startswith('<div id="api-keys">') and "<html" not in html


def test_a_key_needs_a_name_and_the_error_is_next_to_the_field(browser: Client) -> None:
    response = browser.post("/settings/keys/?env=dev", {"action": "create", "name": "  "})
    html = response.content.decode()
    assert response.status_code == 422
    field = html.split('<div class="field has-error">')[1].split("</div>")[0]
    assert 'name="name"' in field and "Name the key" in field
    assert not ApiKey.objects.exists() and not AuditEntry.objects.exists()
    assert not SECRET.search(html)


def test_keys_are_listed_per_environment(browser: Client) -> None:
    ApiKey.generate(factories.environment("dev"), name="dev-key")
    ApiKey.generate(factories.environment("prod"), name="prod-key")
    dev = browser.get("/settings/keys/?env=dev").content.decode()
    prod = browser.get("/settings/keys/?env=prod").content.decode()
    assert "dev-key" in dev and "prod-key" not in dev
    assert "prod-key" in prod and "dev-key" not in prod and "tr_prod_" in prod


def test_a_prod_key_is_created_for_prod(browser: Client) -> None:
    factories.environment("prod")
    _, secret = create_key(browser, "prod deploys", env="prod")
    assert secret.startswith("tr_prod_")
    assert ApiKey.objects.get(name="prod deploys").environment.slug == "prod"


def test_revoking_twice_or_an_unknown_key_changes_nothing(browser: Client) -> None:
    key, _ = ApiKey.generate(factories.environment("dev"), name="old")
    browser.post("/settings/keys/?env=dev", {"action": "revoke", "key": key.pk})
    revoked_at = ApiKey.objects.get(pk=key.pk).revoked_at
    page = browser.post("/settings/keys/?env=dev", {"action": "revoke", "key": key.pk}, follow=True).content.decode()
    assert "was already revoked" in page
    page = browser.post("/settings/keys/?env=dev", {"action": "revoke", "key": "nope"}, follow=True).content.decode()
    assert "No API key with id &#x27;nope&#x27;" in page
    assert ApiKey.objects.get(pk=key.pk).revoked_at == revoked_at
    assert AuditEntry.objects.filter(action="apikey.revoke").count() == 1


def test_revoking_asks_for_confirmation_first(browser: Client) -> None:
    ApiKey.generate(factories.environment("dev"), name="ci")
    html = browser.get("/settings/keys/?env=dev").content.decode()
    confirm = html.split('<details class="confirm">')[1].split("</details>")[0]
    assert "<summary" in confirm and "This cannot be undone." in confirm and 'value="revoke"' in confirm


# --- environments ---------------------------------------------------------------------------


def test_an_admin_creates_an_environment_that_every_page_then_offers(browser: Client) -> None:
    response = browser.post("/settings/environments/", {"slug": "preview", "name": "Preview", "kind": "STAGING"})
    assert response.status_code == 303
    environment = Environment.objects.get(slug="preview")
    assert (environment.name, environment.kind) == ("Preview", "STAGING")
    page = browser.get(response["Location"]).content.decode()
    assert "Created Preview" in page and 'href="/settings/keys/?env=preview"' in page
    entry = AuditEntry.objects.get(action="environment.create")
    assert entry.target == "env_preview" and entry.data == {"slug": "preview", "name": "Preview", "kind": "STAGING"}
    # The switcher lists it, and its keys are staging keys that trigger runs in it.
    runs = browser.get("/runs/").content.decode()
    assert 'href="/runs/?env=preview"' in runs and ">Preview</a>" in runs
    _, secret = create_key(browser, "preview ci", env="preview")
    assert secret.startswith("tr_stg_") and trigger_with(secret) == 200
    assert Run.objects.get().environment == environment


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        (
            "Bad Slug!",
            "is not a valid slug: use 2 to 32 lowercase letters, digits and hyphens, starting with a letter.",
        ),
        ("9lives", "is not a valid slug"),
        ("x" * 33, "at most 32 characters"),
        ("", "This field is required."),
        ("dev", "An environment with the slug “dev” already exists."),
    ],
)
def test_a_bad_slug_is_shown_next_to_the_slug_field(browser: Client, slug: str, message: str) -> None:
    factories.environment("dev")
    response = browser.post("/settings/environments/", {"slug": slug, "name": "Somewhere", "kind": "STAGING"})
    html = response.content.decode()
    assert response.status_code == 422
    field = html.split('<div class="field has-error">')[1].split("</div>")[0]
    assert 'name="slug"' in field and message in field
    assert 'value="Somewhere"' in html  # what was typed stays
    assert not Environment.objects.filter(name="Somewhere").exists() and not AuditEntry.objects.exists()


def test_a_slug_taken_by_a_concurrent_request_is_a_field_error_not_a_500(
    browser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    factories.environment("dev")
    # As if another request created "dev" after this form was validated.
    monkeypatch.setattr(admin_views.EnvironmentForm, "clean_slug", lambda form: form.cleaned_data["slug"])
    response = browser.post("/settings/environments/", {"slug": "dev", "name": "Dev again", "kind": "STAGING"})
    assert response.status_code == 422
    field = response.content.decode().split('<div class="field has-error">')[1].split("</div>")[0]
    assert "An environment with the slug “dev” already exists." in field
    assert not AuditEntry.objects.exists()


def test_a_bad_kind_is_refused(browser: Client) -> None:
    response = browser.post("/settings/environments/", {"slug": "qa", "name": "QA", "kind": "MARS"})
    assert response.status_code == 422 and "MARS is not one of the available choices" in response.content.decode()


def test_environments_list_capped_run_counts_and_key_counts(browser: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_views, "RUN_COUNT_CAP", 2)
    for _ in range(3):
        factories.run(env="dev")
    factories.run(env="prod")
    ApiKey.generate(factories.environment("dev"), name="a")
    revoked, _ = ApiKey.generate(factories.environment("dev"), name="b")
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        html = browser.get("/settings/environments/").content.decode()
    dev = html.split('id="env-dev"')[1].split("</tr>")[0]
    prod = html.split('id="env-prod"')[1].split("</tr>")[0]
    assert re.findall(r'<td class="num">([^<]*)</td>', dev) == ["2+", "1", "1"]
    assert re.findall(r'<td class="num">([^<]*)</td>', prod) == ["1", "0", "0"]
    counts = [q["sql"] for q in queries.captured_queries if 'FROM "runs_run"' in q["sql"]]
    assert counts and all("LIMIT 3" in sql for sql in counts)


# --- the audit log -------------------------------------------------------------------------


def entry(action: str, target: str = "", username: str = "ada", minutes_ago: float = 0, **fields: object) -> AuditEntry:
    return AuditEntry.objects.create(
        at=timezone.now() - timedelta(minutes=minutes_ago),
        username=username,
        action=action,
        target=target,
        environment=factories.environment("dev"),
        **fields,
    )


def audit_ids(html: str) -> list[int]:
    return [int(part.split('"', 1)[0]) for part in html.split('<tr id="audit-')[1:]]


def test_audit_log_lists_actions_newest_first_with_links_reason_and_data(browser: Client) -> None:
    old = entry("run.cancel", "run_abc", reason="stuck for an hour", minutes_ago=5, data={"from": "EXECUTING"})
    new = entry("bulk.replay", "bulk_xyz", username="bo", data={"total": 3, "filters": {"status": ["FAILED"]}})
    html = browser.get("/audit/").content.decode()
    assert audit_ids(html) == [new.pk, old.pk]
    assert 'href="/runs/run_abc/?env=dev"' in html and 'href="/runs/bulk/bulk_xyz/?env=dev"' in html
    assert "stuck for an hour" in html
    assert "{&quot;from&quot;: &quot;EXECUTING&quot;}" in html
    assert "run.cancel" in html and "bulk.replay" in html and ">bo</a>" in html


def test_long_data_is_cut_to_one_line_with_the_rest_on_hover(browser: Client) -> None:
    entry("bulk.cancel", "bulk_1", data={"run_ids": [f"run_{i:025d}" for i in range(40)]})
    html = browser.get("/audit/").content.decode()
    cell = html.split('<td class="cell-data">')[1].split("</td>")[0]
    shown = html_module.unescape(cell.split(">", 1)[1].split("</code>")[0])
    assert len(shown) == admin_views.DATA_SHOWN and shown.endswith("…")
    assert "run_0000000000000000000000039" in cell  # in the title


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("user=bo", ["bo-cancel"]),
        ("action=run.cancel", ["bo-cancel", "ada-cancel"]),
        ("action=run.*", ["ada-replay", "bo-cancel", "ada-cancel"]),
        ("target=run_two", ["ada-replay", "bo-cancel"]),
        ("user=ada&action=run.*&target=run_two", ["ada-replay"]),
        ("user=nobody", []),
    ],
)
def test_audit_log_filters_by_user_action_and_target(browser: Client, query: str, expected: list[str]) -> None:
    names = {
        entry("run.cancel", "run_one", minutes_ago=4).pk: "ada-cancel",
        entry("run.cancel", "run_two", username="bo", minutes_ago=3).pk: "bo-cancel",
        entry("run.replay", "run_two", minutes_ago=2).pk: "ada-replay",
        entry("apikey.create", "apikey_1", minutes_ago=1).pk: "ada-key",
    }
    html = browser.get(f"/audit/?{query}").content.decode()
    assert [names[pk] for pk in audit_ids(html)] == expected
    if not expected:
        assert "No action matches these filters." in html


def test_audit_log_pages_by_keyset_without_counting(browser: Client) -> None:
    size = admin_views.AUDIT_PAGE_SIZE
    base = timezone.now() - timedelta(hours=1)
    env = factories.environment("dev")
    AuditEntry.objects.bulk_create(
        AuditEntry(
            at=base + timedelta(seconds=i // 2), username="ada", action="run.cancel", target=f"run_{i}", environment=env
        )
        for i in range(size * 2 + 7)  # pairs share a timestamp: the id breaks ties
    )
    newest_first = list(AuditEntry.objects.order_by("-at", "-id").values_list("pk", flat=True))
    seen: list[int] = []
    url = "/audit/?action=run.cancel"
    pages = []
    with CaptureQueriesContext(connection) as queries:
        while url:
            html = browser.get(url).content.decode()
            pages.append(html)
            seen += audit_ids(html)
            older = re.search(r'rel="next" href="\?([^"]+)"', html)
            url = f"/audit/?{older.group(1).replace('&amp;', '&')}" if older else ""
    assert seen == newest_first
    assert [len(audit_ids(page)) for page in pages] == [size, size, 7]
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    # And back: the last page's "Newer" link leads to the page before it.
    newer = re.search(r'rel="prev" href="\?([^"]+)"', pages[-1])
    assert newer is not None and "action=run.cancel" in newer.group(1)
    back = browser.get(f"/audit/?{newer.group(1).replace('&amp;', '&')}").content.decode()
    assert audit_ids(back) == newest_first[size : size * 2]


def test_a_bad_audit_cursor_shows_the_first_page(browser: Client) -> None:
    first = entry("run.cancel", "run_1")
    for cursor in ["nonsense", "123.abc", "99999999999999999999999.1"]:
        assert audit_ids(browser.get(f"/audit/?after={cursor}").content.decode()) == [first.pk]


def test_targets_link_to_their_pages(db: None) -> None:
    dev = factories.environment("dev")
    assert admin_views.target_link("run_abc", dev) == "/runs/run_abc/?env=dev"
    assert admin_views.target_link("bulk_abc", dev) == "/runs/bulk/bulk_abc/?env=dev"
    assert admin_views.target_link("batch_abc", dev) == "/batches/batch_abc/?env=dev"
    assert admin_views.target_link("apikey_3", dev) == "/settings/keys/?env=dev"
    assert admin_views.target_link("env_dev", dev) == "/settings/environments/"
    assert admin_views.target_link("something", dev) == ""


# --- the environment switcher ----------------------------------------------------------------


def switcher_links(html: str) -> dict[str, str]:
    nav = html.split('<nav class="env-switcher"')[1].split("</nav>")[0]
    return {name: href.replace("&amp;", "&") for href, name in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav)}


def test_the_switcher_keeps_pages_that_exist_in_every_environment(browser: Client) -> None:
    factories.environment("dev"), factories.environment("prod")
    run = factories.run(env="dev")
    assert switcher_links(browser.get("/settings/keys/?env=dev").content.decode())["Production"] == (
        "/settings/keys/?env=prod"
    )
    audit = switcher_links(browser.get("/audit/?user=bo&target=run_x").content.decode())
    assert audit["Production"] == "/audit/?env=prod&user=bo&target=run_x"
    runs = switcher_links(browser.get("/runs/?env=dev&status=FAILED&batch=batch_x&after=1.run_x").content.decode())
    assert runs["Production"] == "/runs/?env=prod&status=FAILED"  # a batch and a cursor belong to dev
    # A run belongs to one environment: switching goes to the other one's runs list.
    assert switcher_links(browser.get(f"/runs/{run.id}/").content.decode())["Production"] == "/runs/?env=prod"
