"""The Content-Security-Policy header: on every dashboard page, never over a response's own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from dashboard.management import launcher
from tests import factories

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def directives(header: str) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser(username="ada", password="a-long-password-1")


@pytest.fixture
def browser(client: Client, superuser: User) -> Client:
    client.force_login(superuser)
    return client


def test_the_login_page_carries_the_strict_policy(client: Client, db: None) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert directives(response["Content-Security-Policy"]) == POLICY


def test_dashboard_pages_and_the_admin_carry_the_strict_policy(browser: Client) -> None:
    run = factories.run("hello-world")
    for path in ["/runs/", f"/runs/{run.id}/", "/tasks/", "/queues/", "/settings/keys/", "/api/docs/", "/admin/"]:
        response = browser.get(path)
        assert response.status_code == 200, path
        assert directives(response["Content-Security-Policy"]) == POLICY, path


def test_a_policy_needs_no_inline_code_or_eval(browser: Client) -> None:
    header = browser.get("/runs/")["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header and "nonce-" not in header


def test_the_signed_object_download_keeps_its_own_sandbox_policy(client: Client, db: None) -> None:
    factories.environment("dev")
    bearer = {"Authorization": f"Bearer {factories.api_key('dev')}"}
    path = "trigger/packet_csp/payload.json"
    upload = client.put(f"/api/v2/packets/{path}", content_type="application/json", headers=bearer)
    stored = client.put(upload.json()["presignedUrl"], data="<script>alert(1)</script>", content_type="text/html")
    assert stored.status_code == 200, stored.content
    download = client.get(client.get(f"/api/v1/packets/{path}", headers=bearer).json()["presignedUrl"])
    assert download.status_code == 200
    assert download["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_extra_script_sources_from_the_environment_join_script_src_only() -> None:
    show = "import json; from django.conf import settings; print(json.dumps(settings.CONTENT_SECURITY_POLICY))"
    result = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "shell", "-c", show],
        env=launcher.child_env(RUNYARD_CSP_EXTRA_SCRIPT_SRC="https://static.example.com, 'sha256-abc='"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])["DIRECTIVES"]
    assert shown["script-src"] == ["'self'", "https://static.example.com", "'sha256-abc='"]
    assert {name: " ".join(sources) for name, sources in shown.items() if name != "script-src"} == {
        name: sources for name, sources in POLICY.items() if name != "script-src"
    }
