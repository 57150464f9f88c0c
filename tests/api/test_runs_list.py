"""runs.list over the wire protocol (reference 3.5): filters, keyset pages, the SDK's quirks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from runs import engine
from runs.models import Batch, Run
from tests import factories

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def make_run(task_id: str = "hello-world", env: str = "dev", at: datetime | None = None, **options: Any) -> Run:
    """A run created at `at` (T0 unless told), through the engine."""
    factories.task_definition(task_id)
    result = engine.trigger(
        environment=factories.environment(env),
        task_id=task_id,
        options=engine.TriggerOptions(**options),
        actor="test",
        now=at or T0,
    )
    return result.run


def page(api, params: dict[str, str]) -> dict[str, Any]:
    response = api.get(f"/api/v1/runs?{urlencode(params)}")
    assert response.status_code == 200, response.json()
    return response.json()


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["data"]]


def five_runs() -> list[str]:
    """Five runs, newest first as the list orders them."""
    runs = [make_run(at=T0 + timedelta(seconds=n)) for n in range(5)]
    return [run.id for run in reversed(runs)]


def test_runs_are_listed_newest_first_with_the_environment(api):
    older, newer = make_run(at=T0), make_run(at=T0 + timedelta(seconds=1))
    body = page(api, {})
    assert ids(body) == [newer.id, older.id]
    item = body["data"][0]
    assert item["env"]["name"] == "dev" and isinstance(item["env"]["id"], str)
    assert item["status"] == "QUEUED" and item["createdAt"].startswith("2026-11-01T12:00:01")
    assert body["pagination"] == {}


def test_no_item_field_is_ever_null(api):
    make_run(tags=["a"])
    make_run(metadata={"m": 1}, delay_until=T0 + timedelta(hours=1))
    for item in page(api, {})["data"]:
        assert None not in item.values()


def test_runs_of_other_environments_never_appear(api, prod):
    make_run(env="prod")
    mine = make_run()
    assert ids(page(api, {})) == [mine.id]


def test_the_status_filter_takes_a_comma_list(api):
    queued = make_run()
    delayed = make_run(delay_until=T0 + timedelta(hours=1), at=T0 + timedelta(seconds=1))
    canceled = engine.cancel_run(run_id=make_run(at=T0 + timedelta(seconds=2)).id, actor="test")
    assert ids(page(api, {"filter[status]": "DELAYED,CANCELED"})) == [canceled.id, delayed.id]
    assert ids(page(api, {"filter[status]": "QUEUED"})) == [queued.id]
    assert ids(page(api, {"filter[status]": "INTERRUPTED"})) == []


def test_an_unknown_status_is_a_400_naming_it(api):
    response = api.get("/api/v1/runs?filter%5Bstatus%5D=QUEUED,NOPE")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid status values: NOPE"}


def test_filter_by_task_identifier_tag_any_and_queue(api):
    hello = make_run(tags=["a", "b"])
    other = make_run("other-task", tags=["c"], at=T0 + timedelta(seconds=1))
    custom = make_run(queue="emails", tags=["d"], at=T0 + timedelta(seconds=2))
    assert ids(page(api, {"filter[taskIdentifier]": "other-task"})) == [other.id]
    assert ids(page(api, {"filter[tag]": "b,c"})) == [other.id, hello.id]
    assert ids(page(api, {"filter[queue]": "task/hello-world"})) == [hello.id]
    assert ids(page(api, {"filter[queue]": "emails,task/other-task"})) == [custom.id, other.id]


def test_filter_by_machine_and_region(api):
    small = make_run()
    large = make_run(machine="large-1x", region="eu", at=T0 + timedelta(seconds=1))
    assert ids(page(api, {"filter[machine]": "large-1x"})) == [large.id]
    assert ids(page(api, {"filter[machine]": "small-1x,micro"})) == [small.id]
    assert ids(page(api, {"filter[region]": "eu,us"})) == [large.id]


def test_an_unknown_machine_is_a_400(api):
    response = api.get("/api/v1/runs?filter%5Bmachine%5D=huge-9x")
    assert response.status_code == 400 and "huge-9x" in response.json()["error"]


def test_filter_by_batch(api, dev):
    run, _ = make_run(), make_run()
    batch = Batch.objects.create(environment=dev, run_count=1, created_at=T0, updated_at=T0)
    Run.objects.filter(pk=run.pk).update(batch=batch)
    assert ids(page(api, {"filter[batch]": batch.id})) == [run.id]


def test_filter_is_test_takes_only_true_or_false(api):
    real, test = make_run(), make_run(at=T0 + timedelta(seconds=1))
    Run.objects.filter(pk=test.pk).update(is_test=True)
    assert ids(page(api, {"filter[isTest]": "true"})) == [test.id]
    assert ids(page(api, {"filter[isTest]": "false"})) == [real.id]
    assert api.get("/api/v1/runs?filter%5BisTest%5D=yes").status_code == 400


def test_filters_on_versions_and_bulk_actions_match_nothing(api):
    run = make_run()
    for name in ("filter[version]", "filter[bulkAction]"):
        assert ids(page(api, {name: "x"})) == []
        assert ids(page(api, {name: ""})) == [run.id]


def test_the_schedule_filter_lists_the_runs_a_schedule_fired(api):
    first, second = make_run(schedule_id="sched_a"), make_run(schedule_id="sched_b", at=T0 + timedelta(seconds=1))
    unscheduled = make_run(at=T0 + timedelta(seconds=2))
    make_run(env="prod", schedule_id="sched_a")  # another environment's
    assert ids(page(api, {"filter[schedule]": "sched_a"})) == [first.id]
    assert ids(page(api, {"filter[schedule]": "sched_a,sched_b"})) == [second.id, first.id]
    assert ids(page(api, {"filter[schedule]": "sched_none"})) == []
    assert ids(page(api, {"filter[schedule]": ""})) == [unscheduled.id, second.id, first.id]


def test_created_at_from_and_to_are_epoch_milliseconds(api):
    runs = [make_run(at=T0 + timedelta(seconds=n)) for n in range(3)]
    ms = int(T0.timestamp() * 1000)
    body = page(api, {"filter[createdAt][from]": str(ms + 1000), "filter[createdAt][to]": str(ms + 1000)})
    assert ids(body) == [runs[1].id]
    assert api.get("/api/v1/runs?filter%5BcreatedAt%5D%5Bfrom%5D=yesterday").status_code == 400


def test_created_at_period_counts_back_from_now(api):
    now = timezone.now()
    make_run(at=now - timedelta(days=3))
    recent = make_run(at=now - timedelta(hours=1))
    assert ids(page(api, {"filter[createdAt][period]": "1d"})) == [recent.id]
    assert len(page(api, {"filter[createdAt][period]": "7d"})["data"]) == 2
    response = api.get("/api/v1/runs?filter%5BcreatedAt%5D%5Bperiod%5D=a+week")
    assert response.status_code == 400


@pytest.mark.parametrize("size", ["0", "101", "ten", "-1"])
def test_a_page_size_outside_1_to_100_is_a_400(api, size):
    assert api.get(f"/api/v1/runs?page%5Bsize%5D={size}").status_code == 400


def test_the_default_page_size_is_25_and_100_is_allowed(api):
    for n in range(26):
        make_run(at=T0 + timedelta(seconds=n))
    first = page(api, {})
    assert len(first["data"]) == 25 and "next" in first["pagination"]
    assert len(page(api, {"page[size]": "100"})["data"]) == 26


def test_pages_follow_next_then_previous_like_the_sdk(api):
    newest_first = five_runs()
    first = page(api, {"page[size]": "2"})
    assert ids(first) == newest_first[:2] and first["pagination"] == {"next": newest_first[1]}
    second = page(api, {"page[size]": "2", "page[after]": first["pagination"]["next"]})
    assert ids(second) == newest_first[2:4]
    assert second["pagination"] == {"next": newest_first[3], "previous": newest_first[2]}
    last = page(api, {"page[size]": "2", "page[after]": second["pagination"]["next"]})
    assert ids(last) == newest_first[4:] and last["pagination"] == {"previous": newest_first[4]}
    # getPreviousPage keeps page[after] and adds page[before]: before wins.
    quirk = {"page[size]": "2", "page[after]": second["pagination"]["next"], "page[before]": newest_first[4]}
    back = page(api, quirk)
    assert ids(back) == newest_first[2:4]
    assert back["pagination"] == {"next": newest_first[3], "previous": newest_first[2]}
    front = page(api, {"page[size]": "2", "page[before]": back["pagination"]["previous"]})
    assert ids(front) == newest_first[:2] and front["pagination"] == {"next": newest_first[1]}


def test_before_the_newest_run_is_an_empty_page_without_cursors(api):
    newest_first = five_runs()
    body = page(api, {"page[size]": "2", "page[before]": newest_first[0]})
    assert body == {"data": [], "pagination": {}}


def test_runs_created_in_the_same_microsecond_are_neither_lost_nor_repeated(api):
    same = [make_run(at=T0) for _ in range(5)]
    seen: list[str] = []
    params = {"page[size]": "2"}
    while True:
        body = page(api, params)
        seen += ids(body)
        if "next" not in body["pagination"]:
            break
        params = {"page[size]": "2", "page[after]": body["pagination"]["next"]}
    assert sorted(seen) == sorted(run.id for run in same) and len(seen) == 5
    assert seen == sorted(seen, reverse=True)  # ties are ordered by id


def test_an_unknown_or_foreign_cursor_is_a_400(api, prod):
    foreign = make_run(env="prod")
    for cursor in ("run_nope", foreign.id):
        for name in ("page[after]", "page[before]"):
            response = api.get(f"/api/v1/runs?{urlencode({name: cursor})}")
            assert response.status_code == 400
            assert response.json() == {"error": f"Invalid cursor: {cursor}"}
