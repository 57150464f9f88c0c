"""What an operator does to runs in the browser: cancel, reschedule, replay one; cancel many at once.

Set RUNYARD_SCREENSHOTS to a directory (e.g. docs/screenshots) to also save run-actions.png
(the replay form) and bulk.png (a finished bulk action's page) at 1280x800.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

TIMEOUT = 20_000  # ms: the engine works a bulk action off on its next ticks
SCREENSHOTS = os.environ.get("RUNYARD_SCREENSHOTS", "")


def timeline_row(page: Page, text: str) -> object:
    return page.locator("table.timeline tbody tr", has_text=text)


def test_cancel_a_run_from_its_page_with_a_reason_using_the_keyboard(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    run_id = live_stack.trigger("sleep", {"seconds": 1}, delay="1h")
    page.goto(f"{live_stack.base_url}/runs/{run_id}/")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=TIMEOUT)

    page.get_by_role("link", name="Cancel run…").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Reason")).to_be_focused()  # the dialog takes the focus
    page.keyboard.type("customer asked to stop")
    page.keyboard.press("Tab")  # Keep it
    page.keyboard.press("Tab")  # Cancel run
    expect(dialog.get_by_role("button", name="Cancel run")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.locator("#run-panel .run-title .badge")).to_have_text("Canceled", timeout=TIMEOUT)
    row = page.locator("table.timeline tbody tr").last
    expect(row).to_contain_text("user:e2e-admin")
    expect(row).to_contain_text("customer asked to stop")
    expect(page.get_by_role("link", name="Cancel run…")).to_have_count(0)  # a final run offers no cancel
    assert live_stack.run(run_id)["status"] == "CANCELED"


def test_a_live_update_keeps_the_keyboard_focus_on_the_run_page(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    run_id = live_stack.trigger("sleep", {"seconds": 1}, delay="1h")
    page.goto(f"{live_stack.base_url}/runs/{run_id}/")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=TIMEOUT)
    page.get_by_role("link", name="Replay…").focus()

    response = live_stack.api("POST", f"/api/v1/runs/{run_id}/reschedule", {"delay": "2h"})
    assert response.status_code == 200, response.text
    timeline = page.locator("table.timeline tbody tr")
    expect(timeline.last).to_contain_text("rescheduled to", timeout=TIMEOUT)  # the panel was re-rendered
    expect(page.get_by_role("link", name="Replay…")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()


def test_a_live_update_keeps_ticked_rows_ticked(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    tag = f"tick-{secrets.token_hex(3)}"
    run_ids = [live_stack.trigger("sleep", {"seconds": 1}, delay="1h", tags=[tag]) for _ in range(2)]
    page.goto(f"{live_stack.base_url}/runs/?tag={tag}")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=TIMEOUT)
    page.get_by_label(f"Select {run_ids[0]}").check()
    expect(page.locator("[data-bulk-count]")).to_have_text("1 selected")

    response = live_stack.api("POST", f"/api/v2/runs/{run_ids[0]}/cancel")
    assert response.status_code == 200, response.text
    expect(page.locator("#runs-body tr[id]", has_text=run_ids[0])).to_contain_text("Canceled", timeout=TIMEOUT)
    expect(page.get_by_label(f"Select {run_ids[0]}")).to_be_checked()
    expect(page.get_by_label(f"Select {run_ids[1]}")).not_to_be_checked()
    expect(page.locator("[data-bulk-count]")).to_have_text("1 selected")


def test_escape_closes_the_dialog_and_changes_nothing(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    run_id = live_stack.trigger("sleep", {"seconds": 1}, delay="1h")
    page.goto(f"{live_stack.base_url}/runs/{run_id}/")
    page.get_by_role("link", name="Cancel run…").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)
    assert live_stack.run(run_id)["status"] == "DELAYED"


def test_reschedule_a_delayed_run_by_a_duration(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    run_id = live_stack.trigger("sleep", {"seconds": 1}, delay="1h")
    page.goto(f"{live_stack.base_url}/runs/{run_id}/")
    page.get_by_role("link", name="Reschedule…").click()
    dialog = page.get_by_role("dialog")

    dialog.get_by_label("Delay", exact=True).fill("soon")
    dialog.get_by_role("button", name="Reschedule").click()
    expect(dialog.locator("#reschedule-delay-error")).to_contain_text("Invalid delay 'soon'")  # in the dialog
    expect(dialog.get_by_label("Delay", exact=True)).to_be_focused()

    dialog.get_by_label("Delay", exact=True).fill("3h")
    dialog.get_by_label("Reason").fill("after the deploy")
    dialog.get_by_role("button", name="Reschedule").click()

    expect(timeline_row(page, "after the deploy")).to_contain_text("rescheduled to", timeout=TIMEOUT)
    expect(timeline_row(page, "after the deploy")).to_contain_text("user:e2e-admin")
    delayed_until = live_stack.run(run_id)["delayedUntil"]
    assert delayed_until is not None
    # Now + 3 h, not the original hour.
    expect(page.locator("#run-panel .run-why")).to_contain_text(delayed_until[11:16])


def test_replay_with_an_edited_payload_lands_on_the_new_run(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    original_id = live_stack.trigger("hello-world", {"name": "Ada"}, tags=["customer-7"])
    live_stack.run_until(original_id, lambda run: run["status"] == "COMPLETED", "to complete")
    page.goto(f"{live_stack.base_url}/runs/{original_id}/")
    page.get_by_role("link", name="Replay…").click()
    dialog = page.get_by_role("dialog")
    payload = dialog.get_by_label("Payload")
    expect(payload).to_be_focused()
    assert json.loads(payload.input_value()) == {"name": "Ada"}
    payload.fill('{\n  "name": "Grace"\n}')
    dialog.get_by_label("Tags").fill("customer-7, replayed")
    dialog.get_by_label("Reason").fill("greeted the wrong person")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "run-actions.png"))
    dialog.get_by_role("button", name="Replay run").click()

    expect(page).not_to_have_url(re.compile(rf"/runs/{original_id}/$"), timeout=TIMEOUT)
    new_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    assert new_id.startswith("run_")
    related = page.locator("#run-related-title").locator("..")
    expect(related.get_by_role("link", name=original_id)).to_be_visible()
    expect(page.locator("#run-panel .run-title .badge")).to_have_text("Completed", timeout=TIMEOUT)
    expect(timeline_row(page, "greeted the wrong person")).to_contain_text(f"replay of {original_id}")
    replay = live_stack.run(new_id)
    assert (replay["payload"], replay["tags"]) == ({"name": "Grace"}, ["customer-7", "replayed"])
    assert replay["output"] == {"message": "Hello, Grace!"}

    related.get_by_role("link", name=original_id).click()
    expect(page).to_have_url(f"{live_stack.base_url}/runs/{original_id}/")


def test_bulk_cancel_of_two_selected_runs_shows_progress_to_the_end(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    tag = f"bulk-{secrets.token_hex(3)}"
    run_ids = [live_stack.trigger("sleep", {"seconds": 1}, delay="1h", tags=[tag]) for _ in range(3)]
    page.goto(f"{live_stack.base_url}/runs/?tag={tag}")
    expect(page.locator("#runs-body tr[id]")).to_have_count(3)
    for run_id in run_ids[:2]:
        page.get_by_label(f"Select {run_id}").check()
    expect(page.locator("[data-bulk-count]")).to_have_text("2 selected")
    page.locator("#bulk-form").get_by_role("button", name="Cancel…").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Cancel 2 runs?")
    page.get_by_role("button", name="Cancel 2 runs").click()
    expect(page.locator(".field-error")).to_contain_text("Say why")  # the reason is required
    page.get_by_label("Reason").fill("duplicates of an import")
    page.get_by_role("button", name="Cancel 2 runs").click()

    expect(page).to_have_url(re.compile(r"/runs/bulk/bulk_\w+/$"))
    progress = page.locator("#bulk-progress")
    expect(progress).to_have_attribute("data-status", "COMPLETED", timeout=TIMEOUT)  # polled, no reload
    expect(progress.locator('[data-count="succeeded"]')).to_have_text("2")
    expect(progress.locator('[data-count="skipped"]')).to_have_text("0")
    expect(progress.locator("progress")).to_have_attribute("value", "100")
    expect(progress).to_contain_text("Done")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "bulk.png"))

    statuses = [live_stack.run(run_id)["status"] for run_id in run_ids]
    assert statuses == ["CANCELED", "CANCELED", "DELAYED"]
    page.goto(f"{live_stack.base_url}/runs/{run_ids[0]}/")
    expect(page.locator("table.timeline tbody tr").last).to_contain_text("duplicates of an import")
