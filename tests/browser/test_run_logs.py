"""What a person sees of a run's logs: lines tail in while it executes, the level filter keeps the
lines they ask for, and the .log download holds the lines.

Set RUNYARD_SCREENSHOTS to a directory (e.g. docs/screenshots) to also save run-logs.png."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000  # ms


def test_lines_appear_live_while_the_run_executes(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    run_id = live_stack.trigger("log-lines", {"lines": 15, "interval": 0.3})
    page.goto(f"{live_stack.base_url}/runs/{run_id}/")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    lines = page.locator("#run-logs-lines")
    expect(lines).to_contain_text("line 2 of 15", timeout=LIVE_TIMEOUT)
    # Seen while the run still executes: tailed in, not loaded with a finished page.
    expect(page.locator("#run-panel .run-title .badge")).to_have_text("Executing")
    expect(lines).to_contain_text("line 15 of 15", timeout=LIVE_TIMEOUT)
    expect(page.locator("#run-panel .run-title .badge")).to_have_text("Completed", timeout=LIVE_TIMEOUT)
    messages = lines.locator(".log-line .log-message").all_inner_texts()
    assert messages == [f"line {n} of 15" for n in range(1, 16)]  # each once, in order
    expect(page.locator("#run-logs-summary")).to_contain_text("Attempt 1: 15 lines")
    if shots := os.environ.get("RUNYARD_SCREENSHOTS"):
        page.locator("#run-logs").screenshot(path=str(Path(shots) / "run-logs.png"))


def test_the_level_filter_shows_only_error_lines_and_the_download_holds_the_log(
    logged_in: Page, live_stack: LiveStack
) -> None:
    page = logged_in
    run_id = live_stack.trigger("log-lines", {"fail": True, "lines": 3, "interval": 0}, maxAttempts=1)
    page.goto(f"{live_stack.base_url}/runs/{run_id}/")
    expect(page.locator("#run-panel .run-title .badge")).to_have_text("Failed", timeout=LIVE_TIMEOUT)
    lines = page.locator("#run-logs-lines")
    expect(lines).to_contain_text("giving up after 3 lines", timeout=LIVE_TIMEOUT)
    page.get_by_label("Level").select_option("ERROR")
    expect(lines.locator(".log-line")).to_have_count(1, timeout=LIVE_TIMEOUT)
    expect(lines.locator(".log-line .log-level")).to_have_text("ERROR")
    expect(lines).to_contain_text("giving up after 3 lines")
    expect(page.get_by_label("Level")).to_have_value("ERROR")

    page.get_by_label("Level").select_option("")
    expect(lines.locator(".log-line")).to_have_count(4, timeout=LIVE_TIMEOUT)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download .log").click()
    assert download.value.suggested_filename == f"{run_id}-attempt-1.log"
    text = download.value.path().read_text(encoding="utf-8")
    assert [line.split(" ", 1)[1] for line in text.splitlines()[:3]] == [
        f"INFO     [example_tasks] line {n} of 3" for n in (1, 2, 3)
    ]
    assert "ERROR    [example_tasks] giving up after 3 lines" in text
