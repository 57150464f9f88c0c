"""The engine hands admitted runs to Celery with the message apply_async would send, built
from a template (a sixth of apply_async's CPU per run), unless something observes publishing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals

from runs import ratelimit
from runs.engine import scheduler
from runs.engine.core import celery_task_id
from runs.tasks import execute_run

QUEUE = "runyard.test-admission-send"


@pytest.fixture
def broker_queue() -> Iterator[None]:
    """QUEUE on the broker, empty at the start and the end."""
    client = ratelimit.redis_client()
    client.delete(QUEUE)
    yield
    client.delete(QUEUE)


def taken() -> list[dict[str, Any]]:
    client = ratelimit.redis_client()
    raw = client.lrange(QUEUE, 0, -1)
    client.delete(QUEUE)
    return [json.loads(item) for item in reversed(raw)]  # kombu LPUSHes, workers BRPOP


def sent_by(send: Any, run_id: str, dispatch: int) -> dict[str, Any]:
    with execute_run.app.producer_or_acquire() as producer:
        send(producer, run_id, dispatch, QUEUE)
    (message,) = taken()
    return message


def test_the_engines_message_is_the_one_apply_async_sends(broker_queue: None) -> None:
    expected = sent_by(scheduler._send_run, "run_abc", 3)
    got = sent_by(scheduler._publish_run, "run_abc", 3)
    assert got["headers"]["id"] == celery_task_id("run_abc", 3) == got["properties"]["correlation_id"]
    for message in (expected, got):
        message["properties"].pop("delivery_tag")  # kombu's own, new for every message
    assert got == expected


def test_admitted_runs_go_out_in_order_each_with_its_own_ids(broker_queue: None) -> None:
    scheduler._send_to_celery([(f"run_{n}", n + 1, QUEUE) for n in range(3)])
    messages = taken()
    assert [m["headers"]["id"] for m in messages] == [celery_task_id(f"run_{n}", n + 1) for n in range(3)]
    assert [json.loads(base64.b64decode(m["body"]))[0] for m in messages] == [[f"run_{n}"] for n in range(3)]
    assert [m["headers"]["argsrepr"] for m in messages] == [repr((f"run_{n}",)) for n in range(3)]


def test_a_publish_signal_receiver_still_sees_the_engines_messages(broker_queue: None) -> None:
    seen: list[str] = []

    def receiver(sender: str | None = None, headers: dict[str, Any] | None = None, **_: object) -> None:
        seen.append((headers or {})["id"])

    signals.before_task_publish.connect(receiver)
    try:
        scheduler._send_to_celery([("run_x", 1, QUEUE)])
    finally:
        signals.before_task_publish.disconnect(receiver)
    assert seen == [celery_task_id("run_x", 1)]
    assert len(taken()) == 1
