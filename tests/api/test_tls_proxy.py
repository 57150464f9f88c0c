"""TLS behind a proxy (#14.4): the proxy's scheme header decides https, and /healthz is not redirected."""

from __future__ import annotations

import pytest

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
