"""Two web instances behind one PostgreSQL and Redis: a change made through one shows live in a
browser connected to the other."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard.management import launcher
from tests.live import START_TIMEOUT, LiveStack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LIVE_TIMEOUT = 15_000  # ms


@pytest.fixture
def second_web(live_stack: LiveStack) -> Iterator[str]:
    """Another daphne on its own port, with the live stack's database and Redis; yields its URL."""
    port = launcher.free_port()
    processes = launcher.Processes(live_stack.env)
    log_path = live_stack.logs["web"].with_name("live-web-b.log")
    live_stack.logs["web-b"] = log_path
    url = f"http://{launcher.HOST}:{port}"
    try:
        with log_path.open("w") as log:
            processes.start("web-b", launcher.commands(port)["web"], log)
        deadline = time.monotonic() + START_TIMEOUT
        while not launcher.http_answers(f"{url}/healthz"):
            if exited := processes.exited():
                pytest.fail(f"second web exited with code {exited[1]}\n{live_stack.log_tails()}")
            if time.monotonic() > deadline:
                pytest.fail(f"second web did not answer in {START_TIMEOUT:g}s\n{live_stack.log_tails()}")
            time.sleep(0.1)
        yield url
    finally:
        processes.stop()


def log_in(browser: Browser, base_url: str, stack: LiveStack) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(f"{base_url}/runs/")
    expect(page).to_have_url(f"{base_url}/accounts/login/?next=/runs/")
    page.get_by_label("Username").fill(stack.username)
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base_url}/runs/")
    return page


def test_a_change_made_through_one_instance_shows_live_on_the_other(
    chromium: Browser, live_stack: LiveStack, second_web: str
) -> None:
    assert second_web != live_stack.base_url
    # Instance A (the live stack's web) takes the API calls; the browser talks only to B.
    waiting = live_stack.trigger("hello-world", {"name": "Later"}, delay="1h")
    page = log_in(chromium, second_web, live_stack)
    try:
        expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
        waiting_row = page.locator(f"#run-{waiting}")
        expect(waiting_row.locator(".badge")).to_have_text("Delayed")
        page.evaluate("window.__notReloaded = true")

        new_run = live_stack.trigger("hello-world", {"name": "Via A"})
        row = page.locator(f"#run-{new_run}")
        expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
        expect(row.locator(".badge")).to_have_text("Completed", timeout=LIVE_TIMEOUT)

        canceled = live_stack.api("POST", f"/api/v2/runs/{waiting}/cancel")
        assert canceled.status_code == 200, canceled.text
        expect(waiting_row.locator(".badge")).to_have_text("Canceled", timeout=LIVE_TIMEOUT)
        assert page.evaluate("window.__notReloaded") is True  # live updates, not a reload
    finally:
        page.context.close()
