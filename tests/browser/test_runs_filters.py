"""The runs list's filters as a person uses them: from the keyboard, in the URL, with Back, and live.

Set RUNYARD_SCREENSHOTS to a directory (e.g. docs/screenshots) to also save runs.png at
1280x800: a filtered list of runs in several statuses.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 15_000  # ms
SCREENSHOTS = os.environ.get("RUNYARD_SCREENSHOTS", "")


def rows(page: Page) -> list[str]:
    ids: list[str] = page.eval_on_selector_all("#runs-body > tr[id]", "rows => rows.map(r => r.id.slice(4))")
    return ids


def done(live_stack: LiveStack, run_id: str) -> None:
    live_stack.run_until(run_id, lambda run: run["status"] in {"COMPLETED", "FAILED"}, "to finish")


def tick(page: Page, menu: str, option: str) -> None:
    """Open a filter menu from the keyboard, toggle one option with Space, close it with Escape."""
    page.locator(f"#filter-{menu}-menu").focus()
    page.keyboard.press("Enter")
    box = page.get_by_role("checkbox", name=option, exact=True)
    expect(box).to_be_visible()
    box.focus()
    page.keyboard.press("Space")
    page.keyboard.press("Escape")
    expect(box).to_be_hidden()


def test_status_and_task_filters_live_in_the_url_and_back_restores_them(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    tag = f"t-{secrets.token_hex(4)}"
    finished = live_stack.trigger("hello-world", {}, tags=[tag])
    delayed = live_stack.trigger("hello-world", {}, tags=[tag], delay="1h")
    delayed_sleep = live_stack.trigger("sleep", {"seconds": 1}, tags=[tag], delay="1h")
    done(live_stack, finished)
    base = f"{live_stack.base_url}/runs/?env=dev&tag={tag}"
    page.goto(base)
    assert set(rows(page)) == {finished, delayed, delayed_sleep}
    page.get_by_label("Select all runs on this page").check()  # the hook of the bulk actions
    expect(page.locator("#runs-body input[name=runs]:checked")).to_have_count(3)
    page.get_by_label(f"Select {delayed}").uncheck()
    expect(page.get_by_label("Select all runs on this page")).not_to_be_checked()

    tick(page, "status", "Delayed")
    tick(page, "task", "hello-world")
    page.get_by_role("button", name="Apply filters").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_stack.base_url}/runs/?env=dev&status=DELAYED&task=hello-world&tag={tag}")
    assert rows(page) == [delayed]
    expect(page.locator("#filter-status-value")).to_have_text("Delayed")

    tick(page, "status", "Delayed")
    tick(page, "status", "Completed")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"\?env=dev&status=COMPLETED&task=hello-world&tag="))
    assert rows(page) == [finished]

    page.go_back()
    expect(page).to_have_url(f"{live_stack.base_url}/runs/?env=dev&status=DELAYED&task=hello-world&tag={tag}")
    assert rows(page) == [delayed]
    expect(page.locator("#run-filters input[name=status][value=DELAYED]")).to_be_checked()
    expect(page.locator("#run-filters input[name=status][value=COMPLETED]")).not_to_be_checked()
    page.go_back()
    expect(page).to_have_url(base)
    assert set(rows(page)) == {finished, delayed, delayed_sleep}
    expect(page.locator("#filter-status-value")).to_have_text("Any status")

    page.get_by_role("link", name="Clear filters").click()
    expect(page).to_have_url(f"{live_stack.base_url}/runs/?env=dev")

    if SCREENSHOTS:
        take_screenshot(page, live_stack)


def test_new_runs_matching_the_filters_appear_live_and_others_never_do(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    tag = f"t-{secrets.token_hex(4)}"
    page.goto(f"{live_stack.base_url}/runs/?env=dev&status=COMPLETED&task=hello-world&tag={tag}")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    expect(page.locator(".empty-row")).to_contain_text("No runs match these filters.")

    other_task = live_stack.trigger("sleep", {"seconds": 0}, tags=[tag])
    untagged = live_stack.trigger("hello-world", {})
    not_yet = live_stack.trigger("hello-world", {}, tags=[tag], delay="1h")  # stays Delayed
    for run_id in (other_task, untagged):
        done(live_stack, run_id)
    match = live_stack.trigger("hello-world", {}, tags=[tag])

    # Queued, then Completed: it appears once it reaches the status the list filters on.
    row = page.locator(f"#run-{match}")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
    expect(row.locator(".badge")).to_have_text("Completed")
    expect(page.locator(".empty-row")).to_be_hidden()
    assert rows(page) == [match]
    for run_id in (other_task, untagged, not_yet):
        expect(page.locator(f"#run-{run_id}")).to_have_count(0)


# --- screenshot ------------------------------------------------------------------------------


def take_screenshot(page: Page, live_stack: LiveStack) -> None:
    """A filtered list with runs in several statuses, machines and tags."""
    for _ in range(2):
        live_stack.trigger("hello-world", {"name": "Ada"}, tags=["team:growth"])
    live_stack.trigger("hello-world", {}, tags=["nightly", "team:core"], machine="large-1x")
    failing = live_stack.trigger("always-fails", {}, tags=["team:core"])
    running = live_stack.trigger("sleep", {"seconds": 120}, tags=["nightly"])
    live_stack.trigger("hello-world", {}, delay="2h", ttl="1h", tags=["team:growth"])
    live_stack.run_until(failing, lambda run: run["status"] == "FAILED", "to fail")
    live_stack.run_until(running, lambda run: run["status"] == "EXECUTING", "to start")
    page.goto(
        f"{live_stack.base_url}/runs/?env=dev&status=DELAYED&status=EXECUTING&status=COMPLETED&status=FAILED"
        "&period=1d&tag=nightly&tag=team:core&tag=team:growth"
    )
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    path = Path(SCREENSHOTS) / "runs.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(path))
    live_stack.api("POST", f"/api/v2/runs/{running}/cancel")
