"""GET /metrics: Prometheus text for ops staff, cheap whatever the size of the run history."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from dashboard import metrics
from runs import engine
from runs.models import Environment, Run, RunEvent
from runs.states import RunStatus
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TOKEN = "scrape-secret-0123456789"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def token(settings: object) -> None:
    settings.RUNYARD_METRICS_TOKEN = TOKEN  # type: ignore[attr-defined]
    settings.RUNYARD_METRICS_WINDOW = 300  # type: ignore[attr-defined]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def scrape(client: Client) -> dict[str, float]:
    """The samples of one scrape, parsed by prometheus_client, keyed by `name{labels}`."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def start(run: Run, now: datetime) -> None:
    engine.admit(now=now)
    assert engine.start_attempt(run_id=run.id, worker="w1", now=now) is not None


# --- access ---------------------------------------------------------------------------------


def test_anonymous_scrapes_are_refused_with_401_not_sent_to_the_login_page(client: Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_configured_bearer_token_lets_prometheus_in(client: Client, dev: Environment) -> None:
    assert "runyard_workers_online" in scrape(client)


def test_no_token_is_accepted_when_none_is_configured(client: Client, settings: object) -> None:
    settings.RUNYARD_METRICS_TOKEN = ""  # type: ignore[attr-defined]
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_logged_in_staff_may_read_metrics_and_other_users_may_not(client: Client, dev: Environment) -> None:
    user = User.objects.create_user("viewer", password="pw-123456789")
    client.force_login(user)
    assert client.get("/metrics").status_code == 403
    user.is_staff = True
    user.save()
    response = client.get("/metrics")
    assert response.status_code == 200 and b"runyard_runs{" in response.content


# --- what it counts ---------------------------------------------------------------------------


def test_unfinished_runs_are_counted_by_environment_and_status(client: Client, dev: Environment) -> None:
    factories.environment("prod")
    factories.run(delay_until=at(600))
    factories.run(delay_until=at(600))
    factories.run()
    factories.run(env="prod")
    samples = scrape(client)
    assert samples['runyard_runs{environment="dev",status="DELAYED"}'] == 2
    assert samples['runyard_runs{environment="dev",status="QUEUED"}'] == 1
    assert samples['runyard_runs{environment="prod",status="QUEUED"}'] == 1
    assert samples['runyard_runs{environment="prod",status="EXECUTING"}'] == 0
    assert not any('status="COMPLETED"' in key for key in samples if key.startswith("runyard_runs{"))


def test_queue_depth_and_the_oldest_due_runs_wait(
    client: Client, dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    factories.task_definition("blocked", queue="task/blocked", concurrency_limit=0)
    factories.run("blocked")
    frozen_clock.move_to(at(30))
    factories.run("blocked")
    runner = factories.run("hello-world")
    start(runner, at(30))
    frozen_clock.move_to(at(100))
    samples = scrape(client)
    blocked = '{environment="dev",queue="task/blocked"}'
    assert samples[f"runyard_queue_depth{blocked}"] == 2
    assert samples[f"runyard_queue_due{blocked}"] == 2
    assert samples[f"runyard_queue_oldest_wait_seconds{blocked}"] == 100
    assert samples[f"runyard_queue_running{blocked}"] == 0
    assert samples['runyard_queue_running{environment="dev",queue="task/hello-world"}'] == 1
    assert samples['runyard_queue_depth{environment="dev",queue="task/hello-world"}'] == 0


def test_retries_expirations_and_finished_runs_are_counted_over_the_window(
    client: Client, dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    flaky = factories.run(max_attempts=3)
    start(flaky, T0)
    engine.fail_attempt(run_id=flaky.id, attempt=1, error={"message": "boom"}, retry=None, now=at(1))
    factories.task_definition("blocked", queue="task/blocked", concurrency_limit=0)
    factories.run("blocked", ttl=60)
    done = factories.run()
    start(done, at(2))
    engine.complete_attempt(run_id=done.id, attempt=1, output="", output_type="application/json", now=at(3))
    assert engine.expire_runs(now=at(61)) == 1
    frozen_clock.move_to(at(120))
    samples = scrape(client)
    assert samples['runyard_run_retries_recent{environment="dev"}'] == 1
    assert samples['runyard_run_expirations_recent{environment="dev"}'] == 1
    assert samples['runyard_runs_finished_recent{environment="dev",status="COMPLETED"}'] == 1
    assert samples['runyard_runs_finished_recent{environment="dev",status="EXPIRED"}'] == 1
    assert samples['runyard_runs_triggered_recent{environment="dev"}'] == 3
    assert samples["runyard_metrics_window_seconds"] == 300

    frozen_clock.move_to(at(61 + 300 + 1))  # everything above left the window
    later = scrape(client)
    assert later['runyard_run_retries_recent{environment="dev"}'] == 0
    assert later['runyard_run_expirations_recent{environment="dev"}'] == 0
    assert not any(key.startswith("runyard_runs_finished_recent") for key in later)


def test_delayed_start_lateness_measures_first_starts_against_delay_until(
    client: Client, dev: Environment, frozen_clock: time_machine.Traveller
) -> None:
    late, on_time = factories.run(delay_until=at(10)), factories.run(delay_until=at(10))
    factories.run()  # not delayed: not part of the measure
    engine.promote_delayed(now=at(12))
    engine.admit(now=at(12))
    assert engine.start_attempt(run_id=on_time.id, worker="w1", now=at(12)) is not None
    assert engine.start_attempt(run_id=late.id, worker="w1", now=at(40)) is not None
    frozen_clock.move_to(at(60))
    samples = scrape(client)
    assert samples['runyard_delayed_starts_recent{environment="dev"}'] == 2
    assert samples['runyard_delayed_start_lateness_seconds{environment="dev",quantile="0.5"}'] == 16
    assert samples['runyard_delayed_start_lateness_seconds{environment="dev",quantile="1"}'] == 30


def test_workers_seen_recently_are_online(client: Client, dev: Environment, settings: object) -> None:
    settings.RUNYARD_WORKER_TIMEOUT = 60  # type: ignore[attr-defined]
    engine.register_worker(hostname="old@host", queues=[], specs=[], now=at(-120))
    engine.register_worker(hostname="new@host", queues=[], specs=[], now=at(-5))
    assert scrape(client)["runyard_workers_online"] == 1


# --- cost and format --------------------------------------------------------------------------


def test_the_window_starts_at_the_first_event_at_or_after_the_cutoff(dev: Environment) -> None:
    runs = [factories.run() for _ in range(3)]
    for index, run in enumerate(runs):
        engine.cancel_run(run_id=run.id, actor="test", now=at(10 * (index + 1)))
    events = list(RunEvent.objects.order_by("id"))
    cancels = [event for event in events if event.to_status == RunStatus.CANCELED]
    with connection.cursor() as cursor:
        assert metrics._first_event_since(cursor, at(15)) == cancels[1].id
        assert metrics._first_event_since(cursor, at(10)) == cancels[0].id
        assert metrics._first_event_since(cursor, at(31)) is None
        assert metrics._first_event_since(cursor, at(-60)) == events[0].id


def clone_runs(template: Run, count: int, **values: object) -> None:
    """Insert `count` copies of template (new ids, `values` overriding columns) in one statement."""
    columns, select, params = [], [], []
    for field in Run._meta.concrete_fields:
        columns.append(field.column)
        if field.primary_key:
            select.append("'run_clone' || lpad(g::text, 20, '0')")
        elif field.name in values:
            select.append("%s")
            params.append(values[field.name])
        else:
            select.append(f"t.{field.column}")
    sql = (
        f"INSERT INTO runs_run ({', '.join(columns)}) SELECT {', '.join(select)} "
        "FROM runs_run t, generate_series(1, %s) g WHERE t.id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, count, template.id])


def test_no_scrape_query_reads_the_history_of_finished_runs(dev: Environment) -> None:
    """With 50,000 finished runs and 6 unfinished ones, every query finds an index (sequential
    scans priced out), and runs are counted on ranges of (environment, status)."""
    queries: list[str] = []

    def capture(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if sql.lstrip().upper().startswith("SELECT"):
            queries.append(connection.ops.compose_sql(sql, params) if params else sql)
        return execute(sql, params, many, context)

    old = factories.run()
    engine.cancel_run(run_id=old.id, actor="test", now=at(-3600))
    clone_runs(Run.objects.get(pk=old.id), 50_000)
    for _ in range(6):
        factories.run()
    with connection.execute_wrapper(capture):
        metrics.collect(T0)
    assert queries
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ANALYZE runs_run")
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in queries:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert not re.search(r"Seq Scan on runs_run\b", plan), plan
            assert "Seq Scan on runs_runevent" not in plan, plan
            if "CROSS JOIN LATERAL" in sql:
                assert re.search(r"Index (Only )?Scan (using|on) run_env_status", plan), plan
                assert re.search(r"Index Cond: \(\(environment_id = e\.id\) AND \(\(?status", plan), plan


def test_label_values_and_help_are_escaped_in_the_text_format() -> None:
    family = metrics.Family("runyard_queue_depth", "gauge", "Help with a \\ backslash\nand a second line")
    family.add(3, queue='a"b\\c\nd')
    text = metrics.render([family])
    assert len(text.splitlines()) == 3  # nothing in a label or the help starts a line of its own
    [parsed] = text_string_to_metric_families(text)
    assert parsed.documentation == "Help with a \\ backslash\nand a second line"
    assert [(sample.labels, sample.value) for sample in parsed.samples] == [({"queue": 'a"b\\c\nd'}, 3.0)]
