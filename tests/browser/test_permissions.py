"""What each role sees in a live Runyard: a viewer without payloads, an admin creating an API key.

Set RUNYARD_SCREENSHOTS to a directory (e.g. docs/screenshots) to also save keys.png and
audit.png at 1280x800.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 20_000  # ms
SCREENSHOTS = os.environ.get("RUNYARD_SCREENSHOTS", "")
SECRET = re.compile(r"^tr_dev_[A-Za-z0-9]{32}$")

# Runs in the live stack's `manage.py shell`: a user in one group (made if missing, with `perms`).
MAKE_USER = """
from django.contrib.auth.models import Group, Permission, User
group, _ = Group.objects.get_or_create(name={group!r})
for codename in {perms!r}:
    group.permissions.add(Permission.objects.get(content_type__app_label="runs", codename=codename))
User.objects.create_user({username!r}, password={password!r}).groups.add(group)
"""


def make_user(live_stack: LiveStack, group: str, perms: tuple[str, ...] = ()) -> tuple[str, str]:
    username, password = f"{group.lower()}-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    live_stack.manage("shell", "-c", MAKE_USER.format(group=group, perms=perms, username=username, password=password))
    return username, password


@pytest.fixture
def log_in(chromium: Browser, live_stack: LiveStack) -> Iterator[object]:
    """log_in(username, password) -> a page of a fresh browser context, logged in with the form."""
    contexts = []

    def open_page(username: str, password: str) -> Page:
        context = chromium.new_context(viewport={"width": 1280, "height": 800})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_stack.base_url)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_stack.base_url}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{live_stack.base_url}/runs/")
        return page

    yield open_page
    for context in contexts:
        context.close()


def test_a_viewer_without_payloads_sees_the_run_live_but_no_payload_and_no_actions(
    log_in, logged_in: Page, live_stack: LiveStack
) -> None:
    marker = f"secret-{secrets.token_hex(4)}"
    viewer = log_in(*make_user(live_stack, "Support", ("view_run",)))
    # Delayed a little: the page is open before the run starts, so what follows arrives live.
    run_id = live_stack.trigger("hello-world", {"name": marker}, delay="3s", metadata={"note": marker})
    viewer.goto(f"{live_stack.base_url}/runs/{run_id}/")
    expect(viewer.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    expect(viewer.locator("#run-panel .run-title .badge")).to_have_text("Completed", timeout=LIVE_TIMEOUT)
    panel = viewer.locator("#run-panel")
    expect(viewer.locator("#run-payload-title + .payload-hidden")).to_have_text(
        "Hidden: your role cannot see payloads."
    )
    expect(viewer.locator("#run-output-title + .payload-hidden")).to_be_visible()
    expect(panel).not_to_contain_text(marker)
    assert marker not in viewer.content()
    expect(viewer.locator(".run-actions")).to_have_count(0)
    expect(viewer.get_by_role("link", name=re.compile("Cancel run|Replay|Reschedule"))).to_have_count(0)
    expect(viewer.get_by_role("navigation", name="Main").get_by_role("link", name="Audit")).to_have_count(0)

    # The same run, to the superuser: the payload, the output and the actions are there.
    logged_in.goto(f"{live_stack.base_url}/runs/{run_id}/")
    expect(logged_in.locator("#run-payload-title + pre")).to_contain_text(marker)
    expect(logged_in.locator("#run-output-title + pre")).to_contain_text(f"Hello, {marker}!")
    expect(logged_in.get_by_role("link", name="Replay…")).to_be_visible()


def test_an_admin_creates_an_api_key_that_is_shown_once_and_revokes_it(log_in, live_stack: LiveStack) -> None:
    page = log_in(*make_user(live_stack, "Admins"))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(r"/settings/keys/"))
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    name = f"ci {secrets.token_hex(3)}"
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create key").click()
    shown = page.locator("#new-key-secret")
    expect(shown).to_be_visible()
    secret = shown.inner_text().strip()
    assert SECRET.match(secret), secret
    expect(page.locator(".secret-card")).to_contain_text("shown only once")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    row = page.locator("#api-keys tbody tr", has_text=name)
    expect(row).to_contain_text(f"{secret[:11]}…")
    expect(row).to_contain_text("Active")
    if SCREENSHOTS:
        screenshot(page, "keys")

    assert trigger(live_stack, secret) == 200
    page.reload()
    expect(page.locator("#new-key-secret")).to_have_count(0)
    assert secret not in page.content()
    row = page.locator("#api-keys tbody tr", has_text=name)
    expect(row).to_contain_text(f"{secret[:11]}…")

    row.get_by_text("Revoke…").click()
    row.get_by_label("Reason").fill("rotated after the demo")
    row.get_by_role("button", name="Revoke key").click()
    expect(page.locator(".notice")).to_contain_text(f"Revoked “{name}”")
    expect(page.locator("#api-keys tbody tr", has_text=name)).to_contain_text("Revoked")
    assert trigger(live_stack, secret) == 401

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    rows = page.locator("#audit-body tr")
    expect(rows.nth(0)).to_contain_text("apikey.revoke")
    expect(rows.nth(0)).to_contain_text("rotated after the demo")
    expect(rows.nth(1)).to_contain_text("apikey.create")
    assert secret not in page.content()
    if SCREENSHOTS:
        audit_screenshot(page, live_stack)


def trigger(live_stack: LiveStack, key: str) -> int:
    response = requests.post(
        f"{live_stack.base_url}/api/v1/tasks/hello-world/trigger",
        json={"payload": '{"json":{"name":"key check"}}', "options": {}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return response.status_code


# --- screenshots ---------------------------------------------------------------------------

# Operator actions as the dashboard records them, on real runs, so the audit page looks like a working day.
SEED_AUDIT = """
from datetime import timedelta
from django.utils import timezone
from runs.models import AuditEntry, Environment
dev = Environment.objects.get(slug="dev")
now = timezone.now()
rows = [
    (9, "maria", "run.trigger", {run0!r}, "", {{"task": "hello-world", "options": {{"tags": ["manual"]}}}}),
    (7, "maria", "run.cancel", {run1!r}, "customer asked to stop the import", {{"from": "DELAYED"}}),
    (5, "tom", "run.reschedule", {run2!r}, "wait for the nightly window", {{"delay": "2h"}}),
    (3, "tom", "run.replay", {run0!r}, "retry after the fix in #412", {{"new_run": {run2!r}}}),
    (2, "maria", "bulk.cancel", "bulk_7h2k9d0q3m1x5c8v4b6n2z1aa", "stuck after the outage",
     {{"total": 128, "filters": {{"status": ["QUEUED"], "task": ["send-email"]}}}}),
]
for minutes, user, action, target, reason, data in rows:
    AuditEntry.objects.create(at=now - timedelta(minutes=minutes), username=user, environment=dev,
                              action=action, target=target, reason=reason, data=data)
"""


def audit_screenshot(page: Page, live_stack: LiveStack) -> None:
    runs = [live_stack.trigger("hello-world", {"name": f"audit {i}"}) for i in range(3)]
    live_stack.manage("shell", "-c", SEED_AUDIT.format(run0=runs[0], run1=runs[1], run2=runs[2]))
    page.reload()
    expect(page.locator("#audit-body tr", has_text="bulk.cancel")).to_have_count(1)
    screenshot(page, "audit")


def screenshot(page: Page, name: str) -> None:
    path = Path(SCREENSHOTS) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)
    page.screenshot(path=str(path))
