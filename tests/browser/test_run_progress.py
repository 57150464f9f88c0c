"""What a person sees of a run reporting its progress: the bar moves on the run page and in the
runs list while the run executes (example_tasks.progress_steps, gated: each step waits until
the test raises the run's `advance` through the API, so nothing here waits on a clock).

Set RUNYARD_SCREENSHOTS to a directory (e.g. docs/screenshots) to also save run-progress.png."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000  # ms


def advance(live_stack: LiveStack, run_id: str) -> None:
    """Let the run take its next step (a metadata increment, as the official SDK sends it)."""
    body = {"operations": [{"type": "increment", "key": "advance", "value": 1}]}
    response = live_stack.api("PUT", f"/api/v1/runs/{run_id}/metadata", body)
    assert response.status_code == 200, response.text


def test_the_progress_bar_moves_while_the_run_executes(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    tag = f"progress-{secrets.token_hex(4)}"
    run_id = live_stack.trigger("progress-steps", {"steps": 4, "gated": True}, tags=[tag])
    page.goto(f"{live_stack.base_url}/runs/{run_id}/")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    bar = page.locator("#run-panel .run-progress")
    badge = page.locator("#run-panel .run-title .badge")
    expect(bar).to_have_attribute("value", "0", timeout=LIVE_TIMEOUT)
    advance(live_stack, run_id)
    expect(bar).to_have_attribute("value", "25", timeout=LIVE_TIMEOUT)
    expect(page.locator("#run-panel .run-progress-label")).to_have_text("25%")
    expect(badge).to_have_text("Executing")

    listing = page.context.new_page()
    listing.goto(f"{live_stack.base_url}/runs/?tag={tag}")
    row_bar = listing.locator(f"#run-{run_id} .run-progress")
    expect(row_bar).to_have_attribute("value", "25", timeout=LIVE_TIMEOUT)
    advance(live_stack, run_id)
    expect(row_bar).to_have_attribute("value", "50", timeout=LIVE_TIMEOUT)
    expect(bar).to_have_attribute("value", "50", timeout=LIVE_TIMEOUT)
    expect(listing.locator(f"#run-{run_id} .cell-status .badge")).to_have_text("Executing")
    if shots := os.environ.get("RUNYARD_SCREENSHOTS"):
        page.locator("#run-panel .run-head").screenshot(path=str(Path(shots) / "run-progress.png"))

    advance(live_stack, run_id)
    advance(live_stack, run_id)
    expect(badge).to_have_text("Completed", timeout=LIVE_TIMEOUT)
    expect(bar).to_have_attribute("value", "100")
    expect(row_bar).to_have_attribute("value", "100", timeout=LIVE_TIMEOUT)
    listing.close()
