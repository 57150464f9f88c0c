"""Channel groups and publish-after-commit. Called only by the engine.

Messages carry ids only; consumers render from current database state, so duplicates
and reordering are harmless.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction

log = logging.getLogger(__name__)

ENGINE_CHANNEL = "runyard_engine"


def env_group(environment_id: int) -> str:
    return f"env-{environment_id}"


def run_group(run_id: str) -> str:
    return f"run-{run_id}"


def publish_run_changed(*, environment_id: int, run_id: str, created: bool = False) -> None:
    """After the current transaction commits, tell subscribers that a run changed."""
    transaction.on_commit(lambda: _send(environment_id, run_id, created))


def _send(environment_id: int, run_id: str, created: bool) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "run.changed", "run_id": run_id, "created": created}
    try:
        async_to_sync(layer.group_send)(env_group(environment_id), message)
        async_to_sync(layer.group_send)(run_group(run_id), message)
    except Exception:
        log.warning("could not publish change of %s", run_id, exc_info=True)


def wake_engine() -> None:
    """NOTIFY engines that there is work; delivered by PostgreSQL at commit."""
    with connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {ENGINE_CHANNEL}")
