"""Browser tests: the system Chromium, driven by Playwright, against a live Runyard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.live import LiveStack

# `playwright install` cannot download browsers here; the Debian chromium package can be driven.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    # Package scope: Playwright's sync API keeps an event loop running in this thread until
    # it stops, which would break every asyncio test collected after the browser tests.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def logged_in(chromium: Browser, live_stack: LiveStack) -> Iterator[Page]:
    """A fresh browser context, logged in through the login form."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{live_stack.base_url}/runs/")
    expect(page).to_have_url(f"{live_stack.base_url}/accounts/login/?next=/runs/")
    page.get_by_label("Username").fill(live_stack.username)
    page.get_by_label("Password").fill(live_stack.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_stack.base_url}/runs/")
    yield page
    context.close()
