"""Concurrent retries of one request make one run (the SDK resends the same request key)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from runs import engine
from runs.models import Run
from tests import factories


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_retries_of_one_request_create_exactly_one_run() -> None:
    env = factories.environment("dev")
    factories.task_definition("hello-world")

    def attempt(_: int) -> str:
        try:
            return engine.trigger(environment=env, task_id="hello-world", actor="test", request_key="same").run.id
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(attempt, range(8)))
    assert len(ids) == 1
    assert Run.objects.count() == 1
