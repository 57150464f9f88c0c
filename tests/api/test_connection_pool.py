"""The web process borrows database connections from a pool; nothing else does.

Django's ASGI handler runs each request in a new thread, so without a pool every API call
opened (forked) a PostgreSQL backend of its own (issue #8). Celery forks its pool processes
and the worker and the engine keep one connection each (runs.worker.persistent_connections,
which Django's pool refuses), so they must not pool. The 503 while PostgreSQL is down, with
the pool, is tests/faults/test_postgres_restart.py.
"""

from __future__ import annotations

import sys

import pytest

from dashboard.settings import database_from_url, database_pool, serves_asgi

DAPHNE = [
    f"{sys.prefix}/lib/python3.11/site-packages/daphne/__main__.py",
    "-b",
    "127.0.0.1",
    "dashboard.asgi:application",
]
URL = "postgresql://runyard@/runyard?host=/tmp/sock"


@pytest.mark.parametrize(
    "argv",
    [DAPHNE, ["/venv/bin/daphne", "dashboard.asgi:application"], ["manage.py", "runserver"]],
)
def test_the_asgi_server_pools_connections(argv, monkeypatch):
    monkeypatch.delenv("RUNYARD_DB_POOL", raising=False)
    monkeypatch.delenv("RUNYARD_CONN_MAX_AGE", raising=False)
    assert serves_asgi(argv)
    pool = database_pool(argv)
    assert pool == {"min_size": 2, "max_size": 10, "timeout": 3}
    database = database_from_url(URL, pool=pool)
    # Django's pool needs CONN_MAX_AGE 0; the host stays an option of every connection.
    assert database["OPTIONS"] == {"pool": pool} and database["HOST"] == "/tmp/sock"
    assert database["CONN_MAX_AGE"] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["/venv/bin/celery", "-A", "dashboard", "worker"],
        ["manage.py", "engine"],
        ["manage.py", "up"],
        ["/venv/bin/pytest"],
        [],
    ],
)
def test_workers_engines_and_commands_keep_their_own_connections(argv, monkeypatch):
    monkeypatch.delenv("RUNYARD_DB_POOL", raising=False)
    assert database_pool(argv) is None
    assert "pool" not in database_from_url(URL, pool=database_pool(argv))["OPTIONS"]  # type: ignore[operator]


def test_the_pool_is_sized_and_switched_by_the_environment(monkeypatch):
    monkeypatch.delenv("RUNYARD_CONN_MAX_AGE", raising=False)
    monkeypatch.setenv("RUNYARD_DB_POOL_SIZE", "4")
    monkeypatch.setenv("RUNYARD_DB_POOL_TIMEOUT", "2")
    assert database_pool(DAPHNE) == {"min_size": 2, "max_size": 4, "timeout": 2}
    monkeypatch.setenv("RUNYARD_DB_POOL", "off")
    assert database_pool(DAPHNE) is None
    monkeypatch.setenv("RUNYARD_DB_POOL", "on")
    assert database_pool(["manage.py", "shell"]) is not None
    # Persistent connections asked for: no pool (Django refuses to mix them).
    monkeypatch.setenv("RUNYARD_CONN_MAX_AGE", "60")
    assert database_pool(DAPHNE) is None
