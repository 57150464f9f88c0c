"""What an operator sees triggering a typed task by hand: fields from its payload type, an
error next to the wrong one, then the new run's page, where the run completes on the worker."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 20_000  # ms
# Set RUNYARD_SCREENSHOTS to a directory (e.g. docs/screenshots) to also save tasks.png and trigger.png.
SCREENSHOTS = os.environ.get("RUNYARD_SCREENSHOTS", "")


def test_an_operator_triggers_a_typed_task_from_its_fields(logged_in: Page, live_stack: LiveStack) -> None:
    page = logged_in
    earlier = live_stack.trigger("hello-world", {"name": "Ada"})
    live_stack.run_until(earlier, lambda run: run["status"] == "COMPLETED", "completes")

    page.goto(f"{live_stack.base_url}/tasks/")
    row = page.locator('tr[data-task="send-email"]')
    expect(row).to_contain_text("emails")
    expect(row).to_contain_text("limit 5")
    expect(row.locator(".worker-online")).to_have_count(1)  # the live stack's worker serves it
    expect(row.locator(".tag")).to_have_text("typed")
    with live_stack.db() as conn:  # other tests of the session trigger hello-world too
        (today,) = conn.execute(
            "SELECT count(*) FROM runs_run WHERE task_identifier = 'hello-world'"
            " AND created_at > now() - interval '1 day'"
            " AND environment_id = (SELECT id FROM runs_environment WHERE slug = 'dev')"
        ).fetchone()
    expect(page.locator('tr[data-task="hello-world"] .cell-runs-24h')).to_have_text(str(today))
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "tasks.png"))

    row.get_by_role("link", name="Trigger").click()
    expect(page).to_have_url(f"{live_stack.base_url}/tasks/send-email/")
    expect(page.get_by_role("radio", name="Fields")).to_be_checked()
    page.locator("#tf-to").fill("ops@example.com")
    page.locator("#tf-subject").fill("Quarterly report")
    page.locator("#tf-urgent").check()
    page.locator("#tf-count").fill("0")
    page.locator("#opt-tags").fill("manual, reports")

    # The JSON editor follows the fields, and says at once when it is not valid JSON.
    page.locator(".mode-toggle label", has_text="JSON").click()
    editor = page.locator("#opt-payload")
    assert json.loads(editor.input_value()) == {
        "to": "ops@example.com",
        "subject": "Quarterly report",
        "urgent": True,
        "count": 0,
    }
    editor.press_sequentially("x")
    expect(page.locator("#opt-payload-status")).to_contain_text("Not valid JSON")
    editor.press("Backspace")
    expect(page.locator("#opt-payload-status")).to_have_text("Valid JSON")
    page.locator(".mode-toggle label", has_text="Fields").click()

    page.get_by_role("button", name="Trigger run").click()
    count = page.locator('[data-field="count"]')
    expect(count.locator(".field-error")).to_have_text("must be at least 1")
    expect(page.locator("#tf-count")).to_be_focused()  # keyboard users start where the problem is
    expect(page.locator("#trigger-errors")).to_contain_text("1 field needs attention")
    expect(page.locator("#tf-to")).to_have_value("ops@example.com")  # kept as typed
    expect(page.locator("#tf-urgent")).to_be_checked()
    expect(page.locator("#opt-tags")).to_have_value("manual, reports")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "trigger.png"))

    page.locator("#tf-count").fill("2")
    page.get_by_role("button", name="Trigger run").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(live_stack.base_url)}/runs/run_[0-9a-z]{{25}}/$"))
    expect(page.locator("#run-panel .run-title .badge")).to_have_text("Completed", timeout=LIVE_TIMEOUT)
    run_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    run = live_stack.run(run_id)
    assert run["taskIdentifier"] == "send-email" and sorted(run["tags"]) == ["manual", "reports"]
    assert run["output"] == {"sent": 2, "to": "ops@example.com", "subject": "Quarterly report", "urgent": True}

    # Starting again from that run fills the typed fields from its payload, in place.
    page.goto(f"{live_stack.base_url}/tasks/send-email/")
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#tf-count")).to_have_value("")
    page.get_by_label("Start from a recent run").select_option(run_id)
    expect(page.locator(".editor-source")).to_contain_text(run_id)
    expect(page.locator("#tf-to")).to_have_value("ops@example.com")
    expect(page.locator("#tf-count")).to_have_value("2")
    expect(page.locator("#tf-urgent")).to_be_checked()
    assert page.evaluate("window.__notReloaded") is True
