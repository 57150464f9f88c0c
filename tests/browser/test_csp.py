"""Under the Content-Security-Policy every dashboard page works in Chromium and breaks no rule of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.browser.test_batch_page import MAKE_BATCH
from tests.live import LiveStack

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 20_000  # ms

# Runs before any script of each document: what the browser refused, as the page saw it, and
# htmx attribute code that allowEval: false silently skipped (a trigger filter, hx-on).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const where = `${event.sourceFile}:${event.lineNumber}`;
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"} at ${where}`);
});
document.addEventListener("htmx:evalDisallowedError", (event) => {
  window.__cspViolations.push(`htmx skipped code of ${event.target.id || event.target.tagName}`);
});
"""


@dataclass
class Watched:
    page: Page
    base_url: str
    violations: list[str] = field(default_factory=list)

    def collect(self) -> None:
        """Keep the current document's recorded violations before the next navigation drops them."""
        found: list[str] = self.page.evaluate("() => window.__cspViolations || []")
        self.violations.extend(f"{self.page.url}: {violation}" for violation in found)

    def visit(self, path: str) -> None:
        self.collect()
        response = self.page.goto(f"{self.base_url}{path}")
        assert response is not None and response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path


@pytest.fixture
def watched(chromium: Browser, live_stack: LiveStack) -> Iterator[Watched]:
    """A logged-in page that records every CSP violation, from the login form on."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_stack.base_url)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    watched = Watched(page, live_stack.base_url)

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            watched.violations.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.violations.append(f"page error: {error}"))
    watched.visit("/accounts/login/")
    page.get_by_label("Username").fill(live_stack.username)
    page.get_by_label("Password").fill(live_stack.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_stack.base_url}/runs/")
    yield watched
    context.close()


def test_every_dashboard_page_works_without_a_csp_violation(watched: Watched, live_stack: LiveStack) -> None:
    page = watched.page

    # The runs list: a run triggered now arrives over the websocket and finishes live.
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    run_id = live_stack.trigger("hello-world", {"name": "CSP"})
    expect(page.locator(f"#run-{run_id} .badge")).to_have_text("Completed", timeout=LIVE_TIMEOUT)

    watched.visit(f"/runs/{run_id}/")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    expect(page.locator("#run-output-title + pre")).to_contain_text("Hello, CSP")

    batch_id = live_stack.manage("shell", "-c", MAKE_BATCH.format(delay=3600, size=2)).strip().splitlines()[-1]
    watched.visit(f"/batches/{batch_id}/")
    expect(page.locator(".live-indicator")).to_have_text("Live", timeout=LIVE_TIMEOUT)
    # The count bar's widths come from runyard.js now that style="" attributes are refused.
    part = page.locator("#batch-counts .count-bar-part")
    expect(part).to_have_count(1)
    # Retried: a live push may swap the bar in between, its width set by runyard.js just after.
    expect(part).to_have_css("flex-grow", "2")

    watched.visit("/tasks/")
    expect(page.get_by_role("link", name="hello-world", exact=True)).to_be_visible()
    watched.visit("/tasks/send-email/")
    expect(page.locator("#trigger-form")).to_be_visible()

    # Polling pages: htmx's `every` trigger still fires without its eval-based filter.
    for path in ("/queues/", "/workers/"):
        with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true", timeout=LIVE_TIMEOUT):
            watched.visit(path)

    watched.visit("/settings/keys/")
    page.get_by_label("Name").fill("csp test")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-secret")
    expect(secret).to_have_text(re.compile(r"^tr_dev_\w+$"))
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == secret.inner_text()

    watched.visit("/settings/environments/")
    expect(page.get_by_role("heading", name="Environments", level=1)).to_be_visible()
    watched.visit("/audit/")
    expect(page.get_by_role("heading", name="Audit log", level=1)).to_be_visible()

    watched.visit("/api/docs/")
    expect(page.locator(".opblock").first).to_be_visible(timeout=LIVE_TIMEOUT)

    watched.visit("/admin/")
    expect(page.get_by_role("link", name="Users")).to_be_visible()
    watched.visit("/admin/auth/user/")
    page.get_by_role("link", name=live_stack.username, exact=True).click()
    expect(page.locator("#user_form")).to_be_visible()

    watched.collect()
    assert watched.violations == []


def test_a_polling_table_skips_its_polls_while_the_tab_is_hidden(watched: Watched) -> None:
    page = watched.page
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if request.headers.get("hx-request") else None)
    watched.visit("/queues/")
    page.evaluate(
        """() => {
          window.__hidden = true;
          window.__skipped = 0;
          Object.defineProperty(document, "visibilityState", { get: () => (window.__hidden ? "hidden" : "visible") });
          document.addEventListener("htmx:beforeRequest", (evt) => { if (evt.defaultPrevented) window.__skipped++; });
        }"""
    )
    before = len(polls)
    page.wait_for_function("() => window.__skipped >= 2", timeout=LIVE_TIMEOUT)
    assert len(polls) <= before + 1  # at most one poll already on its way when the tab went hidden
    with page.expect_request(lambda request: request.headers.get("hx-request") == "true", timeout=LIVE_TIMEOUT):
        page.evaluate("() => { window.__hidden = false; }")
    watched.collect()
    assert watched.violations == []
