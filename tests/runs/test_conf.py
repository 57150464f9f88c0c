"""Runyard's setting defaults (runs.conf), for a project that installs it and sets none."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

import dashboard.settings as standalone
from runs import conf

# The standalone project names the example tasks and adopts every Celery task; an installed
# Runyard knows no task modules and adopts none until told.
PROJECT_SPECIFIC = {"RUNYARD_TASK_MODULES", "RUNYARD_CELERY_TASKS"}


@pytest.mark.parametrize("name", sorted(set(conf.DEFAULTS) - PROJECT_SPECIFIC))
def test_the_standalone_settings_default_to_the_packaged_defaults(name: str) -> None:
    if name in os.environ:
        pytest.skip(f"{name} is set in this environment")
    assert getattr(standalone, name) == conf.DEFAULTS[name]


def test_every_runyard_setting_the_standalone_project_reads_has_a_default() -> None:
    defined = {name for name in vars(standalone) if name.startswith("RUNYARD_")}
    # Derived from the standalone's own secret key handling, not read by the apps as settings.
    defined -= {"RUNYARD_SECRET_KEY_SOURCE", "RUNYARD_SECRET_KEY_PATH"}
    assert defined <= set(conf.DEFAULTS) | set(conf.DERIVED)


def test_a_project_without_runyard_settings_gets_every_default() -> None:
    project = SimpleNamespace(BASE_DIR=Path("/srv/shop"), CELERY_BROKER_URL="redis://cache:6379/3")
    conf.apply_defaults(project)
    for name, value in conf.DEFAULTS.items():
        assert getattr(project, name) == value
    assert Path("/srv/shop/var") == project.VAR_DIR
    assert Path("/srv/shop/var/objects") == project.RUNYARD_OBJECTS_DIR
    assert project.REDIS_URL == "redis://cache:6379/3"


def test_a_projects_own_values_win_over_the_defaults() -> None:
    project = SimpleNamespace(RUNYARD_WORKER_TIMEOUT=5.0, VAR_DIR=Path("/data"), REDIS_URL="redis://r/1")
    conf.apply_defaults(project)
    assert project.RUNYARD_WORKER_TIMEOUT == 5.0
    assert Path("/data/objects") == project.RUNYARD_OBJECTS_DIR
    assert project.REDIS_URL == "redis://r/1"


def test_redis_defaults_to_localhost_when_the_broker_is_not_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/tmp")
    project = SimpleNamespace(CELERY_BROKER_URL="amqp://guest@rabbit//")
    conf.apply_defaults(project)
    assert project.REDIS_URL == "redis://localhost:6379/0"
    assert Path("/tmp/var") == project.VAR_DIR
    assert conf.redis_url("redis+socket:///run/redis.sock") == "unix:///run/redis.sock"
