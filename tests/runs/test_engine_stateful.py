"""Random operation sequences against the real engine, checking its invariants after every step.

Hypothesis drives triggers (random queue, concurrency key, delay, TTL, priority, attempts,
idempotency key), scheduler ticks, the passing of time, worker reports (start, heartbeat,
complete, fail, including stale ones), cancels, reschedules and replays. No Celery worker is
involved: admission hands runs to Celery in transaction.on_commit, which never fires inside
the test's transaction, and the rules play the worker's part by calling the engine directly.

After every step: no queue (per concurrency key) holds more active runs than its limit, every
timeline follows the transition table and ends in the run's status, final runs have
finished_at, and an idempotency key names one run until it is released.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import transaction
from django.db.models import Count
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from runs import engine
from runs.models import Run, RunEvent
from runs.registry import Retry
from runs.states import ACTIVE_STATUSES, FINAL_STATUSES, KEY_RELEASING_STATUSES, RunStatus, can_transition
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TASK = "stateful-task"
LIMITS = {"q-one": 1, "q-two": 2, "q-three": 3}  # queue -> its concurrency limit (fixed)
KEYS = ["", "tenant-a", "tenant-b"]
IDEMPOTENCY_KEYS = [None, None, "idem-1", "idem-2"]

pytestmark = pytest.mark.django_db


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Each example starts from an empty database: a savepoint rolled back in teardown.
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.now = T0
        self.travel = time_machine.travel(T0, tick=False)
        self.clock = self.travel.start()
        self.environment = factories.environment("dev")
        factories.task_definition(TASK)
        self.key_holders: dict[str, str] = {}  # idempotency key -> the run that took it
        # Run ids are random: rules pick runs by creation order so a failing example replays.
        self.created: dict[str, int] = {}

    def teardown(self) -> None:
        self.travel.stop()
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    # --- helpers ---------------------------------------------------------------------------

    def runs_in(self, *statuses: str) -> list[str]:
        query = Run.objects.filter(status__in=statuses) if statuses else Run.objects.all()
        return sorted(query.values_list("id", flat=True), key=self.created.__getitem__)

    def tick_clock(self) -> None:
        """A millisecond passes: runs created one after another do not tie on created_at, so the
        engine's queue order (available_at, created_at, id) never falls to their random ids."""
        self.now += timedelta(milliseconds=1)
        self.clock.move_to(self.now)

    def created_run(self, run_id: str) -> None:
        self.created.setdefault(run_id, len(self.created))

    def has(self, *statuses: str) -> bool:
        return Run.objects.filter(status__in=statuses).exists()

    # --- rules -----------------------------------------------------------------------------

    @rule(
        queue=st.sampled_from(sorted(LIMITS)),
        key=st.sampled_from(KEYS),
        delay=st.one_of(st.none(), st.integers(1, 120)),
        ttl=st.one_of(st.none(), st.integers(10, 600)),
        priority=st.integers(0, 30),
        max_attempts=st.integers(1, 3),
        idempotency_key=st.sampled_from(IDEMPOTENCY_KEYS),
    )
    def trigger(
        self,
        queue: str,
        key: str,
        delay: int | None,
        ttl: int | None,
        priority: int,
        max_attempts: int,
        idempotency_key: str | None,
    ) -> None:
        holder = None
        if idempotency_key is not None and idempotency_key in self.key_holders:
            held = Run.objects.get(pk=self.key_holders[idempotency_key])
            expired = held.idempotency_key_expires_at is not None and held.idempotency_key_expires_at <= self.now
            if held.status not in KEY_RELEASING_STATUSES and not expired:
                holder = held.id
        options = engine.TriggerOptions(
            queue=queue,
            queue_concurrency_limit=LIMITS[queue],
            concurrency_key=key,
            delay_until=self.now + timedelta(seconds=delay) if delay else None,
            ttl=ttl,
            priority=priority,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
        )
        self.tick_clock()
        result = engine.trigger(environment=self.environment, task_id=TASK, options=options, actor="test", now=self.now)
        self.created_run(result.run.id)
        if holder is not None:
            assert result.is_cached and result.run.id == holder, "a held idempotency key made a second run"
        else:
            assert not result.is_cached
            if idempotency_key is not None:
                self.key_holders[idempotency_key] = result.run.id

    @rule(queue=st.sampled_from(sorted(LIMITS)), key=st.sampled_from(KEYS), count=st.integers(2, 5))
    def trigger_burst(self, queue: str, key: str, count: int) -> None:
        """Several runs at once in one queue and key: more than its limit wait for a slot."""
        options = engine.TriggerOptions(queue=queue, queue_concurrency_limit=LIMITS[queue], concurrency_key=key)
        for _ in range(count):
            self.tick_clock()
            result = engine.trigger(
                environment=self.environment, task_id=TASK, options=options, actor="test", now=self.now
            )
            self.created_run(result.run.id)

    @rule()
    def tick(self) -> None:
        engine.tick(now=self.now)

    @rule(seconds=st.sampled_from([1, 5, 30, 61, 300]))
    def advance(self, seconds: int) -> None:
        """Time passes and the engine ticks, as its process does continuously."""
        self.now += timedelta(seconds=seconds)
        self.clock.move_to(self.now)
        engine.tick(now=self.now)

    @precondition(lambda self: self.has(RunStatus.DEQUEUED, RunStatus.EXECUTING))
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        # Also a redelivered message for a run already executing: it must not start again.
        run_id = data.draw(st.sampled_from(self.runs_in(RunStatus.DEQUEUED, RunStatus.EXECUTING)))
        before = Run.objects.get(pk=run_id)
        attempt = engine.start_attempt(run_id=run_id, worker="w1", now=self.now)
        assert (attempt is not None) == (before.status == RunStatus.DEQUEUED)

    @precondition(lambda self: self.has(RunStatus.EXECUTING))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        run = Run.objects.get(pk=data.draw(st.sampled_from(self.runs_in(RunStatus.EXECUTING))))
        assert engine.heartbeat(run_id=run.id, attempt=run.attempt_count, now=self.now)

    @precondition(lambda self: self.has(RunStatus.EXECUTING))
    @rule(data=st.data(), stale=st.booleans())
    def complete(self, data: st.DataObject, stale: bool) -> None:
        run = Run.objects.get(pk=data.draw(st.sampled_from(self.runs_in(RunStatus.EXECUTING))))
        attempt = run.attempt_count - 1 if stale else run.attempt_count
        done = engine.complete_attempt(run_id=run.id, attempt=attempt, output="{}", output_type="application/json")
        assert (done is None) == stale

    @precondition(lambda self: self.has(RunStatus.EXECUTING))
    @rule(data=st.data(), backoff=st.sampled_from([0, 1, 10]))
    def fail(self, data: st.DataObject, backoff: int) -> None:
        run = Run.objects.get(pk=data.draw(st.sampled_from(self.runs_in(RunStatus.EXECUTING))))
        after = engine.fail_attempt(
            run_id=run.id,
            attempt=run.attempt_count,
            error={"message": "boom"},
            retry=Retry(min_timeout=backoff),
            now=self.now,
        )
        assert after is not None
        expected = RunStatus.QUEUED if run.attempt_count < run.max_attempts else RunStatus.FAILED
        assert after.status == expected

    @precondition(lambda self: Run.objects.exists())
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(self.runs_in()))
        before = Run.objects.get(pk=run_id).status
        after = engine.cancel_run(run_id=run_id, actor="user:test", now=self.now)
        assert after.status == (before if before in FINAL_STATUSES else RunStatus.CANCELED)

    @precondition(lambda self: self.has(RunStatus.DELAYED))
    @rule(data=st.data(), seconds=st.integers(1, 600))
    def reschedule(self, data: st.DataObject, seconds: int) -> None:
        run_id = data.draw(st.sampled_from(self.runs_in(RunStatus.DELAYED)))
        run = engine.reschedule_run(
            run_id=run_id, delay_until=self.now + timedelta(seconds=seconds), actor="user:test", now=self.now
        )
        assert run.status == RunStatus.DELAYED

    @precondition(lambda self: Run.objects.exists())
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        original = Run.objects.get(pk=data.draw(st.sampled_from(self.runs_in())))
        self.tick_clock()
        replayed = engine.replay_run(
            run_id=original.id, actor="user:test", options=engine.TriggerOptions(), now=self.now
        ).run
        self.created_run(replayed.id)
        assert replayed.id != original.id
        assert (replayed.queue, replayed.concurrency_key) == (original.queue, original.concurrency_key)

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def limits_hold(self) -> None:
        active = (
            Run.objects.filter(status__in=ACTIVE_STATUSES)
            .values_list("queue", "concurrency_key")
            .annotate(n=Count("id"))
            .order_by()
        )
        for queue, key, count in active:
            assert count <= LIMITS[queue], f"{count} active runs in {queue}/{key!r}, limit {LIMITS[queue]}"

    @invariant()
    def timelines_follow_the_transition_table(self) -> None:
        statuses = dict(Run.objects.values_list("id", "status"))
        chains: dict[str, list[tuple[str, str]]] = {}
        for run_id, frm, to in RunEvent.objects.order_by("run_id", "at", "id").values_list(
            "run_id", "from_status", "to_status"
        ):
            chains.setdefault(run_id, []).append((frm, to))
        assert set(chains) == set(statuses)
        for run_id, chain in chains.items():
            assert chain[0][0] == "", (run_id, chain)
            for (_, previous), (frm, to) in itertools.pairwise(chain):
                assert frm == previous, (run_id, chain)
                assert frm == to or can_transition(frm, to), (run_id, chain)
            assert chain[-1][1] == statuses[run_id], (run_id, chain)
            assert sum(1 for _, to in chain if to == RunStatus.COMPLETED) <= 1, (run_id, chain)

    @invariant()
    def final_runs_have_finished_at(self) -> None:
        assert not Run.objects.filter(status__in=FINAL_STATUSES, finished_at__isnull=True).exists()
        assert not Run.objects.exclude(status__in=FINAL_STATUSES).filter(finished_at__isnull=False).exists()

    @invariant()
    def an_idempotency_key_names_one_run(self) -> None:
        held = (
            Run.objects.filter(idempotency_key__isnull=False)
            .values_list("task_identifier", "idempotency_key")
            .annotate(n=Count("id"))
            .order_by()
        )
        assert all(n == 1 for _, _, n in held)
        for key, run_id in self.key_holders.items():
            holder = Run.objects.get(pk=run_id)
            if holder.idempotency_key is None:
                # Released only once its run failed, crashed, expired or timed out (keys live 30 days).
                assert holder.status in KEY_RELEASING_STATUSES, (key, holder.status)


def test_random_operation_sequences_keep_the_engine_invariants(dev: object) -> None:
    run_state_machine_as_test(
        EngineMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
