"""Rows the live runs list pushes carry the paused marker of a queued run a pause holds, even
when the same run's row was rendered (and cached) just before the pause."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from runs import engine
from runs.models import Run
from tests.dashboard.test_consumers import connect, make_run, publish, updated_row

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]


@database_sync_to_async
def pause_task(run: Run) -> None:
    engine.pause_task(environment_id=run.environment_id, task_id=run.task_identifier, actor="user:olga")


async def test_a_pushed_row_of_a_held_run_has_the_paused_marker(user: User, connected: list) -> None:
    run = await make_run("mailer")
    communicator = await connect("/ws/runs/?env=dev", user, connected)
    assert await communicator.receive_nothing(timeout=0.3)
    await publish(run)
    before = await communicator.receive_from(timeout=2)
    assert before.startswith(updated_row(run)) and "run-paused" not in before
    await pause_task(run)  # changes no run: its updated_at is what the cached frame was made of
    await publish(run)
    after = await communicator.receive_from(timeout=2)
    assert after.startswith(updated_row(run))
    assert '<span class="run-paused" data-paused="task"' in after
