"""A project that installs Runyard (docs/adopting.md), from a wheel of this checkout, running.

The project (tests/e2e/adopting_project) has its own settings, URLconf, ASGI app and Celery
app, its own database on the test PostgreSQL server and its own Redis database number; it
mounts Runyard under /runyard/. Its processes import Runyard from the installed wheel only.
tests/e2e/conftest.py offers it as the module-scoped fixture `adopting_project`; a failing
test's report ends with the tail of each of its process logs.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from django.conf import settings

from dashboard.management import launcher
from tests.live import create_database, drop_database, tail, wait_for

CHECKOUT = Path(__file__).resolve().parents[1]
PROJECT = CHECKOUT / "tests" / "e2e" / "adopting_project"
REDIS_DB = 7  # the project's own database number on the test Redis
USERNAME, PASSWORD = "shop-admin", secrets.token_urlsafe(16)


@dataclass
class Project:
    """A running project with Runyard installed: its directory, environment, URL and processes."""

    root: Path
    site: Path
    env: dict[str, str] = field(repr=False)
    base_url: str = ""
    api_key: str = ""
    logs: dict[str, Path] = field(default_factory=dict, repr=False)
    processes: launcher.Processes | None = field(default=None, repr=False)

    def python(self, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
        """Run the venv's python in the project (cwd, PYTHONPATH); returns stdout, fails if it fails."""
        result = subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"python {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result.stdout

    def manage(self, *args: str, **kwargs: Any) -> str:
        return self.python("manage.py", *args, **kwargs)

    def publish(self, code: str) -> str:
        """Run Python code in the project's environment with Django set up (e.g. a task's apply_async)."""
        return self.python("-c", f"import django; django.setup()\n{code}")

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {name} ({path}) ---\n{tail(path, lines)}" for name, path in self.logs.items())

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(
            method,
            f"{self.base_url}/runyard{path}",
            data=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
            timeout=10,
        )

    def login(self) -> requests.Session:
        """A browser session logged in through the dashboard's own login form under /runyard/."""
        session = requests.Session()
        form = session.get(f"{self.base_url}/runyard/accounts/login/", timeout=10)
        assert form.status_code == 200, form.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, form.text
        answer = session.post(
            form.url,
            data={"csrfmiddlewaretoken": token.group(1), "username": USERNAME, "password": PASSWORD},
            timeout=10,
            allow_redirects=False,
        )
        assert answer.status_code == 302, answer.text
        return session


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(CHECKOUT)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    shutil.rmtree(CHECKOUT / "build", ignore_errors=True)  # setuptools' scratch copy of the sources
    return next(out.glob("runyard-*.whl"))


def project_env(root: Path, site: Path, database: str) -> dict[str, str]:
    db = settings.DATABASES["default"]
    redis = urlparse(settings.REDIS_URL)
    assert redis.scheme == "unix", "the test Redis is the embedded one, on a unix socket"
    env = {
        name: value
        for name, value in launcher.child_env().items()
        if not name.startswith(("RUNYARD_", "DJANGO_", "DATABASE_URL", "REDIS_URL", "PYTHONPATH"))
    }
    return {
        **env,
        "PYTHONPATH": f"{site}:{root}",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "PROJ_SECRET_KEY": secrets.token_urlsafe(50),
        "PROJ_DB_NAME": database,
        "PROJ_DB_HOST": str(db["HOST"]),
        "PROJ_DB_PORT": str(db["PORT"]),
        "PROJ_DB_USER": str(db["USER"]),
        "PROJ_DB_PASSWORD": str(db["PASSWORD"]),
        "PROJ_REDIS_URL": f"unix://{redis.path}?db={REDIS_DB}",
        "PROJ_BROKER_URL": f"redis+socket://{redis.path}?virtual_host={REDIS_DB}",
    }


def start(project: Project) -> launcher.Processes:
    port = launcher.free_port()
    project.base_url = f"http://{launcher.HOST}:{port}"
    python = sys.executable
    commands = {
        "web": [python, "-m", "daphne", "-b", launcher.HOST, "-p", str(port), "proj.asgi:application"],
        "worker": [python, "-m", "celery", "-A", "proj", "worker", "-l", "info", "--concurrency=1", "-n", "shop@%h"],
        "engine": [python, "manage.py", "engine"],
    }
    processes = launcher.Processes(project.env, cwd=project.root)
    try:
        for name, argv in commands.items():
            project.logs[name] = project.root / f"{name}.log"
            with project.logs[name].open("w") as log:
                processes.start(name, argv, log)
        wait_for(lambda: launcher.http_answers(f"{project.base_url}/runyard/healthz"), "web", processes, project)
        wait_for(lambda: "ready." in tail(project.logs["worker"], 200), "the worker", processes, project)
    except BaseException:
        processes.stop()
        raise
    return processes


@pytest.fixture(scope="module")
def adopting_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The project, with Runyard installed from a wheel, migrated and running web, worker and engine."""
    tmp = tmp_path_factory.mktemp("adopting")
    root, site = tmp / "proj", tmp / "site"
    shutil.copytree(PROJECT, root)
    wheel = build_wheel(tmp / "wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    database = f"runyard_adopting_{secrets.token_hex(4)}"
    admin_url = settings.DATABASE_URL
    create_database(admin_url, database)
    project = Project(root=root, site=site, env=project_env(root, site, database))
    try:
        project.manage("migrate", "--noinput", timeout=120)
        superuser = {"DJANGO_SUPERUSER_USERNAME": USERNAME, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
        project.manage("createsuperuser", "--noinput", "--email", "shop@example.com", env=superuser)
        project.api_key = project.manage("apikey", "create", "--env", "dev", "--name", "shop").strip()
        project.processes = start(project)
        yield project
    finally:
        if project.processes is not None:
            project.processes.stop()
        flush_redis_db()
        drop_database(admin_url, database)


def flush_redis_db() -> None:
    import redis

    redis.Redis.from_url(f"{settings.REDIS_URL}?db={REDIS_DB}").flushdb()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    project = getattr(item, "funcargs", {}).get("adopting_project")
    if report.failed and isinstance(project, Project):
        report.sections.append(("adopting project logs", project.log_tails()))
    return report
