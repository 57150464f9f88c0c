"""What a person sees: runs appear and change status live, without reloading the page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000  # ms
ORDER = ["Queued", "Dequeued", "Executing", "Completed"]

# Records every status each badge of the page shows, in order, as htmx swaps them in.
WATCH_BADGES = """
() => {
  window.__seen = {};
  window.__notReloaded = true;
  const record = () => {
    document.querySelectorAll("tr[id^='run-'], #run-panel").forEach((el) => {
      const badge = el.querySelector(".badge");
      if (!badge) return;
      const key = el.id === "run-panel" ? "panel" : el.id.slice(4);
      const seen = (window.__seen[key] = window.__seen[key] || []);
      if (seen[seen.length - 1] !== badge.textContent.trim()) seen.push(badge.textContent.trim());
    });
  };
  record();
  new MutationObserver(record).observe(document.body, { childList: true, subtree: true, characterData: true });
}
"""


def seen(page: Page, key: str) -> list[str]:
    statuses: list[str] = page.evaluate("(key) => window.__seen[key] || []", key)
    return statuses


def assert_went_live_to_completed(statuses: list[Any]) -> None:
    # The row shows the status of when it was rendered: a push that waited out the coalescing
    # interval (say, behind a reconnect's catch-up) may find the run already executing.
    assert statuses[0] in {"Queued", "Dequeued", "Executing"}, statuses
    assert statuses[-2:] == ["Executing", "Completed"], statuses
    assert statuses == sorted(statuses, key=ORDER.index), statuses


def test_a_triggered_run_appears_on_the_list_and_completes_live(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    page.evaluate(WATCH_BADGES)

    run_id = live_stack.trigger("sleep", {"seconds": 2})

    row = page.locator(f"#run-{run_id}")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
    expect(page.locator("#runs-body > tr").first).to_have_id(f"run-{run_id}")
    expect(row.locator(".badge")).to_have_text("Executing", timeout=LIVE_TIMEOUT)
    expect(row.locator(".badge")).to_have_text("Completed", timeout=LIVE_TIMEOUT)
    expect(row.locator(".cell-duration")).to_have_text(re.compile(r"^2\.\d s$"))
    assert page.locator(f"#runs-body > tr#run-{run_id}").count() == 1
    assert page.evaluate("window.__notReloaded") is True
    assert_went_live_to_completed(seen(page, run_id))


def test_the_run_page_follows_a_run_to_completion(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    run_id = live_stack.trigger("sleep", {"seconds": 2})
    page.goto(f"{live_stack.base_url}/runs/{run_id}/")
    page.evaluate(WATCH_BADGES)
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)

    badge = page.locator("#run-panel .run-title .badge")
    expect(badge).to_have_text("Executing", timeout=LIVE_TIMEOUT)
    expect(page.locator("#run-panel .status-meaning")).to_have_text("An attempt is running on a worker.")
    expect(badge).to_have_text("Completed", timeout=LIVE_TIMEOUT)
    expect(page.locator("#run-panel .status-meaning")).to_have_text("Finished successfully.")
    expect(page.locator("#run-output-title + pre")).to_contain_text('"slept": 2')
    expect(page.locator(".timeline tbody tr").last).to_contain_text("attempt succeeded")
    assert page.evaluate("window.__notReloaded") is True
    statuses = seen(page, "panel")
    # The page itself may already show Queued or Dequeued: what follows came over the websocket.
    assert statuses[-2:] == ["Executing", "Completed"], statuses
    assert statuses == sorted(statuses, key=ORDER.index), statuses
