"""The API reference page: Swagger UI, vendored, shows every documented operation offline."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Route, expect

from api import openapi
from tests.live import LiveStack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def test_the_api_docs_page_lists_the_operations_without_a_login_or_any_other_host(
    chromium: Browser, live_stack: LiveStack
) -> None:
    context = chromium.new_context()
    page = context.new_page()
    elsewhere: list[str] = []

    def refuse_other_hosts(route: Route) -> None:
        elsewhere.append(route.request.url)
        route.abort()

    page.route(lambda url: not url.startswith(live_stack.base_url), refuse_other_hosts)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{live_stack.base_url}/api/docs/")
        trigger = openapi.DOCUMENT["paths"]["/api/v1/tasks/{taskId}/trigger"]["post"]["summary"]
        expect(page.get_by_text(trigger)).to_be_visible(timeout=15_000)
        expect(page.locator(".opblock")).to_have_count(
            sum(len(operations) for operations in openapi.DOCUMENT["paths"].values())
        )
        expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    finally:
        context.close()
    assert elsewhere == []
    assert errors == []
