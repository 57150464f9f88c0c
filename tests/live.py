"""A live Runyard for end-to-end and browser tests: real daphne, Celery worker and engine.

The stack gets a fresh database on the test PostgreSQL server (never pytest-django's test
database) and, unless REDIS_URL is set, its own embedded Redis, so no other test's Celery
messages reach its worker. Use it from a conftest:

    from tests.live import live_stack, pytest_runtest_makereport  # noqa: F401

and mark the tests `@pytest.mark.e2e`. A failing test's report ends with the tail of each
process's log (the whole logs are in $RUNYARD_VAR/logs/live-*.log).

LiveStack also speaks the REST API as the official SDK does (`trigger`, `run`, `api`),
opens connections to the stack's database (`db`), restarts every process (`restart`) and
starts extra workers (`extra_worker`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import psycopg
import pytest
import requests
from django.conf import settings

from dashboard import embedded
from dashboard.management import launcher
from runs.models import Worker

START_TIMEOUT = 60.0  # seconds for web to answer and the worker to register
USERNAME = "e2e-admin"
EXTRA_REGION = "e2e-extra"
T = TypeVar("T")


@dataclass
class LiveStack:
    base_url: str
    ws_url: str
    api_key: str
    username: str
    password: str
    env: dict[str, str] = field(repr=False)
    logs: dict[str, Path] = field(repr=False)
    processes: launcher.Processes | None = field(default=None, repr=False)

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

    def db(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the stack's database; use it in a `with` block."""
        return psycopg.connect(self.env["DATABASE_URL"], autocommit=True)

    def restart(self) -> None:
        """Stop web, worker and engine, then start them again on the same port, database and Redis.

        Returns once web answers and the worker registered anew; extra workers are left alone.
        """
        if self.processes is not None:
            self.processes.stop()
            self.processes = None
        self.processes = start(self, append=True)

    @contextlib.contextmanager
    def extra_worker(self, name: str, *args: str) -> Iterator[str]:
        """Another Celery worker process named `name@<host>` (plus celery `args`, which win over
        the defaults); yields its hostname and stops it on exit."""
        processes = launcher.Processes(self.env)
        argv = [*launcher.commands(0)["worker"], "-n", f"{name}@%h", *args]
        log_name = f"worker-{name}"
        self.logs[log_name] = settings.VAR_DIR / "logs" / f"live-{log_name}.log"
        before = worker_registrations(self, f"{name}@%")
        self.logs[log_name].parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.logs[log_name].open("w") as log:
                processes.start(log_name, argv, log)
            wait_for(
                lambda: bool(new_workers(self, f"{name}@%", before)), f"worker {name} to register", processes, self
            )
            yield new_workers(self, f"{name}@%", before)[0]
        finally:
            processes.stop()

    # --- the REST API, as @trigger.dev/sdk calls it -------------------------------------------

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        """One request to the REST API with the stack's API key."""
        return requests.request(
            method,
            f"{self.base_url}{path}",
            data=None if body is None else json.dumps(body, separators=(",", ":")),
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
            timeout=10,
        )

    def trigger(self, task_id: str, payload: Any, **options: Any) -> str:
        """`tasks.trigger(task_id, payload, options)` of the official SDK; returns the run id."""
        packet = json.dumps({"json": payload}, separators=(",", ":"))
        options = {"payloadType": "application/super+json", "payloadSize": len(packet), **options}
        response = self.api("POST", f"/api/v1/tasks/{task_id}/trigger", {"payload": packet, "options": options})
        assert response.status_code == 200, response.text
        run_id: str = response.json()["id"]
        return run_id

    def run(self, run_id: str) -> dict[str, Any]:
        """`runs.retrieve(run_id)`: GET /api/v3/runs/{id}."""
        response = self.api("GET", f"/api/v3/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        return run

    def run_until(
        self, run_id: str, done: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
    ) -> dict[str, Any]:
        """Retrieve the run until done(run) holds; fails after timeout seconds."""
        return poll(lambda: self.run(run_id), done, f"run {run_id} {what}", timeout)


def poll(fetch: Callable[[], T], done: Callable[[T], bool], what: str, timeout: float, interval: float = 0.1) -> T:
    """fetch() until done(value) holds and return that value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}; last seen: {value!r}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def live_stack() -> Iterator[LiveStack]:
    """Web, worker and engine on a free port, a superuser and a dev API key."""
    database = f"runyard_e2e_{secrets.token_hex(4)}"
    # A short path: the Redis socket must fit in a unix socket address.
    var_dir = Path(tempfile.mkdtemp(prefix="runyard-live-"))
    (var_dir / "static").mkdir()  # STATIC_ROOT: whitenoise warns when it is missing
    admin_url = settings.DATABASE_URL
    create_database(admin_url, database)
    stack = None
    try:
        env = launcher.child_env(
            DATABASE_URL=database_url(admin_url, database),
            RUNYARD_VAR=str(var_dir),
            RUNYARD_ENGINE_POLL_INTERVAL="0.2",
            # A region no default worker serves (region queues are opt-in): a test's extra worker
            # started on its queue takes exactly the runs triggered with it.
            RUNYARD_REGIONS=EXTRA_REGION,
            # django-tasks functions for tests/e2e/test_django_tasks_live.py
            RUNYARD_TASK_MODULES="example_tasks,tests.e2e.django_tasks_example",
        )
        stack = prepare(env)
        stack.processes = start(stack)
        yield stack
    finally:
        if stack is not None and stack.processes is not None:
            stack.processes.stop()
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


def start(stack: LiveStack, append: bool = False) -> launcher.Processes:
    """Start web, worker and engine; return once web answers and the worker registered.

    append: add to the logs (a restart) instead of starting them afresh.
    """
    processes = launcher.Processes(stack.env)
    port = int(urlparse(stack.base_url).port or 0)
    # A worker that had to be killed leaves its row behind: wait for a registration made now.
    before = worker_registrations(stack, "%") if append else {}
    try:
        for name, argv in launcher.commands(port).items():
            stack.logs[name].parent.mkdir(parents=True, exist_ok=True)
            with stack.logs[name].open("a" if append else "w") as log:
                if append:
                    log.write("\n--- live stack restarted ---\n")
                    log.flush()
                processes.start(name, argv, log)
        wait_for(lambda: launcher.http_answers(f"{stack.base_url}/healthz"), "web to answer", processes, stack)
        wait_for(lambda: bool(new_workers(stack, "%", before)), "the worker to register", processes, stack)
    except BaseException:
        processes.stop()
        raise
    return processes


def wait_for(condition: Callable[[], bool], what: str, processes: launcher.Processes, stack: Any) -> None:
    """Until condition() holds; fails with `stack.log_tails()` (a LiveStack, or any set of
    processes with logs) if one of the processes exits or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while not condition():
        if exited := processes.exited():
            pytest.fail(f"{exited[0]} exited with code {exited[1]}\n{stack.log_tails()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{stack.log_tails()}")
        time.sleep(0.1)


def worker_registrations(stack: LiveStack, pattern: str) -> dict[str, datetime]:
    """started_at of each registered worker whose hostname is like `pattern` (SQL LIKE)."""
    with stack.db() as conn:
        query = f"SELECT hostname, started_at FROM {Worker._meta.db_table} WHERE hostname LIKE %s"
        return dict(conn.execute(query, (pattern,)).fetchall())


def new_workers(stack: LiveStack, pattern: str, before: dict[str, datetime]) -> list[str]:
    """Hostnames like `pattern` that registered (again) since the snapshot `before`."""
    now = worker_registrations(stack, pattern)
    return sorted(name for name, started in now.items() if before.get(name) != started)


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
