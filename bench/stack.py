"""The processes and databases a benchmark runs against.

Every benchmark gets a fresh database cloned from a template that was migrated once per
`python -m bench` (with a superuser and a dev API key), on the PostgreSQL of RUNYARD_VAR
(or DATABASE_URL), and an empty Redis. Web, worker and engine are started with exactly the
commands `manage.py up` uses (dashboard.management.launcher), with DJANGO_SETTINGS_MODULE
set to bench.settings (Runyard's, with the bench's Celery adoption list).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil
import psycopg
import redis
from django.conf import settings
from django.db import connections

from dashboard.management import launcher

TEMPLATE = "runyard_bench_template"
USERNAME = "bench-admin"
PASSWORD = secrets.token_urlsafe(16)
START_TIMEOUT = 90.0
TASK_MODULES = "example_tasks,bench.tasks"


class BenchError(RuntimeError):
    """A benchmark could not run (a process died, a condition never came)."""


def database_url(name: str) -> str:
    """The URL of database `name` on the bench's PostgreSQL server."""
    return urlparse(settings.DATABASE_URL)._replace(path=f"/{name}").geturl()


def admin_connection() -> psycopg.Connection[Any]:
    return psycopg.connect(database_url("postgres"), autocommit=True)


def drop_database(name: str) -> None:
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Template:
    """The migrated database every benchmark's database is cloned from."""

    api_key: str


def prepare_template(log_dir: Path) -> Template:
    """(Re)create the template database: migrated, a superuser, a dev API key."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from runs.models import ApiKey, Environment

    drop_database(TEMPLATE)
    with admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    previous = str(settings.DATABASES["default"]["NAME"])
    use_database(TEMPLATE)
    try:
        call_command("migrate", interactive=False, verbosity=0)
        get_user_model().objects.create_superuser(USERNAME, email="bench@example.com", password=PASSWORD)
        _, api_key = ApiKey.generate(Environment.objects.get(slug="dev"), name="bench")
    finally:
        use_database(previous)  # closes our connections: a template must have none to be cloned
    return Template(api_key=api_key)


@dataclass
class Stack:
    """One benchmark's database, Redis and processes (started by name, stopped together)."""

    name: str
    api_key: str
    log_dir: Path
    env: dict[str, str] = field(repr=False)
    port: int = 0
    processes: dict[str, launcher.Processes] = field(default_factory=dict, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{launcher.HOST}:{self.port}"

    @property
    def database(self) -> str:
        return f"runyard_bench_{self.name}"

    def db(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the stack's database."""
        return psycopg.connect(self.env["DATABASE_URL"], autocommit=True)

    def start(self, *names: str, **extra_env: str) -> None:
        """Start web, worker and/or engine; returns once web answers and the worker registered."""
        argv = launcher.commands(self.port)
        registered = self._worker_starts()
        for name in names:
            procs = launcher.Processes({**self.env, **extra_env})
            with (self.log_dir / f"{self.name}-{name}.log").open("a") as out:
                procs.start(name, argv[name], out)
            self.processes[name] = procs
        if "web" in names:
            self.wait_for(lambda: launcher.http_answers(f"{self.base_url}/healthz"), "web to answer")
        if "worker" in names:
            self.wait_for(lambda: self._worker_starts() != registered, "the worker to register")

    def start_daphne(self, name: str, app: str = launcher.ASGI_APP, processes: int = 1, **extra_env: str) -> int:
        """Start another web, serving app with Runyard's daphne command on a port of its own;
        returns the port. Several processes share one listening socket, as `up --web-processes`."""
        port = launcher.free_port()
        procs = launcher.Processes({**self.env, **extra_env})
        shared = launcher.listen(port) if processes > 1 else None
        try:
            fd = shared.fileno() if shared else None
            argvs = launcher.commands(port, web_fd=fd, web_processes=processes)
            with (self.log_dir / f"{self.name}-{name}.log").open("a") as out:
                for web, argv in argvs.items():
                    if launcher.is_web(web):
                        procs.start(web, [*argv[:-1], app], out, pass_fds=(fd,) if fd is not None else ())
        finally:
            if shared:
                shared.close()
        self.processes[name] = procs
        self.wait_for(lambda: launcher.http_answers(f"http://{launcher.HOST}:{port}/healthz"), f"{name} to answer")
        return port

    def pids(self, name: str) -> list[int]:
        """The processes started as name (several for a web of several daphnes)."""
        return [proc.pid for proc in self.processes[name].running.values()]

    def stop(self, *names: str) -> None:
        for name in names or list(self.processes):
            procs = self.processes.pop(name, None)
            if procs is not None:
                procs.stop()

    def pid(self, name: str) -> int:
        return self.processes[name].running[name].pid

    def rss(self, name: str) -> int:
        """Resident memory of a process and its children (a Celery worker's pool), in bytes."""
        proc = psutil.Process(self.pid(name))
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for name, procs in self.processes.items():
                if exited := procs.exited():
                    raise BenchError(f"{name} exited with code {exited[1]}; see {self.log_dir}/{self.name}-{name}.log")
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.05)

    def _worker_starts(self) -> dict[str, Any]:
        with self.db() as conn:
            return dict(conn.execute("SELECT hostname, started_at FROM runs_worker").fetchall())

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(settings.REDIS_URL)


@contextlib.contextmanager
def stack(name: str, template: Template, log_dir: Path) -> Iterator[Stack]:
    """A fresh database cloned from the template, an empty Redis, and this process's Django
    connected to that database; stops every process and drops the database at the end."""
    bench = Stack(
        name=name,
        api_key=template.api_key,
        log_dir=log_dir,
        env={},
        port=launcher.free_port(),
    )
    drop_database(bench.database)
    with admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{bench.database}" TEMPLATE "{TEMPLATE}"')
    bench.env = launcher.child_env(
        DATABASE_URL=database_url(bench.database),
        DJANGO_SETTINGS_MODULE="bench.settings",
        RUNYARD_TASK_MODULES=TASK_MODULES,
        # Batches of the benchmarks would soon exhaust the default per-environment budget.
        RUNYARD_BATCH_RATE_LIMIT_MAX="100000000",
        LOG_LEVEL="WARNING",
    )
    empty_redis(bench)
    previous = str(settings.DATABASES["default"]["NAME"])
    use_database(bench.database)
    try:
        yield bench
    finally:
        bench.stop()
        use_database(previous)
        drop_database(bench.database)


def use_database(name: str) -> None:
    """Point this process's Django connections (every thread's) at database `name`."""
    connections.close_all()
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


def empty_redis(bench: Stack) -> None:
    """No Celery message, channel or counter of an earlier benchmark may leak into this one.

    The embedded Redis is the bench's own and is emptied; an external one (REDIS_URL) only
    loses Runyard's Celery queues and the bench's keys.
    """
    client = bench.redis()
    if not os.environ.get("REDIS_URL"):
        client.flushdb()
        return
    for pattern in ("runyard.*", "bench:*", "_kombu.*", "unacked*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
