"""The Procfile's commands run Runyard: release migrates a new database, then web, worker and
engine serve a run; compose.yaml and the systemd units start the same commands."""

from __future__ import annotations

import configparser
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from django.conf import settings

from dashboard import embedded
from dashboard.management import launcher
from runs.states import FINAL_STATUSES
from tests.live import (
    LiveStack,
    create_database,
    database_url,
    drop_database,
    prepare,
    wait_for,
    worker_registrations,
)

pytestmark = pytest.mark.e2e

ROOT = Path(settings.BASE_DIR)
SYSTEMD = ROOT / "docs" / "deploy" / "systemd"


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): command.strip() for name, command in entries}


@pytest.fixture
def procfile_stack() -> Iterator[LiveStack]:
    """A database and Redis of its own, migrated by the Procfile's release command and served by
    its web, worker and engine (run through sh, as Procfile runners do)."""
    database = f"runyard_procfile_{os.getpid()}"
    var_dir = Path(tempfile.mkdtemp(prefix="ry-proc-"))
    (var_dir / "static").mkdir()
    create_database(settings.DATABASE_URL, database)
    env = launcher.child_env(
        DATABASE_URL=database_url(settings.DATABASE_URL, database),
        RUNYARD_VAR=str(var_dir),
        RUNYARD_ENGINE_POLL_INTERVAL="0.2",
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",  # daphne, celery
    )
    processes = launcher.Processes(env)
    try:
        commands = procfile()
        release = launcher.Processes(env)
        with (var_dir / "release.log").open("w") as log:
            release.start("release", ["sh", "-c", commands["release"]], log)
            assert release.running["release"].wait(120) == 0, (var_dir / "release.log").read_text()
        stack = prepare(env)
        env["PORT"] = str(urlparse(stack.base_url).port)
        stack.logs = {name: var_dir / f"{name}.log" for name in ("web", "worker", "engine")}
        for name in stack.logs:
            with stack.logs[name].open("w") as log:
                processes.start(name, ["sh", "-c", f"exec {commands[name]}"], log)
        stack.processes = processes
        wait_for(lambda: launcher.http_answers(f"{stack.base_url}/healthz"), "web to answer", processes, stack)
        wait_for(lambda: bool(worker_registrations(stack, "%")), "the worker to register", processes, stack)
        yield stack
    finally:
        processes.stop()
        embedded.stop_all(var_dir)
        shutil.rmtree(var_dir, ignore_errors=True)
        drop_database(settings.DATABASE_URL, database)


def test_the_procfile_migrates_then_serves_a_run_of_any_machine(procfile_stack: LiveStack) -> None:
    # large-2x: the Procfile's worker names no queue, so it must serve every machine's.
    run_id = procfile_stack.trigger("hello-world", {"name": "Proc"}, machine="large-2x")
    run = procfile_stack.run_until(run_id, lambda run: run["status"] in FINAL_STATUSES, "to finish", 60)
    assert run["status"] == "COMPLETED", run
    assert run["output"] == {"message": "Hello, Proc!"}


def test_compose_and_the_systemd_units_start_the_procfiles_commands() -> None:
    commands = procfile()
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    shell = {name: " ".join(compose[name]["command"]) for name in ("web", "worker", "engine", "migrate")}
    assert shell["engine"] == commands["engine"]
    assert shell["migrate"] == commands["release"]
    assert "exec daphne -b 0.0.0.0 -p 8000 dashboard.asgi:application" in shell["web"]
    assert "exec celery -A dashboard worker -l info --concurrency=" in shell["worker"]
    for name in ("web", "worker", "engine"):
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.read(SYSTEMD / f"runyard-{name}.service")
        start = unit["Service"]["ExecStart"].replace("/opt/runyard/.venv/bin/", "")
        assert start == commands[name].replace("${PORT:-8000}", "${PORT}").replace(
            "${RUNYARD_WORKER_CONCURRENCY:-2}", "${RUNYARD_WORKER_CONCURRENCY}"
        ), name
