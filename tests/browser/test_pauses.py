"""What an operator sees pausing a task and the whole environment in a live Runyard: the
banner on every page, the runs list's marker, the tasks page's held count, and resuming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from runs.states import FINAL_STATUSES
from tests.live import LiveStack

pytestmark = pytest.mark.browser

FINISH_TIMEOUT = 30.0


def test_an_operator_pauses_the_environment_and_a_task_then_resumes_them(
    logged_in: Page, live_stack: LiveStack
) -> None:
    page = logged_in
    try:
        page.goto(f"{live_stack.base_url}/queues/?env=dev")
        page.get_by_label("Reason for pausing").first.fill("browser freeze")
        later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        page.locator("#environment-resume-at").fill(later)
        page.get_by_role("button", name="Pause environment").click()
        banner = page.locator("#environment-paused")
        expect(banner).to_contain_text("is paused by")
        expect(banner).to_contain_text("browser freeze")
        expect(banner).to_contain_text("resumes by itself")

        held = live_stack.trigger("hello-world", {"name": "Held"})
        page.goto(f"{live_stack.base_url}/runs/?env=dev")
        expect(page.locator("#environment-paused")).to_be_visible()
        expect(page.locator(f"#run-{held} .run-paused")).to_have_text("paused")

        page.goto(f"{live_stack.base_url}/tasks/?env=dev")
        row = page.locator("#task-hello-world")
        row.get_by_label("Reason for pausing hello-world").fill("one task")
        row.get_by_role("button", name="Pause").click()
        expect(page.locator("#task-hello-world [data-paused-detail]")).to_contain_text("1 run held")

        page.locator("#environment-resume").click()
        expect(page.locator("#environment-paused")).to_have_count(0)
        expect(page).to_have_url(f"{live_stack.base_url}/tasks/?env=dev")
        assert live_stack.run(held)["status"] == "QUEUED"  # the task's pause still holds it
        page.locator("#task-hello-world-resume").click()
        expect(page.locator("#task-hello-world [data-paused-detail]")).to_have_count(0)
    finally:
        live_stack.api("POST", "/api/v1/environment/resume")
        live_stack.api("POST", "/api/v1/tasks/hello-world/resume")
    run = live_stack.run_until(held, lambda run: run["status"] in FINAL_STATUSES, "to finish", FINISH_TIMEOUT)
    assert run["status"] == "COMPLETED", run
