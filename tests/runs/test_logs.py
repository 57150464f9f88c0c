"""Run logs captured from a task's code: what it logs and prints, per run and attempt, with
limits and redaction (the executor called directly, the engine and PostgreSQL for real)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.utils.log import get_task_logger
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import example_tasks  # noqa: F401 - registers hello-world
from runs import engine, logcapture, logs, registry, worker
from runs.models import Environment, Run, RunLog, RunLogSummary
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db
log = logging.getLogger("tests.logging_task")


@registry.task(id="test-logs-everything")
def logs_everything(payload: Any) -> None:
    log.info("starting %s", payload["name"], extra={"order": 7, "customer": {"id": "c-1"}})
    logging.getLogger("some.library").warning("a library speaks")
    log.debug("not captured below INFO")
    print("printed", "line")
    print("to stderr", file=sys.stderr)
    sys.stdout.write("two ")
    sys.stdout.write("parts\nand a tail")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("it went wrong")


@registry.task(id="test-logs-celery-logger")
def logs_to_celerys_task_logger(payload: Any) -> None:
    get_task_logger("tests.celery_style").info("through Celery's task logger")


@registry.task(id="test-logs-many")
def logs_many(payload: Any) -> None:
    for n in range(payload["n"]):
        log.info("line %d", n)


@registry.task(id="test-logs-then-fails", retry=registry.Retry(max_attempts=2, min_timeout=1))
def logs_then_fails(payload: Any) -> None:
    log.error("about to fail")
    raise RuntimeError("failed after logging")


@registry.task(id="test-logs-secret")
def logs_secret(payload: Any) -> None:
    log.info("calling with key %s", "tr_prod_" + "a" * 32)
    log.info("Authorization: Bearer abcdefgh12345678")
    log.info("connecting to postgresql://app:hunter2@db:5432/app password=s3cret!")
    log.info("card 4111-1111-1111-1111", extra={"token": "abc123456789", "ref": "tok_123456789"})


@registry.task(id="test-logs-paused")
def logs_with_capture_paused(payload: Any) -> None:
    log.info("kept before")
    with logcapture.paused():
        log.info("not the run's")
        print("not the run's either")
    log.info("kept after")


@registry.task(id="test-logs-formatted-first")
def logs_through_a_formatting_handler(payload: Any) -> None:
    formatted = logging.getLogger("tests.formatted")
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - closed below
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    formatted.addHandler(handler)  # runs before the root logger's, so the record has message and asctime
    try:
        formatted.info("plain")
        formatted.info("with a field", extra={"order": 7})
    finally:
        formatted.removeHandler(handler)
        handler.stream.close()


def executed(task_id: str, payload: Any = None, **options: Any) -> Run:
    run = factories.run(task_id, payload=payload, **options)
    engine.admit(now=run.created_at)
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    return run


def messages(run: Run, attempt: int | None = None) -> list[str]:
    return [line.message for line in logs.lines(run.id, logs.LineFilter(attempt=attempt), limit=100_000)]


def test_records_of_any_logger_and_printed_lines_are_the_runs_lines_in_order(dev: Environment) -> None:
    run = executed("test-logs-everything", {"name": "Ada"})
    assert run.status == RunStatus.COMPLETED
    lines = logs.lines(run.id)
    assert [(line.level, line.logger) for line in lines] == [
        (20, "tests.logging_task"),
        (30, "some.library"),
        (20, "stdout"),
        (40, "stderr"),
        (20, "stdout"),
        (40, "tests.logging_task"),
        (20, "stdout"),
    ]
    assert [line.message for line in lines][:5] == [
        "starting Ada",
        "a library speaks",
        "printed line",
        "to stderr",
        "two parts",
    ]
    assert lines[0].extra == {"order": 7, "customer": {"id": "c-1"}}
    assert lines[5].message.startswith("it went wrong\nTraceback (most recent call last):")
    assert "ValueError: bad value" in lines[5].message
    assert lines[6].message == "and a tail"  # printed without a newline, kept at the end
    assert [line.seq for line in lines] == list(range(1, 8))
    assert all(line.attempt == 1 for line in lines)


def test_the_summary_counts_lines_and_errors_and_holds_their_words(dev: Environment) -> None:
    run = executed("test-logs-everything", {"name": "Ada"})
    summary = RunLogSummary.objects.get(run=run)
    assert (summary.attempt, summary.lines, summary.errors, summary.dropped) == (1, 7, 2, 0)
    assert Run.objects.filter(logs.runs_matching("starting ada")).get() == run
    assert Run.objects.filter(logs.runs_matching("start LIBR")).get() == run  # word prefixes, any case
    assert not Run.objects.filter(logs.runs_matching("tarting")).exists()
    assert Run.objects.filter(logs.runs_matching(errors=True)).get() == run


def test_each_attempt_keeps_its_own_lines(dev: Environment) -> None:
    run = executed("test-logs-then-fails", max_attempts=2)
    assert run.status == RunStatus.QUEUED  # the attempt failed and is retried after its backoff
    engine.tick(now=timezone.now() + timedelta(seconds=30))
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.attempt_count == 2
    assert messages(run, attempt=1) == ["about to fail"] == messages(run, attempt=2)
    assert [(s.attempt, s.errors) for s in logs.summaries(run.id)] == [(1, 1), (2, 1)]


def test_lines_are_written_in_one_batch_not_a_commit_per_line(dev: Environment, monkeypatch: Any) -> None:
    writes: list[int] = []
    real = logcapture._write
    monkeypatch.setattr(logcapture, "_write", lambda taken: (writes.append(len(taken[0].lines)), real(taken)))
    # Out of the writer thread's sight: on a busy machine its interval may end mid-run, and the
    # lines would then come in two batches, not one.
    monkeypatch.setattr(logcapture.WRITER, "add", lambda capture: None)
    run = executed("test-logs-many", {"n": 100})
    assert writes == [100]
    assert messages(run) == [f"line {n}" for n in range(100)]


@override_settings(RUNYARD_LOG_MAX_LINES=5)
def test_past_the_line_limit_lines_are_counted_and_dropped_after_a_marker(dev: Environment) -> None:
    run = executed("test-logs-many", {"n": 50})
    kept = messages(run)
    assert kept[:5] == [f"line {n}" for n in range(5)]
    assert len(kept) == 6 and kept[5].startswith("Log limit reached: this attempt keeps at most 5 lines")
    summary = RunLogSummary.objects.get(run=run)
    assert (summary.lines, summary.dropped) == (6, 45)


@override_settings(RUNYARD_LOG_MAX_BYTES=20)
def test_past_the_byte_limit_lines_are_dropped(dev: Environment) -> None:
    run = executed("test-logs-many", {"n": 10})
    kept = messages(run)
    assert kept[:3] == ["line 0", "line 1", "line 2"]  # 18 bytes; a fourth would pass 20
    assert "Log limit reached" in kept[3] and len(kept) == 4
    assert RunLogSummary.objects.get(run=run).dropped == 7


def test_secrets_are_redacted_by_the_built_in_patterns(dev: Environment) -> None:
    run = executed("test-logs-secret")
    kept = logs.lines(run.id)
    assert kept[0].message == "calling with key [REDACTED]"
    assert kept[1].message == "Authorization: Bearer [REDACTED]"
    assert kept[2].message == "connecting to postgresql://app:[REDACTED]@db:5432/app password=[REDACTED]"
    assert kept[3].extra == {"token": "[REDACTED]", "ref": "tok_123456789"}  # a field named like a secret


@override_settings(RUNYARD_LOG_REDACT=[r"\d{4}-\d{4}-\d{4}-\d{4}", r"tok_\w+"])
def test_patterns_of_the_setting_are_redacted_too(dev: Environment) -> None:
    run = executed("test-logs-secret")
    kept = logs.lines(run.id)
    assert kept[3].message == "card [REDACTED]"
    assert kept[3].extra == {"token": "[REDACTED]", "ref": "[REDACTED]"}
    assert kept[0].message == "calling with key [REDACTED]"  # the built-in ones still apply


def test_hello_world_logs_a_greeting_and_prints_that_it_is_done(dev: Environment) -> None:
    run = executed("hello-world", {"name": "Ada"})
    assert [(line.level, line.logger, line.message) for line in logs.lines(run.id)] == [
        (20, "example_tasks", "Greeting Ada"),
        (20, "stdout", "hello-world done"),
    ]


def test_records_of_celerys_task_loggers_are_captured_though_they_do_not_propagate(dev: Environment) -> None:
    task_logger = logging.getLogger("celery.task")
    was, task_logger.propagate = task_logger.propagate, False  # as a Celery worker sets it up
    try:
        run = executed("test-logs-celery-logger")
    finally:
        task_logger.propagate = was
    assert messages(run) == ["through Celery's task logger"]
    run = executed("test-logs-celery-logger")  # propagating again, and the handler on both
    task_logger.removeHandler(logcapture.HANDLER)
    assert messages(run) == ["through Celery's task logger"]


def test_nothing_is_captured_outside_an_attempt(dev: Environment) -> None:
    log.warning("outside any run")
    print("outside any run")
    assert not RunLog.objects.exists()


def test_what_is_logged_while_the_capture_is_paused_is_not_the_runs(dev: Environment) -> None:
    run = executed("test-logs-paused")
    assert messages(run) == ["kept before", "kept after"]
    assert [line.seq for line in logs.lines(run.id)] == [1, 2]


def test_a_record_formatted_by_an_earlier_handler_has_only_its_own_extra_fields(dev: Environment) -> None:
    run = executed("test-logs-formatted-first")
    assert [(line.message, line.extra) for line in logs.lines(run.id)] == [
        ("plain", None),
        ("with a field", {"order": 7}),
    ]


def test_prune_deletes_the_logs_with_their_runs(dev: Environment) -> None:
    run = executed("hello-world", {"name": "Ada"})
    kept = executed("hello-world", {"name": "Bob"})
    Run.objects.filter(pk=run.pk).update(
        created_at=run.created_at - timedelta(days=40), finished_at=run.created_at - timedelta(days=40)
    )
    call_command("prune", "--older-than", "30d", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert not RunLog.objects.filter(run_id=run.id).exists()
    assert not RunLogSummary.objects.filter(run_id=run.id).exists()
    assert RunLog.objects.filter(run_id=kept.id).count() == 2


@pytest.fixture
def slow_flushes() -> Iterator[None]:
    with override_settings(RUNYARD_LOG_FLUSH_INTERVAL=3600):
        yield


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_in_threads_keep_their_own_lines(dev: Environment, slow_flushes: None) -> None:
    barrier = threading.Barrier(2)

    @registry.task(id="test-logs-interleaved")
    def interleaved(payload: Any) -> None:
        for n in range(20):
            barrier.wait(timeout=10)
            log.info("%s %d", payload["who"], n)
            print(payload["who"], "printed", n)

    runs = [factories.run("test-logs-interleaved", payload={"who": who}) for who in ("ada", "bob")]
    engine.admit(now=runs[-1].created_at)

    def execute(run_id: str) -> None:
        try:
            worker.execute(run_id=run_id, hostname="w1")
        finally:
            connection.close()  # the thread's own: the test database is dropped after

    threads = [threading.Thread(target=execute, args=(r.id,)) for r in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for run, who in zip(runs, ("ada", "bob"), strict=True):
        kept = messages(run)
        assert len(kept) == 40
        assert all(message.startswith(who) for message in kept), kept


@override_settings(RUNYARD_LOG_REDACT=[r"(?i)CARD (\d{4})-"])
def test_a_pattern_that_cannot_be_combined_with_the_others_still_redacts(dev: Environment) -> None:
    run = executed("test-logs-secret")  # a global flag: each pattern is tried on its own
    assert logs.lines(run.id)[3].message == "card [REDACTED]-1111-1111-1111"


@registry.task(id="test-logs-around-a-wait")
def logs_around_a_wait(payload: Any) -> Any:
    from runs.sdk import tasks

    log.info("before the wait")
    child = tasks.trigger_and_wait("hello-world", {"name": "child"}).unwrap()
    log.info("after the wait")
    return child


def test_a_run_resuming_after_its_child_goes_on_numbering_the_lines_of_its_attempt(dev: Environment) -> None:
    factories.task_definition("hello-world")
    parent = executed("test-logs-around-a-wait")
    assert parent.status == RunStatus.WAITING
    for _ in range(5):  # the child, then the parent again
        engine.admit(now=timezone.now())
        for run_id in Run.objects.filter(status=RunStatus.DEQUEUED).values_list("id", flat=True):
            worker.execute(run_id=run_id, hostname="w1")
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED and parent.attempt_count == 1
    lines = logs.lines(parent.id)
    # The code before the wait runs again on resuming (memoized waits): its line is logged twice.
    assert [(line.seq, line.message) for line in lines] == [
        (1, "before the wait"),
        (2, "before the wait"),
        (3, "after the wait"),
    ]
    assert RunLogSummary.objects.get(run=parent).lines == 3


@registry.task(id="test-logs-unstorable")
def logs_unstorable(payload: Any) -> None:
    log.info("nul \x00 here", extra={"raw": "a\x00b"})
    print(b"bad \xff bytes".decode("utf-8", "surrogateescape"))
    log.info("still written")


def test_text_postgresql_cannot_store_is_replaced_and_the_other_lines_are_kept(dev: Environment) -> None:
    run = executed("test-logs-unstorable")
    kept = logs.lines(run.id)
    assert [line.message for line in kept] == ["nul \ufffd here", "bad ? bytes", "still written"]
    assert kept[0].extra == {"raw": "a\ufffdb"}


@registry.task(id="test-logs-multiline")
def logs_multiline(payload: Any) -> None:
    log.info("first line\nsecond line\tindented")


def test_a_message_keeps_its_newlines_though_the_console_escapes_them(dev: Environment) -> None:
    run = executed("test-logs-multiline")  # dashboard.logfilters rewrites records for the console
    assert messages(run) == ["first line\nsecond line\tindented"]


@pytest.mark.django_db(transaction=True)
def test_the_last_lines_and_the_completion_commit_together(dev: Environment) -> None:
    run = factories.run("hello-world", payload={"name": "Ada"})
    engine.admit(now=run.created_at)
    with CaptureQueriesContext(connection) as queries:
        worker.execute(run_id=run.id, hostname="w1")
    statements = [q["sql"].replace("1 times:", "").split()[0] for q in queries.captured_queries]
    # The start (its own statement), then one transaction: the summary (the COPY is not logged)
    # and the completion, so one WAL flush for both.
    assert statements == ["WITH", "BEGIN", "INSERT", "WITH", "COMMIT"], statements
    assert len(logs.lines(run.id)) == 2
