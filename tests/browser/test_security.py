"""Markup in a run's payload, tags and metadata stays text in a real browser: nothing runs."""

from __future__ import annotations

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000  # ms
SCRIPT = "<script>alert('script')</script>"
IMG = "<img src=x onerror=\"alert('img')\">"
SVG = "<svg onload=\"alert('svg')\">"


def test_markup_in_run_data_never_executes_on_the_runs_list_or_the_run_page(
    logged_in: Page, live_stack: LiveStack
) -> None:
    page = logged_in
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    run_id = live_stack.trigger(
        "hello-world",
        {"name": SCRIPT + IMG + SVG},
        tags=[SCRIPT, IMG, SVG],
        metadata={SCRIPT: IMG, "svg": SVG},
        concurrencyKey=IMG,
    )
    # Pushed live into the list over the websocket, then rendered on its own page.
    row = page.locator(f"#run-{run_id}")
    expect(row).to_contain_text("Completed", timeout=LIVE_TIMEOUT)
    expect(row).to_contain_text(SCRIPT)
    assert page.locator("img[onerror], svg[onload]").count() == 0

    page.goto(f"{live_stack.base_url}/runs/{run_id}/")
    expect(page.locator("body")).to_contain_text("Hello, " + SCRIPT)
    expect(page.locator("body")).to_contain_text(IMG)
    assert page.locator("img[onerror], svg[onload]").count() == 0
    assert page.evaluate("() => [...document.scripts].filter((s) => s.text.includes('alert')).length") == 0
    assert dialogs == []
