"""The in-process Python SDK's runs.list (lazy, across pages, every filter) and runs.replay."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from runs import engine, ratelimit
from runs.models import Run
from runs.sdk import NotFoundError, RunList, RunSummary, ValidationError, batch, runs, tasks
from tests import factories

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def tasks_defined(dev, prod):
    factories.task_definition("hello-world")
    factories.task_definition("other-task")
    redis = ratelimit.redis_client()  # full batch buckets: batch.trigger is rate limited
    for name in redis.scan_iter(f"{ratelimit.KEY_PREFIX}:*"):
        redis.delete(name)


def five_runs(**options) -> list[str]:
    """Five runs one second apart, newest first (list order)."""
    made = []
    for n in range(5):
        with time_machine.travel(T0 + timedelta(seconds=n), tick=False):
            made.append(tasks.trigger("hello-world", {"n": n}, {"tags": ["five"], **options}).id)
    return made[::-1]


def test_list_iterates_across_pages_newest_first():
    expected = five_runs()
    listed = runs.list(tag="five", limit=2)
    assert isinstance(listed, RunList)
    items = list(listed)
    assert [run.id for run in items] == expected
    assert all(isinstance(run, RunSummary) for run in items)
    pages = list(listed.pages())
    assert [[run.id for run in page.runs] for page in pages] == [expected[0:2], expected[2:4], expected[4:]]
    assert pages[-1].next is None and pages[0].previous is None


def test_list_is_lazy_and_fetches_one_page_at_a_time(django_assert_max_num_queries):
    expected = five_runs()
    with django_assert_max_num_queries(0):
        listed = runs.list(tag="five", limit=2)
    iterator = iter(listed)
    with django_assert_max_num_queries(3):  # the environment and one page
        assert next(iterator).id == expected[0]
        assert next(iterator).id == expected[1]


def test_list_before_a_run_goes_backwards():
    expected = five_runs()
    # Pages walk toward the newest run; each page is newest first, as the API answers it.
    walked = runs.list(tag="five", limit=2, before=expected[4]).pages()
    assert [[run.id for run in page.runs] for page in walked] == [expected[2:4], expected[0:2]]
    page = runs.list(tag="five", limit=2, before=expected[4]).first_page()
    assert [run.id for run in page.runs] == expected[2:4]
    assert page.previous == expected[2]


def test_list_after_a_cursor_starts_there():
    expected = five_runs()
    assert [run.id for run in runs.list(tag="five", limit=2, after=expected[1])] == expected[2:]


def test_every_filter_of_the_reference_is_a_keyword():
    with time_machine.travel(T0, tick=False):
        plain = tasks.trigger("hello-world", {}, {"tags": ["f"]}).id
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        big = tasks.trigger(
            "other-task", {}, {"tags": ["f", "big"], "machine": "large-1x", "region": "eu", "queue": "custom"}
        ).id
        delayed = tasks.trigger("hello-world", {}, {"tags": ["f"], "delay": "1h"}).id
    with time_machine.travel(T0 - timedelta(days=1), tick=False):
        handle = batch.trigger([{"id": "hello-world", "payload": 1, "options": {"tags": ["f"]}}])

    def ids(**filters):
        return {run.id for run in runs.list(**{"tag": "f", **filters})}

    assert ids(status="DELAYED") == {delayed}
    assert ids(status=["DELAYED", "QUEUED"]) == {plain, big, delayed, *handle.run_ids}
    assert ids(task_identifier="other-task") == {big}
    assert ids(tag=["big", "nothing"]) == {big}
    assert ids(batch=handle.batch_id) == set(handle.run_ids)
    assert ids(machine="large-1x") == {big}
    assert ids(region=["eu"]) == {big}
    assert ids(queue="custom") == {big}
    assert ids(queue={"type": "task", "name": "hello-world"}) == {plain, delayed, *handle.run_ids}
    assert ids(is_test=True) == set()
    assert ids(is_test=False) == {plain, big, delayed, *handle.run_ids}
    assert ids(from_=T0 + timedelta(hours=1), to=T0 + timedelta(days=1, seconds=1)) == {big, delayed}
    assert ids(to=int((T0 + timedelta(minutes=1)).timestamp() * 1000)) == {plain, *handle.run_ids}
    with time_machine.travel(T0 + timedelta(days=1, minutes=5), tick=False):
        assert ids(period="1h") == {big, delayed}
    assert ids(version="v1") == ids(bulk_action="b") == ids(schedule="s") == set()


def test_list_sees_only_its_environment():
    tasks.trigger("hello-world", {}, {"tags": ["env"]}, env="prod")
    assert list(runs.list(tag="env")) == []
    assert len(list(runs.list(tag="env", env="prod"))) == 1


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"status": "SLEEPING"}, "filter[status]"),
        ({"machine": "huge"}, "filter[machine]"),
        ({"limit": 101}, "page[size]"),
        ({"period": "soon"}, "filter[createdAt][period]"),
        ({"after": "run_nope"}, "page[after]"),
        ({"before": "run_nope"}, "page[before]"),  # named as given, not as page[after]
    ],
)
def test_a_bad_filter_is_a_validation_error_naming_it(filters, field):
    with pytest.raises(ValidationError) as caught:
        list(runs.list(**filters))
    assert caught.value.field == field


def test_an_unknown_filter_is_a_type_error():
    with pytest.raises(TypeError):
        runs.list(colour="red")


def test_list_items_carry_the_runs_fields():
    handle = tasks.trigger("hello-world", {}, {"tags": ["b", "a"], "metadata": {"k": 1}, "idempotencyKey": "my-key"})
    (item,) = runs.list(tag="a")
    assert (item.id, item.status, item.task_identifier) == (handle.id, "QUEUED", "hello-world")
    assert (item.tags, item.metadata, item.idempotency_key, item.is_queued) == (["a", "b"], {"k": 1}, "my-key", True)


def test_replay_copies_the_original_and_links_back():
    first = tasks.trigger("hello-world", {"n": 1}, {"tags": ["a"], "metadata": {"m": 1}, "maxAttempts": 3})
    again = runs.replay(first.id)
    assert again.id != first.id
    run = Run.objects.get(pk=again.id)
    assert run.replayed_from_id == first.id
    assert (run.tags, run.metadata, run.max_attempts, run.trigger_source) == (["a"], {"m": 1}, 3, "sdk")
    assert runs.retrieve(again.id).payload == {"n": 1}


def test_replay_takes_the_overrides_of_the_reference():
    first = tasks.trigger("hello-world", {"n": 1}, {"tags": ["a"], "metadata": {"m": 1}})
    again = runs.replay(
        first.id,
        payload={"n": 2},
        tags=["b"],
        metadata={"m": 2},
        queue="other",
        concurrency_key="k",
        machine="large-2x",
        region="eu",
        delay="1h",
        ttl="2h",
        max_attempts=5,
        max_duration=60,
        priority=10,
        idempotency_key="replay-1",
        idempotency_key_ttl="1d",
        version="ignored",
    )
    run = Run.objects.get(pk=again.id)
    assert json.loads(run.payload) == {"json": {"n": 2}}
    assert (run.tags, run.metadata, run.queue, run.concurrency_key) == (["b"], {"m": 2}, "other", "k")
    assert (run.machine, run.region, run.status, run.ttl) == ("large-2x", "eu", "DELAYED", 7200)
    assert (run.max_attempts, run.max_duration, run.priority_ms) == (5, 60, 10000)
    assert run.idempotency_key == "replay-1"  # as given, like the official SDK's replay
    assert runs.replay(first.id, idempotency_key="replay-1").id == again.id


def test_replay_with_a_null_payload_override_replaces_the_payload():
    first = tasks.trigger("hello-world", {"n": 1})
    assert runs.retrieve(runs.replay(first.id, payload=None).id).payload is None


def test_replay_errors():
    first = tasks.trigger("hello-world", {"n": 1})
    with pytest.raises(NotFoundError):
        runs.replay("run_doesnotexist0000000000000")
    with pytest.raises(ValidationError) as caught:
        runs.replay(first.id, machine="huge")
    assert caught.value.field == "machine"
    with pytest.raises(TypeError):
        runs.replay(first.id, colour="red")


def test_replay_works_on_a_finished_run():
    first = tasks.trigger("hello-world", {"n": 1})
    engine.cancel_run(run_id=first.id, actor="test")
    assert Run.objects.get(pk=runs.replay(first.id).id).status == "QUEUED"
