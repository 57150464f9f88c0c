"""A live Runyard for end-to-end and browser tests: real daphne, Celery worker and engine.

The stack gets a fresh database on the test PostgreSQL server (never pytest-django's test
database) and, unless REDIS_URL is set, its own embedded Redis, so no other test's Celery
messages reach its worker. Use it from a conftest:

    from tests.live import live_stack, pytest_runtest_makereport  # noqa: F401

and mark the tests `@pytest.mark.e2e`. A failing test's report ends with the tail of each
process's log (the whole logs are in $RUNYARD_VAR/logs/live-*.log).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest
from django.conf import settings

from dashboard import embedded
from dashboard.management import launcher
from runs.models import Worker

START_TIMEOUT = 60.0  # seconds for web to answer and the worker to register
USERNAME = "e2e-admin"


@dataclass
class LiveStack:
    base_url: str
    ws_url: str
    api_key: str
    username: str
    password: str
    env: dict[str, str] = field(repr=False)
    logs: dict[str, Path] = field(repr=False)

    def manage(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
        """Run manage.py with the stack's environment (plus env); returns stdout, raises if it fails."""
        result = subprocess.run(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result.stdout

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {name} ({path}) ---\n{tail(path, lines)}" for name, path in self.logs.items())


@pytest.fixture(scope="session")
def live_stack() -> Iterator[LiveStack]:
    """Web, worker and engine on a free port, a superuser and a dev API key."""
    database = f"runyard_e2e_{secrets.token_hex(4)}"
    # A short path: the Redis socket must fit in a unix socket address.
    var_dir = Path(tempfile.mkdtemp(prefix="runyard-live-"))
    (var_dir / "static").mkdir()  # STATIC_ROOT: whitenoise warns when it is missing
    admin_url = settings.DATABASE_URL
    create_database(admin_url, database)
    processes = None
    try:
        env = launcher.child_env(
            DATABASE_URL=database_url(admin_url, database),
            RUNYARD_VAR=str(var_dir),
            RUNYARD_ENGINE_POLL_INTERVAL="0.2",
        )
        stack = prepare(env)
        processes = start(stack)
        yield stack
    finally:
        if processes is not None:
            processes.stop()
        embedded.stop_all(var_dir)
        shutil.rmtree(var_dir, ignore_errors=True)
        drop_database(admin_url, database)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Append the live stack's log tails to the report of a failing test that used it."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("live_stack")
    if report.failed and isinstance(stack, LiveStack):
        report.sections.append(("live stack logs", stack.log_tails()))
    return report


def prepare(env: dict[str, str]) -> LiveStack:
    """Migrate the stack's database and create its superuser and API key."""
    port = launcher.free_port()
    password = secrets.token_urlsafe(16)
    logs = {name: settings.VAR_DIR / "logs" / f"live-{name}.log" for name in ("web", "worker", "engine")}
    stack = LiveStack(
        base_url=f"http://{launcher.HOST}:{port}",
        ws_url=f"ws://{launcher.HOST}:{port}",
        api_key="",
        username=USERNAME,
        password=password,
        env=env,
        logs=logs,
    )
    stack.manage("migrate", "--noinput", timeout=120)
    superuser = {"DJANGO_SUPERUSER_USERNAME": USERNAME, "DJANGO_SUPERUSER_PASSWORD": password}
    stack.manage("createsuperuser", "--noinput", "--email", "e2e@example.com", env=superuser)
    stack.api_key = stack.manage("apikey", "create", "--env", "dev", "--name", "e2e").strip()
    return stack


def start(stack: LiveStack) -> launcher.Processes:
    """Start web, worker and engine; return once web answers and the worker registered."""
    processes = launcher.Processes(stack.env)
    port = int(urlparse(stack.base_url).port or 0)
    try:
        for name, argv in launcher.commands(port).items():
            stack.logs[name].parent.mkdir(parents=True, exist_ok=True)
            with stack.logs[name].open("w") as log:
                processes.start(name, argv, log)
        wait_for(lambda: launcher.http_answers(f"{stack.base_url}/healthz"), "web to answer", processes, stack)
        wait_for(lambda: worker_registered(stack.env["DATABASE_URL"]), "the worker to register", processes, stack)
    except BaseException:
        processes.stop()
        raise
    return processes


def wait_for(condition: Callable[[], bool], what: str, processes: launcher.Processes, stack: LiveStack) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not condition():
        if exited := processes.exited():
            pytest.fail(f"live stack: {exited[0]} exited with code {exited[1]}\n{stack.log_tails()}")
        if time.monotonic() > deadline:
            pytest.fail(f"live stack: timed out waiting for {what}\n{stack.log_tails()}")
        time.sleep(0.1)


def worker_registered(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {Worker._meta.db_table})").fetchone()
        return bool(row and row[0])


def database_url(url: str, name: str) -> str:
    """url with its database name replaced (the host, socket dir and credentials stay)."""
    return urlparse(url)._replace(path=f"/{name}").geturl()


def create_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tail(path: Path, lines: int) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
