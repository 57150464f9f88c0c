"""The official @trigger.dev/sdk (4.8.3, package.json) against a live Runyard.

tests/sdk/scenarios.mjs drives the SDK and prints what it got back as JSON; node starts
once per group of scenarios (a module fixture each), the tests assert on the parts.
`make test` installs the SDK with `npm ci`; without node_modules these tests are skipped.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.live import LiveStack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (settings.BASE_DIR / "node_modules" / "@trigger.dev" / "sdk").is_dir(),
        reason="@trigger.dev/sdk is not installed: run `npm ci` (make test does)",
    ),
]

SCENARIOS = Path(__file__).with_name("scenarios.mjs")


def run_node(live_stack: LiveStack, *groups: str, **env: str) -> dict[str, Any]:
    """Run scenarios.mjs with the given groups against the stack; its parsed JSON output."""
    result = subprocess.run(
        ["node", str(SCENARIOS), *groups],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "TRIGGER_API_URL": live_stack.base_url,
            "TRIGGER_SECRET_KEY": live_stack.api_key,
            "SDK_TEST_TAG": f"sdk-{secrets.token_hex(4)}",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"node exited with {result.returncode}:\n{result.stderr}"
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def scenario(results: dict[str, Any], name: str) -> dict[str, Any]:
    """One scenario's result; fails with the SDK's error when the scenario threw."""
    value: dict[str, Any] = results[name]
    assert "thrown" not in value, f"{name} threw: {json.dumps(value['thrown'], indent=2)}"
    return value


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def core(live_stack: LiveStack) -> dict[str, Any]:
    """The core scenarios, then the rate-limit one in a staging environment of its own, so
    emptying its batch bucket leaves the dev environment's batches alone."""
    other_key = live_stack.manage("apikey", "create", "--env", "staging", "--name", "sdk-ratelimit").strip()
    return run_node(live_stack, "core", "ratelimit", SDK_RATELIMIT_KEY=other_key)


@pytest.fixture(scope="module")
def list_and_replay(live_stack: LiveStack) -> dict[str, Any]:
    return run_node(live_stack, "listAndReplay")


def test_trigger_with_every_option_gives_a_handle_and_a_delayed_run(core: dict[str, Any]) -> None:
    result = scenario(core, "allOptions")
    handle, run = result["handle"], result["run"]
    assert handle["id"].startswith("run_") and handle["publicAccessToken"].count(".") == 2
    assert run["id"] == handle["id"]
    assert run["status"] == "DELAYED" and run["isQueued"] is True and run["isCompleted"] is False
    assert result["delayedUntilIsDate"] is True
    assert timedelta(minutes=59) < when(run["delayedUntil"]) - when(run["createdAt"]) <= timedelta(hours=1, seconds=5)
    assert run["payload"] == {"all": "options"}
    assert run["idempotencyKey"] == f"all-options-{core['tag']}"
    assert run["tags"] == result["expectedTags"]
    assert run["ttl"] == "10m"
    assert run["metadata"] == {"source": "sdk-check", "count": 1, "nested": {"ok": True, "list": ["a", 2]}}
    assert run["taskIdentifier"] == "hello-world" and run["triggerFunction"] == "trigger"
    assert run["region"] == "us-east-1"
    # The same idempotency key again: the same run, marked cached.
    assert result["again"]["id"] == handle["id"] and result["again"]["isCached"] is True


def test_a_plain_trigger_completes_with_the_tasks_output(core: dict[str, Any]) -> None:
    result = scenario(core, "completes")
    run = result["run"]
    assert result["handle"]["isCached"] is False
    assert run["status"] == "COMPLETED" and run["isSuccess"] is True and run["isFailed"] is False
    assert run["output"] == {"message": "Hello, SDK!"}
    assert run["payload"] == {"name": "SDK"}
    assert when(run["startedAt"]) <= when(run["finishedAt"])


def test_an_idempotent_repeat_returns_the_same_run(core: dict[str, Any]) -> None:
    result = scenario(core, "idempotentRepeat")
    assert result["second"]["id"] == result["first"]["id"]
    assert (result["first"]["isCached"], result["second"]["isCached"]) == (False, True)
    assert result["run"]["payload"] == {"name": "once"}
    assert result["run"]["idempotencyKey"] == f"repeat-{core['tag']}"


def test_batch_trigger_from_an_array_with_per_item_options(core: dict[str, Any]) -> None:
    result = scenario(core, "batchFromArray")
    handle, batch = result["handle"], result["batch"]
    assert handle["batchId"].startswith("batch_") and handle["runCount"] == 3
    assert handle["publicAccessToken"].count(".") == 2
    assert batch["id"] == handle["batchId"] and batch["runCount"] == 3
    by_name = {run["payload"]["name"]: run for run in result["runs"]}
    assert sorted(by_name) == ["item 0", "item 1", "item 2"]
    item0, item1 = by_name["item 0"], by_name["item 1"]
    assert item0["tags"] == sorted([core["tag"], "item-0"]) and item0["metadata"] == {"i": 0}
    assert item0["ttl"] == "15m" and item0["idempotencyKey"] == f"batch-item0-{core['tag']}"
    assert item1["status"] == "DELAYED" and item1["tags"] == ["item-1"]
    assert {run["triggerFunction"] for run in result["runs"]} == {"batchTrigger"}
    outputs = sorted(run["output"]["message"] for run in result["finished"])
    assert outputs == ["Hello, item 0!", "Hello, item 2!"]


def test_the_runs_of_a_batch_name_their_batch(core: dict[str, Any]) -> None:
    result = scenario(core, "batchFromArray")
    assert [run.get("batchId") for run in result["runs"]] == [result["handle"]["batchId"]] * 3


def test_batch_trigger_from_an_async_iterable(core: dict[str, Any]) -> None:
    result = scenario(core, "batchFromAsyncIterable")
    assert result["handle"]["runCount"] == 2
    payloads = sorted(run["payload"]["name"] for run in result["runs"])
    assert payloads == ["streamed 0", "streamed 1"]
    assert all(core["tag"] in run["tags"] for run in result["runs"])


def test_batch_trigger_of_several_tasks(core: dict[str, Any]) -> None:
    result = scenario(core, "batchOfSeveralTasks")
    assert result["handle"]["runCount"] == 3
    assert result["batch"]["status"] == "COMPLETED"
    runs = {run["payload"].get("name", "second"): run for run in result["runs"]}
    assert {name: run["taskIdentifier"] for name, run in runs.items()} == {
        "first": "hello-world",
        "second": "hello-world-2",
        "third": "hello-world",
    }
    assert runs["first"]["output"] == {"message": "Hello, first!"}
    assert runs["second"]["output"] == {"message": "Hello again!", "received": {"second": True}}
    assert {run["status"] for run in result["runs"]} == {"COMPLETED"}


def test_cancel_a_delayed_run(core: dict[str, Any]) -> None:
    result = scenario(core, "cancel")
    run_id = result["handle"]["id"]
    assert result["canceled"] == {"id": run_id} and result["twice"] == {"id": run_id}
    run = result["run"]
    assert run["status"] == "CANCELED" and run["isCancelled"] is True and run["isCompleted"] is True
    assert "finishedAt" in run


def test_reschedule_a_delayed_run_returns_the_whole_run(core: dict[str, Any]) -> None:
    result = scenario(core, "reschedule")
    before, by_duration, by_date = result["before"], result["byDuration"], result["byDate"]
    assert by_duration["id"] == result["handle"]["id"] and by_duration["status"] == "DELAYED"
    assert by_duration["payload"] == {"name": "later"} and by_duration["taskIdentifier"] == "hello-world"
    assert result["byDurationDelayedUntilIsDate"] is True
    moved = when(by_duration["delayedUntil"]) - when(result["now"])
    assert timedelta(hours=1, minutes=59) < moved <= timedelta(hours=2)
    assert when(by_duration["delayedUntil"]) > when(before["delayedUntil"])
    assert when(by_date["delayedUntil"]) == when(result["requestedDate"])


def test_a_wrong_key_is_an_authentication_error(core: dict[str, Any]) -> None:
    result = scenario(core, "wrongKey")
    assert result["isAuthenticationError"] is True, result
    assert result["error"]["status"] == 401
    assert result["elapsedMs"] < 2000  # not retried


def test_an_unknown_run_is_not_found_at_once(core: dict[str, Any]) -> None:
    result = scenario(core, "unknownRun")
    assert result["error"]["status"] == 404 and result["error"]["class"] == "NotFoundError"
    assert result["elapsedMs"] < 2000  # no x-should-retry: the SDK does not retry for ~9 s


def test_a_batch_over_the_rate_limit_is_a_batch_trigger_error_at_once(core: dict[str, Any]) -> None:
    result = scenario(core, "batchCreate429")
    assert result.get("thrownNothing") is None, result
    error = result["error"]
    assert result["isBatchTriggerError"] is True, error
    assert error["isRateLimited"] is True and error["phase"] == "create"
    assert error["retryAfterMs"] > 0 and error["itemCount"] == 1000
    assert error["apiError"]["status"] == 429 and error["apiError"]["class"] == "RateLimitError"
    assert "Rate limit exceeded" in error["message"]
    # The reset is far off, so the server tells the SDK not to retry: the error comes at once.
    assert error["apiError"]["headers"]["x-should-retry"] == "false"
    assert result["elapsedMs"] < 5000


def test_runs_list_filters_and_pages_both_ways(list_and_replay: dict[str, Any]) -> None:
    result = scenario(list_and_replay, "list")
    newest_first = result["triggeredNewestFirst"]
    assert result["first"]["ids"] == newest_first[:2]
    assert result["first"]["hasNext"] is True
    assert result["next"]["ids"] == newest_first[2:] and result["next"]["hasNext"] is False
    assert result["previous"]["ids"] == newest_first[:2]
    assert result["all"] == newest_first
    assert result["byStatus"] == newest_first and result["none"] == []
    assert result["byQueue"] == newest_first and result["byTime"] == newest_first
    assert result["byOneTag"] == [newest_first[1]]
    sample = result["first"]["sample"]
    assert sample["status"] == "DELAYED" and sample["env"]["id"] and sample["env"]["name"]


def test_runs_replay_with_and_without_overrides(list_and_replay: dict[str, Any]) -> None:
    result = scenario(list_and_replay, "replay")
    assert result["plainReplay"]["id"] != result["originalId"]
    replayed = result["replayed"]
    assert replayed["status"] == "COMPLETED" and replayed["payload"] == {"name": "original"}
    assert replayed["output"] == {"message": "Hello, original!"}
    assert replayed["metadata"] == {"m": 1}
    overridden = result["overriddenRun"]
    assert overridden["id"] == result["overridden"]["id"] != result["originalId"]
    assert overridden["status"] == "DELAYED"
    assert overridden["payload"] == {"name": "override", "when": "2031-05-06T07:08:09.000Z"}
    assert overridden["metadata"] == {"replayed": True}
    assert "overridden" in overridden["tags"] and "replay" not in overridden["tags"]


@pytest.fixture(scope="module")
def queue_results(live_stack: LiveStack) -> dict[str, Any]:
    return run_node(live_stack, "queues")


def test_sdk_queue_items_parse_and_a_pause_holds_a_run_until_resume(queue_results: dict[str, Any]) -> None:
    result = scenario(queue_results, "pauseAndOverride")
    paused, name = result["paused"], result["name"]
    assert paused["id"].startswith("queue_") and paused["version"] == "V1"  # the SDK's default
    assert (paused["name"], paused["type"], paused["paused"]) == (name, "custom", True)
    assert result["heldWhilePaused"]["status"] == "QUEUED"
    assert result["whilePaused"]["id"] == paused["id"] and result["whilePaused"]["queued"] == 1
    assert result["listed"]["id"] == paused["id"] and result["listed"]["paused"] is True
    assert result["pagination"]["currentPage"] == 1 and result["pagination"]["count"] >= 2
    assert (result["byTask"]["name"], result["byTask"]["type"]) == ("hello-world", "task")
    overridden = result["overridden"]
    assert overridden["concurrencyLimit"] == 3 and result["overriddenAtIsDate"] is True
    assert overridden["concurrency"]["override"] == 3 and overridden["concurrency"]["base"] is None
    assert overridden["concurrency"]["overriddenBy"] is None  # overridden with an API key
    assert result["reset"]["concurrency"]["override"] is None and result["reset"]["concurrencyLimit"] is None
    assert result["resumed"]["paused"] is False
    assert result["heldAfter"]["status"] == "COMPLETED"


def test_sdk_retrieving_an_unknown_queue_is_a_404(queue_results: dict[str, Any]) -> None:
    assert scenario(queue_results, "unknownQueue")["thrownStatus"] == 404


@pytest.fixture(scope="module")
def schedule_results(live_stack: LiveStack) -> dict[str, Any]:
    return run_node(live_stack, "schedules")


def test_sdk_schedules_are_created_once_per_key_changed_listed_and_deleted(schedule_results: dict[str, Any]) -> None:
    result = scenario(schedule_results, "lifecycle")
    created, again = result["created"], result["again"]
    assert created["id"].startswith("sched_") and result["nextRunIsDate"] is True
    assert (created["type"], created["task"], created["active"], created["timezone"]) == (
        "IMPERATIVE",
        "hello-world",
        True,
        "Europe/Paris",
    )
    assert created["generator"] == {"type": "CRON", "expression": "0 9 * * *", "description": "At 09:00 AM"}
    assert created["environments"][0]["type"] == "DEVELOPMENT"
    # The same deduplicationKey twice: one schedule, updated by the second call.
    assert again["id"] == created["id"]
    assert (again["generator"]["expression"], again["externalId"]) == ("30 2 * * *", "user-2")
    assert result["retrieved"]["id"] == created["id"] and result["retrieved"]["externalId"] == "user-2"
    updated = result["updated"]
    assert (updated["generator"]["expression"], updated["externalId"], updated["timezone"]) == (
        "*/5 * * * *",
        "user-3",
        "UTC",
    )
    assert updated["deduplicationKey"] == created["deduplicationKey"]
    assert (result["deactivated"]["active"], result["deactivated"].get("nextRun")) == (False, None)
    assert result["activated"]["active"] is True and result["activated"]["nextRun"]
    assert [schedule["id"] for schedule in result["listed"]] == [created["id"]]
    assert result["pagination"]["currentPage"] == 1 and result["pagination"]["count"] >= 1
    assert result["deleted"] == {"id": created["id"]}
    assert result["afterDelete"]["thrownStatus"] == 404


def test_sdk_lists_the_time_zones_utc_first_unless_excluded(schedule_results: dict[str, Any]) -> None:
    result = scenario(schedule_results, "timezones")
    assert (result["first"], result["paris"]) == ("UTC", True)
    assert "UTC" not in result["withoutUtc"] and result["withoutCount"] == result["count"] - 1


def test_sdk_gets_the_servers_refusal_of_a_bad_cron(schedule_results: dict[str, Any]) -> None:
    result = scenario(schedule_results, "badCron")
    assert result["thrownStatus"] == 422 and "cron is not a valid expression" in result["message"]


@pytest.fixture(scope="module")
def metadata_results(live_stack: LiveStack) -> dict[str, Any]:
    return run_node(live_stack, "metadata")


def test_sdk_api_client_drives_a_running_tasks_metadata_and_reads_its_progress(
    metadata_results: dict[str, Any],
) -> None:
    result = scenario(metadata_results, "driveAProgressRun")
    assert result["atStart"]["metadata"] == {"by": "sdk", "progress": 0, "step": 0}
    assert result["afterFirst"]["metadata"]["advance"] == 1
    assert result["stepOne"]["metadata"]["progress"] == 0.5
    assert result["whileRunningStatus"] == "EXECUTING"
    assert result["whileRunningMetadata"]["step"] == 1
    assert result["done"] == {
        "status": "COMPLETED",
        "metadata": {"by": "sdk", "advance": 2, "progress": 1, "step": 2},
    }


def test_sdk_api_client_replaces_metadata_and_gets_the_errors_it_expects(metadata_results: dict[str, Any]) -> None:
    result = scenario(metadata_results, "replaceAndRefuse")
    assert result["replaced"] == {"metadata": {"replaced": True}}
    assert result["errors"]["badOperation"]["status"] == 400
    assert "operations[0].value" in result["errors"]["badOperation"]["message"]
    assert result["errors"]["unknownRun"]["status"] == 404
