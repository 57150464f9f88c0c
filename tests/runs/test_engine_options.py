"""Trigger options with the semantics of the reference: idempotency, debounce, queues, timeouts."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection

from runs import engine
from runs.models import Environment, Queue, Run
from runs.options import parse_trigger_options
from runs.states import RunStatus
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def trigger(env: Environment, payload: Any = None, task_id: str = "hello-world", **raw: Any) -> engine.TriggerResult:
    factories.task_definition(task_id)
    data = factories.superjson(payload)
    return engine.trigger(
        environment=env,
        task_id=task_id,
        payload=data,
        payload_type="application/super+json",
        options=parse_trigger_options(raw),
        actor="test",
    )


def finish(run: Run, status: str = "COMPLETED") -> None:
    engine.admit(now=engine_now())
    attempt = engine.start_attempt(run_id=run.id, worker="w")
    assert attempt is not None
    if status == "COMPLETED":
        engine.complete_attempt(run_id=run.id, attempt=attempt.number, output="", output_type="")
    else:
        engine.fail_attempt(run_id=run.id, attempt=attempt.number, error={"message": "x"}, retry=None)


def engine_now() -> datetime:
    from django.utils import timezone

    return timezone.now()


# --- idempotency --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_repeated_idempotency_key_returns_the_existing_run_cached(dev: Environment) -> None:
    first = trigger(dev, {"n": 1}, idempotencyKey="k1", idempotencyKeyOptions={"key": "order-1", "scope": "run"})
    again = trigger(dev, {"n": 2}, idempotencyKey="k1")
    assert again.run.id == first.run.id and again.is_cached is True and first.is_cached is False
    assert Run.objects.get(pk=first.run.id).idempotency_key_user == "order-1"


@pytest.mark.django_db
def test_idempotency_keys_are_scoped_to_environment_and_task(dev: Environment, prod: Environment) -> None:
    a = trigger(dev, idempotencyKey="k").run
    assert trigger(prod, idempotencyKey="k").run.id != a.id
    assert trigger(dev, task_id="hello-world-2", idempotencyKey="k").run.id != a.id


@pytest.mark.django_db
@pytest.mark.parametrize("final", ["COMPLETED", "CANCELED"])
def test_completed_and_canceled_runs_keep_their_key(dev: Environment, final: str) -> None:
    run = trigger(dev, idempotencyKey="k", maxAttempts=1).run
    if final == "CANCELED":
        engine.cancel_run(run_id=run.id, actor="test")
    else:
        finish(run)
    assert trigger(dev, idempotencyKey="k").run.id == run.id


@pytest.mark.django_db
def test_a_failed_run_releases_its_key_so_a_new_run_is_made(dev: Environment) -> None:
    run = trigger(dev, idempotencyKey="k", maxAttempts=1).run
    finish(run, "FAILED")
    again = trigger(dev, idempotencyKey="k")
    assert again.run.id != run.id and again.is_cached is False
    assert Run.objects.get(pk=run.id).idempotency_key is None


@pytest.mark.django_db
def test_an_expired_run_releases_its_key(dev: Environment, clock: time_machine.Traveller) -> None:
    run = trigger(dev, idempotencyKey="k", ttl="1m").run
    engine.expire_runs(now=T0 + timedelta(minutes=1))
    assert trigger(dev, idempotencyKey="k").run.id != run.id


@pytest.mark.django_db
def test_an_idempotency_key_expires_after_its_ttl(dev: Environment, clock: time_machine.Traveller) -> None:
    run = trigger(dev, idempotencyKey="k", idempotencyKeyTTL="1h").run
    clock.move_to(T0 + timedelta(minutes=59))
    assert trigger(dev, idempotencyKey="k").run.id == run.id
    clock.move_to(T0 + timedelta(hours=1))
    assert trigger(dev, idempotencyKey="k").run.id != run.id


@pytest.mark.django_db
def test_idempotency_keys_last_thirty_days_by_default(dev: Environment, clock: time_machine.Traveller) -> None:
    run = trigger(dev, idempotencyKey="k").run
    assert run.idempotency_key_expires_at == T0 + timedelta(days=30)


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_identical_triggers_create_exactly_one_run() -> None:
    env = factories.environment("dev")
    factories.task_definition("hello-world")

    def attempt(_: int) -> str:
        try:
            return trigger(env, {"same": True}, idempotencyKey="concurrent").run.id
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(attempt, range(8)))
    assert len(ids) == 1 and Run.objects.count() == 1


# --- debounce -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_debounced_triggers_push_one_delayed_run_later(dev: Environment, clock: time_machine.Traveller) -> None:
    first = trigger(dev, {"n": 1}, debounce={"key": "user-1", "delay": "5s"})
    assert first.run.status == RunStatus.DELAYED and first.run.delay_until == T0 + timedelta(seconds=5)
    clock.move_to(T0 + timedelta(seconds=3))
    second = trigger(dev, {"n": 2}, debounce={"key": "user-1", "delay": "5s"})
    assert second.run.id == first.run.id and second.is_cached is False
    run = Run.objects.get(pk=first.run.id)
    assert run.delay_until == T0 + timedelta(seconds=8)
    assert run.payload == factories.superjson({"n": 1})  # leading: the first trigger's data


@pytest.mark.django_db
def test_trailing_debounce_takes_the_latest_triggers_data(dev: Environment, clock: time_machine.Traveller) -> None:
    debounce = {"key": "doc-9", "delay": "5s", "mode": "trailing"}
    run = trigger(dev, {"v": 1}, debounce=debounce, tags=["a"], metadata={"m": 1}, maxAttempts=2).run
    clock.move_to(T0 + timedelta(seconds=1))
    trigger(dev, {"v": 2}, debounce=debounce, tags=["b"], metadata={"m": 2}, maxAttempts=5, machine="large-1x")
    run.refresh_from_db()
    assert run.payload == factories.superjson({"v": 2})
    assert (run.tags, run.metadata, run.max_attempts, run.machine) == (["b"], {"m": 2}, 5, "large-1x")


@pytest.mark.django_db
def test_debounce_keys_are_scoped_to_the_task(dev: Environment) -> None:
    a = trigger(dev, debounce={"key": "k", "delay": "5s"}).run
    b = trigger(dev, task_id="hello-world-2", debounce={"key": "k", "delay": "5s"}).run
    assert a.id != b.id


@pytest.mark.django_db
def test_a_debounced_run_that_left_delayed_is_not_reused(dev: Environment, clock: time_machine.Traveller) -> None:
    first = trigger(dev, debounce={"key": "k", "delay": "5s"}).run
    engine.promote_delayed(now=T0 + timedelta(seconds=5))
    clock.move_to(T0 + timedelta(seconds=6))
    assert trigger(dev, debounce={"key": "k", "delay": "5s"}).run.id != first.id


@pytest.mark.django_db
def test_an_idempotency_match_wins_over_debounce(dev: Environment) -> None:
    keyed = trigger(dev, idempotencyKey="idem").run
    debounced = trigger(dev, debounce={"key": "k", "delay": "5s"}).run
    result = trigger(dev, idempotencyKey="idem", debounce={"key": "k", "delay": "5s"})
    assert result.run.id == keyed.id and result.is_cached is True and result.run.id != debounced.id


@pytest.mark.django_db
def test_the_reference_debounce_timeline_with_max_delay(dev: Environment, clock: time_machine.Traveller) -> None:
    """delay 5s, maxDelay 30s, a trigger every 2s (the reference's table, with its 26s slip fixed)."""
    debounce = {"key": "chat-1", "delay": "5s", "maxDelay": "30s"}
    seen: dict[int, tuple[str, datetime]] = {}
    for second in range(0, 31, 2):
        clock.move_to(T0 + timedelta(seconds=second))
        engine.promote_delayed(now=T0 + timedelta(seconds=second))
        run = trigger(dev, {"t": second}, debounce=debounce).run
        run.refresh_from_db()
        assert run.delay_until is not None
        seen[second] = (run.id, run.delay_until)
    run_a, run_b = seen[0][0], seen[26][0]
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    assert seen[0] == (run_a, at(5)) and seen[2] == (run_a, at(7)) and seen[4] == (run_a, at(9))
    assert seen[24] == (run_a, at(29))
    # 26s would push Run A to 31s, past 0s + 30s: Run A keeps 29s and Run B is created.
    assert run_b != run_a and seen[26] == (run_b, at(31))
    assert seen[28] == (run_b, at(33)) and seen[30] == (run_b, at(35))
    a = Run.objects.get(pk=run_a)
    assert a.delay_until == at(29) and a.status == RunStatus.QUEUED  # promoted at 29s, before the 30s trigger
    assert Run.objects.count() == 2


# --- queues, concurrency keys, max duration ----------------------------------------------


@pytest.mark.django_db
def test_a_queue_option_with_a_limit_sets_that_queues_limit(dev: Environment) -> None:
    run = trigger(dev, queue={"name": "main-branch", "concurrencyLimit": 10}).run
    assert run.queue == "main-branch"
    assert Queue.objects.get(environment=dev, name="main-branch").concurrency_limit == 10


@pytest.mark.django_db
def test_each_concurrency_key_gets_its_own_copy_of_the_limit(dev: Environment) -> None:
    for user in ["u1", "u1", "u1", "u2", "u2", "u3"]:
        trigger(dev, queue={"name": "free-users", "concurrencyLimit": 1}, concurrencyKey=user)
    assert engine.admit(now=engine_now()) == 3
    active = Run.objects.filter(status=RunStatus.DEQUEUED)
    assert sorted(active.values_list("concurrency_key", flat=True)) == ["u1", "u2", "u3"]
    assert engine.admit(now=engine_now()) == 0


@pytest.mark.django_db
def test_a_run_past_its_max_duration_times_out_and_is_not_retried(
    dev: Environment, clock: time_machine.Traveller
) -> None:
    run = trigger(dev, maxDuration=30, maxAttempts=3).run
    engine.admit(now=T0)
    attempt = engine.start_attempt(run_id=run.id, worker="w", now=T0)
    assert attempt is not None
    assert engine.time_out_runs(now=T0 + timedelta(seconds=29)) == 0
    assert engine.time_out_runs(now=T0 + timedelta(seconds=30)) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.TIMED_OUT and run.error is not None
    assert "maxDuration" in run.error["message"]
    assert engine.complete_attempt(run_id=run.id, attempt=attempt.number, output="", output_type="") is None
