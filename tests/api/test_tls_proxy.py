"""TLS behind a proxy (#14.4): the proxy's scheme header decides https, and /healthz is not redirected."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from dashboard.management import launcher

pytestmark = pytest.mark.django_db

PATH = "trigger/packet_tlsproxy/payload.json"


def packet_url(api, **headers: str) -> str:
    answer = api.client.put(f"/api/v2/packets/{PATH}", content_type="application/json", headers=api.headers(**headers))
    assert answer.status_code == 200, answer.content
    return answer.json()["presignedUrl"]


def test_signed_urls_are_https_when_the_configured_proxy_header_says_so(api, settings) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert packet_url(api, **{"X-Forwarded-Proto": "https"}).startswith("https://")  # the test client adds :80


def test_the_proxy_header_is_ignored_unless_configured(api) -> None:
    assert packet_url(api, **{"X-Forwarded-Proto": "https"}).startswith("http://testserver/")


def test_ssl_redirect_exempts_the_health_probe(client, settings) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    redirected = client.get("/api/v1/runs")
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")


PRINT_TLS = (
    "from django.conf import settings as s; print(repr((s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
    " s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD,"
    " s.SECURE_PROXY_SSL_HEADER, s.SECURE_SSL_REDIRECT)))"
)


def tls_settings(**env: str) -> str:
    command = [sys.executable, str(django_settings.BASE_DIR / "manage.py"), "shell", "-c", PRINT_TLS]
    result = subprocess.run(command, env=launcher.child_env(**env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]  # after shell's "objects imported" note


def test_the_runyard_tls_variables_set_djangos_settings() -> None:
    env = {
        "RUNYARD_SECURE_COOKIES": "1",
        "RUNYARD_HSTS_SECONDS": "31536000",
        "RUNYARD_HSTS_INCLUDE_SUBDOMAINS": "1",
        "RUNYARD_HSTS_PRELOAD": "1",
        "RUNYARD_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        "RUNYARD_SSL_REDIRECT": "1",
    }
    expected = (True, True, 31536000, True, True, ("HTTP_X_FORWARDED_PROTO", "https"), True)
    assert tls_settings(**env) == repr(expected)
