"""What an operator sees on the queues and workers pages of a live Runyard: counts and runs change live.

Set RUNYARD_SCREENSHOTS to a directory (e.g. docs/screenshots) to also save queues.png and
workers.png at 1280x800, with a few more queues seeded so the page looks like a working day.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 20_000  # ms: a poll every 2 s, the engine and the worker in between
SCREENSHOTS = os.environ.get("RUNYARD_SCREENSHOTS", "")


def count(row: Locator, name: str) -> Locator:
    return row.locator(f'[data-count="{name}"]')


@pytest.fixture
def cancel_after(live_stack: LiveStack) -> Iterator[list[str]]:
    """Run ids to cancel when the test ends, so sleeping runs do not hold the shared worker."""
    run_ids: list[str] = []
    yield run_ids
    for run_id in run_ids:
        live_stack.api("POST", f"/api/v2/runs/{run_id}/cancel")


def test_queue_counts_change_live_per_concurrency_key(
    logged_in: Page, live_stack: LiveStack, cancel_after: list[str]
) -> None:
    page = logged_in
    name = f"ops-{secrets.token_hex(3)}"
    page.goto(f"{live_stack.base_url}/queues/?q={name}")
    expect(page.locator("#queues-table .empty-row")).to_contain_text(f"has a name containing {name}")
    page.evaluate("window.__notReloaded = true")

    # Limit 1 per key: tenant-a gets two runs (one waits), tenant-b one.
    queue = {"name": name, "concurrencyLimit": 1}
    for key in ("tenant-a", "tenant-a", "tenant-b"):
        cancel_after.append(live_stack.trigger("sleep", {"seconds": 30}, queue=queue, concurrencyKey=key))
    row = page.locator(f'tbody[data-queue="{name}"] .queue-row')
    expect(count(row, "running")).to_have_text("2", timeout=LIVE_TIMEOUT)
    expect(count(row, "queued")).to_have_text("1")
    expect(count(row, "delayed")).to_have_text("0")
    expect(row.locator(".cell-limit")).to_contain_text("1 per key")
    expect(row).to_contain_text("2 keys at limit")

    # Expand the keys from the keyboard: the toggle is a link, Enter follows it in place.
    toggle = row.get_by_role("link", name="Show keys")
    toggle.focus()
    page.keyboard.press("Enter")
    key_a = page.locator(f'tbody[data-queue="{name}"] tr[data-key="tenant-a"]')
    expect(key_a).to_be_visible()
    expect(count(key_a, "running")).to_have_text("1 / 1")
    expect(count(key_a, "queued")).to_have_text("1")
    expect(count(page.locator('tr[data-key="tenant-b"]'), "queued")).to_have_text("0")
    expect(page).to_have_url(re.compile(rf"open={name}"))
    expect(page.get_by_role("link", name="Hide keys")).to_be_focused()

    # Cancel the running tenant-a run: its waiting run is admitted, live.
    running_a = [r for r in cancel_after[:2] if live_stack.run(r)["status"] in ("DEQUEUED", "EXECUTING")]
    assert live_stack.api("POST", f"/api/v2/runs/{running_a[0]}/cancel").status_code == 200
    expect(count(key_a, "queued")).to_have_text("0", timeout=LIVE_TIMEOUT)
    expect(count(key_a, "running")).to_have_text("1 / 1")
    expect(count(row, "queued")).to_have_text("0")
    assert page.evaluate("window.__notReloaded") is True

    page.locator(f'tbody[data-queue="{name}"] [data-count="running"] a').first.click()
    expect(page).to_have_url(re.compile(rf"/runs/\?env=dev&queue={name}&status=DEQUEUED&status=EXECUTING$"))


def test_workers_page_lists_the_live_worker_with_its_queues_and_runs(
    logged_in: Page, live_stack: LiveStack, cancel_after: list[str]
) -> None:
    page = logged_in
    page.goto(f"{live_stack.base_url}/workers/")
    online = page.locator(".workers-card:not(.workers-offline) .worker-row")
    expect(online.first).to_contain_text("Online")
    expect(online.first.locator(".worker-queues")).to_contain_text(re.compile(r"(^|, )runyard\.small-1x(,|$)"))
    expect(online.first).to_contain_text("hello-world")

    run_id = live_stack.trigger("sleep", {"seconds": 30}, queue={"name": f"ops-{secrets.token_hex(3)}"})
    cancel_after.append(run_id)
    link = page.get_by_role("link", name=run_id)
    expect(link).to_be_visible(timeout=LIVE_TIMEOUT)
    expect(page.locator(f"#worker-run-{run_id} ~ .badge")).to_have_text("Executing")
    link.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_stack.base_url}/runs/{run_id}/")

    live_stack.api("POST", f"/api/v2/runs/{run_id}/cancel")
    page.goto(f"{live_stack.base_url}/workers/")
    expect(page.get_by_role("link", name=run_id)).to_have_count(0)

    if SCREENSHOTS:
        take_screenshots(page, live_stack, cancel_after)


# --- screenshots ---------------------------------------------------------------------------


def take_screenshots(page: Page, live_stack: LiveStack, cancel_after: list[str]) -> None:
    """A working day: runs on queues with and without limits and keys; admitted runs beyond the
    worker's two slots wait in Celery as Dequeued, which counts as running."""

    def sleep(queue: dict[str, object], key: str = "") -> None:
        options = {"concurrencyKey": key} if key else {}
        cancel_after.append(live_stack.trigger("sleep", {"seconds": 60}, queue=queue, **options))

    for key, n in (("acme", 3), ("globex", 1)):
        for _ in range(n):
            sleep({"name": "emails", "concurrencyLimit": 2}, key)
    for _ in range(3):
        sleep({"name": "reports", "concurrencyLimit": 1})
    for queue, key, n in (("emails", "initech", 2), ("reports", "", 2), ("webhooks", "", 1)):
        for _ in range(n):
            options = {"concurrencyKey": key} if key else {}
            cancel_after.append(live_stack.trigger("hello-world", {}, queue={"name": queue}, delay="6h", **options))
    live_stack.manage("shell", "-c", GONE_WORKER.format(action="add"))
    try:
        page.goto(f"{live_stack.base_url}/workers/")
        expect(page.locator(".worker-run")).to_have_count(2, timeout=LIVE_TIMEOUT)
        expect(page.locator(".worker-offline")).to_have_count(1)
        screenshot(page, "workers")
    finally:
        live_stack.manage("shell", "-c", GONE_WORKER.format(action="remove"))
    page.goto(f"{live_stack.base_url}/queues/")
    page.locator('tbody[data-queue="emails"]').get_by_role("link", name="Show keys").click()
    expect(page.locator('tr[data-key="acme"]')).to_be_visible()
    screenshot(page, "queues")


# A worker that was killed three minutes ago (a graceful stop deletes its row).
GONE_WORKER = """
from datetime import timedelta
from django.utils import timezone
from runs import engine, registry
if "{action}" == "add":
    now = timezone.now()
    queues = registry.worker_queues()[:2]
    engine.register_worker(hostname="celery@batch-2", queues=queues, specs=[], now=now - timedelta(hours=3))
    engine.worker_seen(hostname="celery@batch-2", now=now - timedelta(minutes=3))
else:
    engine.unregister_worker(hostname="celery@batch-2")
"""


def screenshot(page: Page, name: str) -> None:
    path = Path(SCREENSHOTS) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(path))
