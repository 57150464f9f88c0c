"""What a person sees of a parent and its batch of children: they appear and finish live."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 20_000  # ms

# Records each status the run panel's own badge shows, and that the page never reloads.
WATCH_PANEL = """
() => {
  window.__panel = [];
  window.__notReloaded = true;
  const record = () => {
    const badge = document.querySelector("#run-panel .run-title .badge");
    const text = badge ? badge.textContent.trim() : null;
    if (text && window.__panel[window.__panel.length - 1] !== text) window.__panel.push(text);
  };
  record();
  new MutationObserver(record).observe(document.body, { childList: true, subtree: true, characterData: true });
}
"""


def test_children_appear_and_complete_live_on_the_parents_page(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    # Delayed a little, so the page is open before any child exists: what follows comes live.
    # Its children wait a second, so the parent is WAITING for longer than the page's coalescing.
    parent_id = live_stack.trigger("fan-out", {"n": 3, "child_delay": "1s"}, delay="4s")
    page.goto(f"{live_stack.base_url}/runs/{parent_id}/")
    page.evaluate(WATCH_PANEL)
    assert page.evaluate("window.__panel") == ["Delayed"]
    assert page.locator("#run-children tr[id]").count() == 0
    expect(page.locator("#run-panel .run-why")).to_contain_text("Delayed until")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)

    children = page.locator("#run-children > tr[id]")
    expect(children).to_have_count(3, timeout=LIVE_TIMEOUT)
    expect(children.locator(".cell-task")).to_have_text(["hello-world"] * 3)
    expect(children.locator(".cell-status .badge")).to_have_text(["Completed"] * 3, timeout=LIVE_TIMEOUT)
    expect(page.locator("#run-panel .run-title .badge")).to_have_text("Completed", timeout=LIVE_TIMEOUT)
    expect(page.locator("#run-panel .run-why")).to_have_count(0)
    expect(page.locator("#run-output-title + pre")).to_contain_text("Hello, child 2!")
    assert page.evaluate("window.__notReloaded") is True
    panel: list[str] = page.evaluate("window.__panel")
    assert panel[0] == "Delayed" and panel[-1] == "Completed", panel
    assert "Waiting" in panel or "Executing" in panel, panel

    page.locator("#run-panel .related a[href^='/batches/']").first.click()
    expect(page.locator("body")).to_contain_text("Completed 3", timeout=LIVE_TIMEOUT)
    page.go_back()
    children.first.locator(".cell-id a").click()
    expect(page.locator("#run-panel .related")).to_contain_text(parent_id)


# Creates a batch of delayed hello-world runs in the stack, as runs.engine does for the API.
MAKE_BATCH = """
from datetime import timedelta
from django.utils import timezone
from runs import engine
from runs.models import Environment
when = timezone.now() + timedelta(seconds={delay})
entries = [
    engine.BatchEntry(task_id="hello-world", options=engine.TriggerOptions(delay_until=when, tags=["nightly"]))
    for _ in range({size})
]
print(engine.trigger_batch(environment=Environment.objects.get(slug="dev"), entries=entries, actor="test").id)
"""


def test_the_batch_page_counts_its_runs_live(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    # The last line: Django's shell may first say what it imported.
    batch_id = live_stack.manage("shell", "-c", MAKE_BATCH.format(delay=4, size=3)).strip().splitlines()[-1]
    page.goto(f"{live_stack.base_url}/batches/{batch_id}/")
    page.evaluate("window.__notReloaded = true")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    expect(page.locator('#batch-counts .count[data-status="DELAYED"]')).to_have_text(re.compile(r"^\s*Delayed\s+3\s*$"))

    completed = page.locator('#batch-counts .count[data-status="COMPLETED"]')
    expect(completed).to_have_text(re.compile(r"^\s*Completed\s+3\s*$"), timeout=LIVE_TIMEOUT)
    expect(page.locator("#batch-counts .count")).to_have_count(1)
    expect(page.locator("#batch-counts .counts-summary")).to_have_text("3 of 3 runs created · 3 finished")
    rows = page.locator("#runs-body > tr[id]")
    expect(rows).to_have_count(3)
    expect(rows.locator(".cell-status .badge")).to_have_text(["Completed"] * 3, timeout=LIVE_TIMEOUT)
    assert page.evaluate("window.__notReloaded") is True

    page.get_by_role("link", name="Filter runs by this batch").click()
    expect(page).to_have_url(re.compile(rf"/runs/\?env=dev&batch={batch_id}$"))
    expect(page.get_by_label("Batch")).to_have_value(batch_id)
    expect(page.locator("#runs-body > tr[id]")).to_have_count(3)
