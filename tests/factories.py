"""Factory functions for tests: real rows through the real engine."""

from __future__ import annotations

import importlib
from typing import Any

from django.contrib.auth.models import Group, Permission

from runs import engine
from runs.models import ApiKey, Environment, Run, TaskDefinition

ENVIRONMENTS = {
    "dev": ("Development", "DEVELOPMENT"),
    "staging": ("Staging", "STAGING"),
    "prod": ("Production", "PRODUCTION"),
}


def environment(slug: str = "dev") -> Environment:
    # Transactional tests flush the rows the data migration made, so recreate on demand.
    name, kind = ENVIRONMENTS[slug]
    env, _ = Environment.objects.get_or_create(slug=slug, defaults={"name": name, "kind": kind})
    return env


def roles() -> None:
    """The Viewers, Operators and Admins groups as migration 0003 makes them (for transactional tests)."""
    migration = importlib.import_module("runs.migrations.0003_audit_bulk_roles")
    for name, dotted in migration.ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        codenames = [perm.split(".")[1] for perm in dotted]
        group.permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=codenames))


def api_key(slug: str = "dev") -> str:
    """A new secret key for the environment."""
    return ApiKey.generate(environment(slug))[1]


def task_definition(task_id: str = "hello-world", **fields: Any) -> TaskDefinition:
    defaults = {"queue": f"task/{task_id}", "machine": "small-1x", "max_attempts": 1, **fields}
    definition, _ = TaskDefinition.objects.update_or_create(task_id=task_id, defaults=defaults)
    return definition


def superjson(payload: Any) -> str:
    """A payload serialized the way the official SDK sends it ("" for none)."""
    import json

    return json.dumps({"json": payload}) if payload is not None else ""


def run(task_id: str = "hello-world", env: str = "dev", payload: Any = None, **options: Any) -> Run:
    """Trigger a run through the engine (the task is defined first)."""
    task_definition(task_id)
    data = superjson(payload)
    result = engine.trigger(
        environment=environment(env),
        task_id=task_id,
        payload=data,
        payload_type="application/super+json",
        options=engine.TriggerOptions(**options),
        actor="test",
    )
    return result.run


def decode_output(run: Run) -> Any:
    from runs import packets

    return packets.decode(run.output, run.output_type)
