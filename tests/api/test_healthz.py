from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from runs.models import Worker

pytestmark = pytest.mark.django_db


def add_worker(hostname: str, seen_ago: float) -> None:
    now = timezone.now()
    Worker.objects.create(hostname=hostname, started_at=now, last_seen_at=now - timedelta(seconds=seen_ago))


def test_healthy_with_a_live_worker_needs_no_key_or_login(client):
    add_worker("celery@a", seen_ago=1)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["redis"]["ok"] is True
    assert body["workers"] == {"ok": True, "online": 1, "hostnames": ["celery@a"]}


def test_workers_not_seen_within_the_timeout_are_not_online(client, settings):
    settings.RUNYARD_WORKER_TIMEOUT = 60
    add_worker("celery@fresh", seen_ago=5)
    add_worker("celery@stale", seen_ago=120)
    assert client.get("/healthz").json()["workers"] == {"ok": True, "online": 1, "hostnames": ["celery@fresh"]}


def test_no_workers_is_degraded_but_200(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["workers"] == {"ok": False, "online": 0, "hostnames": []}


def test_unreachable_redis_is_degraded_but_200(client, settings, tmp_path):
    add_worker("celery@a", seen_ago=1)
    settings.REDIS_URL = f"unix://{tmp_path}/no-redis.sock"
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["redis"]["ok"] is False
    assert str(tmp_path) not in response.content.decode()  # no paths or hosts in a public answer


def test_head_is_answered_and_post_is_405(client):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_unreachable_database_is_503_with_the_report(client):
    original = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = "runyard_no_such_database"
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is False
    assert body["workers"]["ok"] is False
