"""What an operator sees draining a worker: its page from the workers page, Drain with a reason,
the badge, a run that waits for it saying why, and Undrain letting the run go."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.live import EXTRA_REGION, LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 20_000  # ms: a poll every 2 s, the engine and the worker in between
QUEUE = f"runyard.small-1x.{EXTRA_REGION}"  # the stack's region queue: only this test's worker serves it


def test_an_operator_drains_a_worker_sees_why_a_run_waits_and_undrains_it(
    logged_in: Page, live_stack: LiveStack
) -> None:
    page = logged_in
    with live_stack.extra_worker("browser-drain", "--concurrency", "1", "-Q", QUEUE) as hostname:
        page.goto(f"{live_stack.base_url}/workers/")
        page.locator(f'.worker-row[data-worker="{hostname}"]').get_by_role("link", name=hostname).click()
        expect(page.locator("h1")).to_have_text(hostname)
        expect(page.locator("[data-worker-status]")).to_contain_text("Online")

        page.get_by_label(f"Reason for draining {hostname}").fill("kernel upgrade")
        page.get_by_role("button", name="Drain").click()
        expect(page.locator("[data-worker-status]")).to_contain_text("Draining")
        expect(page.locator("[data-draining-detail]")).to_contain_text("kernel upgrade")
        expect(page.get_by_role("button", name="Undrain")).to_be_visible()

        page.goto(f"{live_stack.base_url}/workers/")
        expect(page.locator(f'.worker-row[data-worker="{hostname}"] [data-draining]')).to_have_text("Draining")

        run_id = live_stack.trigger("hello-world", {"name": "Ada"}, region=EXTRA_REGION)
        page.goto(f"{live_stack.base_url}/runs/{run_id}/")
        why = page.locator(".run-why")
        expect(why).to_contain_text("draining", timeout=LIVE_TIMEOUT)
        expect(why).to_contain_text(hostname)

        page.goto(f"{live_stack.base_url}/workers/{hostname}/")
        page.get_by_role("button", name="Undrain").click()
        expect(page.locator("[data-worker-status]")).to_contain_text("Online")
        live_stack.run_until(run_id, lambda run: run["status"] == "COMPLETED", "to complete once undrained")
        expect(page.locator(f'[data-attempt="{run_id}-1"]')).to_be_visible(timeout=LIVE_TIMEOUT)
