"""What an operator sees creating a schedule in the dashboard: an error beside the wrong field,
then the schedule's page and the list with its next fire times; deactivating it clears them.

Set RUNYARD_SCREENSHOTS to a directory (e.g. docs/screenshots) to also save schedules.png and
schedule.png at 1280x800.
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

SCREENSHOTS = os.environ.get("RUNYARD_SCREENSHOTS", "")


def test_an_operator_creates_a_schedule_sees_its_next_ticks_and_deactivates_it(
    logged_in: Page, live_stack: LiveStack
) -> None:
    page = logged_in
    external_id = f"browser-{secrets.token_hex(3)}"
    page.goto(f"{live_stack.base_url}/schedules/")
    page.get_by_role("link", name="New schedule").click()
    expect(page).to_have_url(re.compile(r"/schedules/new/\?env=dev$"))

    page.get_by_label("Task", exact=True).fill("hello-world")
    page.get_by_label("Cron", exact=True).fill("0 9 * * 1-5")
    page.get_by_label("Time zone").fill("Mars/Olympus")
    page.get_by_label("External id").fill(external_id)
    page.get_by_label("Payload").fill('{"name": "Ada"}')
    page.get_by_role("button", name="Create schedule").click()
    error = page.locator("#schedule-timezone-error")
    expect(error).to_contain_text("is not an IANA time zone name")
    expect(page.get_by_label("Time zone")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("External id")).to_have_value(external_id)  # the rest is kept

    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_role("button", name="Create schedule").click()
    expect(page).to_have_url(re.compile(r"/schedules/sched_\w+/\?env=dev$"))
    expect(page.locator(".notice-success")).to_contain_text("Created sched_")
    schedule_id = page.locator("h1").inner_text()
    expect(page.locator("[data-cron-words]")).to_have_text("At 09:00 AM, Monday through Friday")
    expect(page.locator("[data-upcoming] li")).to_have_count(5)
    expect(page.locator("[data-upcoming] li").first).to_contain_text("09:00 Europe/Paris")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "schedule.png"))

    page.get_by_role("link", name="Schedules", exact=True).first.click()
    row = page.locator(f'tr[data-schedule="{schedule_id}"]')
    expect(row).to_contain_text("hello-world")
    expect(row).to_contain_text("0 9 * * 1-5 · Europe/Paris")
    expect(row).to_contain_text(external_id)
    expect(row.locator("[data-upcoming] time")).to_have_count(5)
    expect(row.locator("[data-active]")).to_have_text("Active")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "schedules.png"))

    row.get_by_role("link", name=schedule_id).click()
    page.get_by_role("button", name="Deactivate").click()
    expect(page.locator(".notice-success")).to_contain_text(f"Deactivated {schedule_id}")
    expect(page.locator("[data-inactive]")).to_have_text("Inactive")
    expect(page.locator("[data-upcoming]")).to_have_count(0)
    expect(page.get_by_role("button", name="Activate")).to_be_visible()
    with live_stack.db() as conn:
        (active, next_fire_at) = conn.execute(
            "SELECT active, next_fire_at FROM runs_schedule WHERE id = %s", [schedule_id]
        ).fetchone()
        audit = [
            row[0]
            for row in conn.execute("SELECT action FROM runs_auditentry WHERE target = %s ORDER BY id", [schedule_id])
        ]
    assert (active, next_fire_at) == (False, None)
    assert audit == ["schedule.create", "schedule.deactivate"]
