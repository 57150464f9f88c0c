"""The Python SDK's remote mode against a live Runyard, and the same scenario in both modes."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dashboard.management import launcher
from example_tasks import hello_world
from runs import ratelimit, sdk
from runs.sdk import (
    ApiConnectionError,
    AuthenticationError,
    BatchTriggerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunInfo,
    RunStateError,
    RunSummary,
    RunyardError,
    ServerError,
    ValidationError,
    batch,
    runs,
    tasks,
)
from runs.sdk_remote import Client
from tests import factories
from tests.live import LiveStack, poll

NO_RUN = "run_" + "0" * 25


@pytest.fixture
def client(live_stack: LiveStack) -> Client:
    return Client(api_url=live_stack.base_url, secret_key=live_stack.api_key, timeout=10)


@pytest.fixture
def tag() -> str:
    return f"py-{secrets.token_hex(4)}"


# --- every verb over HTTP -----------------------------------------------------------------


@pytest.mark.e2e
def test_trigger_and_retrieve_a_run_the_worker_completes(client: Client, tag: str) -> None:
    handle = client.tasks.trigger("hello-world", {"name": "Ada"}, {"tags": [tag], "metadata": {"k": 1}})
    assert handle.is_cached is False
    done = poll(lambda: client.runs.retrieve(handle.id), lambda run: run.is_completed, "completion", 30)
    assert isinstance(done, RunInfo)
    assert (done.status, done.output, done.payload) == ("COMPLETED", {"message": "Hello, Ada!"}, {"name": "Ada"})
    assert (done.tags, done.metadata, done.attempt_count, done.is_success) == ([tag], {"k": 1}, 1, True)
    assert done.started_at is not None and done.finished_at is not None and done.error is None


@pytest.mark.e2e
def test_a_run_without_a_payload_has_none(client: Client) -> None:
    handle = client.tasks.trigger("hello-world", options={"delay": "1h"})
    assert client.runs.retrieve(handle.id).payload is None


@pytest.mark.e2e
def test_idempotency_keys_are_hashed_like_the_official_sdk(client: Client, live_stack: LiveStack, tag: str) -> None:
    options = {"idempotencyKey": f"{tag}-key", "delay": "1h"}
    first = client.tasks.trigger("hello-world", {"n": 1}, options)
    again = client.tasks.trigger("hello-world", {"n": 2}, {"idempotency_key": f"{tag}-key", "delay": "1h"})
    assert again.id == first.id and again.is_cached
    assert client.runs.retrieve(first.id).idempotency_key == f"{tag}-key"


@pytest.mark.e2e
def test_batch_trigger_from_a_list_a_generator_and_of_several_tasks(client: Client, tag: str) -> None:
    def items() -> Iterator[dict[str, Any]]:
        for i in range(3):
            yield {"payload": {"i": i}, "options": {"delay": "1h", "tags": [tag]}}

    listed = client.tasks.batch_trigger("hello-world", list(items()))
    generated = client.tasks.batch_trigger("hello-world", items())
    mixed = client.batch.trigger(
        [
            {"id": "hello-world", "payload": {"i": 0}, "options": {"delay": "1h", "tags": [tag]}},
            {"id": "hello-world-2", "payload": {"i": 1}, "options": {"delay": "1h", "tags": [tag]}},
        ]
    )
    for handle, count in ((listed, 3), (generated, 3), (mixed, 2)):
        assert handle.run_count == count and len(handle.run_ids) == count and not handle.is_cached
    assert [client.runs.retrieve(run_id).payload for run_id in listed.run_ids] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [client.runs.retrieve(run_id).task_identifier for run_id in mixed.run_ids] == [
        "hello-world",
        "hello-world-2",
    ]
    assert client.runs.retrieve(listed.run_ids[0]).batch_id == listed.batch_id


@pytest.mark.e2e
def test_a_repeated_batch_key_returns_the_first_batch(client: Client, tag: str) -> None:
    items = [{"payload": {"i": i}, "options": {"delay": "1h"}} for i in range(2)]
    first = client.tasks.batch_trigger("hello-world", items, {"idempotencyKey": f"{tag}-batch"})
    again = client.tasks.batch_trigger("hello-world", items, {"idempotencyKey": f"{tag}-batch"})
    assert (again.batch_id, again.run_ids, again.is_cached) == (first.batch_id, first.run_ids, True)


@pytest.mark.e2e
def test_list_iterates_across_pages_following_the_cursor(client: Client, tag: str) -> None:
    made = [client.tasks.trigger("hello-world", {"i": i}, {"delay": "1h", "tags": [tag]}).id for i in range(5)]
    listed = client.runs.list(tag=tag, limit=2)
    items = list(listed)
    assert [run.id for run in items] == made[::-1]
    assert all(isinstance(run, RunSummary) and run.status == "DELAYED" for run in items)
    pages = list(listed.pages())
    assert [len(page.runs) for page in pages] == [2, 2, 1] and pages[-1].next is None
    back = client.runs.list(tag=tag, limit=2, before=made[0]).first_page()
    assert [run.id for run in back.runs] == [made[2], made[1]]
    assert [run.id for run in client.runs.list(tag=tag, status=["DELAYED"], task_identifier="hello-world")] == made[
        ::-1
    ]
    assert list(client.runs.list(tag=tag, status="COMPLETED")) == []
    recent = client.runs.list(tag=tag, from_=datetime.now(UTC) - timedelta(minutes=5), period="1h", is_test=False)
    assert len(list(recent)) == 5


@pytest.mark.e2e
def test_cancel_reschedule_and_replay(client: Client, tag: str) -> None:
    handle = client.tasks.trigger("hello-world", {"n": 1}, {"delay": "1h", "tags": [tag], "metadata": {"m": 1}})
    later = datetime.now(UTC) + timedelta(days=2)
    moved = client.runs.reschedule(handle.id, later)
    assert moved.status == "DELAYED" and moved.delayed_until is not None
    assert abs((moved.delayed_until - later).total_seconds()) < 1
    assert client.runs.reschedule(handle.id, "3h").status == "DELAYED"
    copy = client.runs.replay(handle.id)
    changed = client.runs.replay(handle.id, payload={"n": 2}, tags=[tag, "replayed"], metadata={"m": 2}, delay="2h")
    canceled = client.runs.cancel(handle.id)
    assert (canceled.status, canceled.is_cancelled, canceled.finished_at is not None) == ("CANCELED", True, True)
    assert client.runs.cancel(handle.id).status == "CANCELED"  # a final run is left as it is
    with pytest.raises(RunStateError, match="not delayed"):
        client.runs.reschedule(handle.id, "1h")
    first, second = client.runs.retrieve(copy.id), client.runs.retrieve(changed.id)
    assert (first.payload, first.tags, first.metadata) == ({"n": 1}, [tag], {"m": 1})  # the delay is not copied
    assert (second.payload, second.tags, second.metadata) == ({"n": 2}, sorted([tag, "replayed"]), {"m": 2})


# --- one class per failure ----------------------------------------------------------------


@pytest.mark.e2e
def test_a_wrong_key_is_an_authentication_error(live_stack: LiveStack) -> None:
    wrong = Client(api_url=live_stack.base_url, secret_key="tr_dev_wrong")
    with pytest.raises(AuthenticationError) as caught:
        wrong.tasks.trigger("hello-world", {})
    assert caught.value.http_status == 401 and "Invalid API key" in str(caught.value)


@pytest.mark.e2e
def test_unknown_runs_are_not_found(client: Client) -> None:
    for call in (
        lambda: client.runs.retrieve(NO_RUN),
        lambda: client.runs.cancel(NO_RUN),
        lambda: client.runs.reschedule(NO_RUN, "1h"),
        lambda: client.runs.replay(NO_RUN),
    ):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert caught.value.http_status == 404


@pytest.mark.e2e
def test_bad_input_is_a_validation_error(client: Client) -> None:
    with pytest.raises(ValidationError, match="machine") as caught:
        client.tasks.trigger("hello-world", {}, {"machine": "huge"})
    assert caught.value.http_status in (400, 422) and caught.value.field == "machine"  # the body's "param"
    with pytest.raises(ValidationError, match="status"):
        list(client.runs.list(status="SLEEPING"))
    with pytest.raises(ValidationError, match=r"item 1|index 1"):
        client.tasks.batch_trigger("hello-world", [{"payload": 1}, {"payload": 2, "options": {"machine": "huge"}}])
    with pytest.raises(ValidationError, match="delay"):
        client.runs.reschedule(client.tasks.trigger("hello-world", {}, {"delay": "1h"}).id, "yesterday")


@pytest.mark.e2e
def test_a_batch_over_the_rate_limit_is_a_batch_trigger_error_caused_by_a_rate_limit_error(
    live_stack: LiveStack,
) -> None:
    # An environment of its own: emptying its bucket leaves the other tests' batches alone.
    key = live_stack.manage("apikey", "create", "--env", "prod", "--name", "py-ratelimit").strip()
    prod = Client(api_url=live_stack.base_url, secret_key=key)
    ask = 1000
    for _ in range(5):  # batches created but never streamed cost their runCount and make no runs
        try:
            prod.post_json("/api/v3/batches", {"runCount": ask, "taskIdentifiers": ["hello-world"]})
        except RateLimitError as exc:
            ask = exc.remaining or 0
        if ask == 0:
            break
    items = [{"payload": {"i": i}, "options": {"delay": "1h"}} for i in range(1000)]
    with pytest.raises(BatchTriggerError) as caught:
        prod.tasks.batch_trigger("hello-world", items)
    error = caught.value
    assert (error.phase, error.item_count, error.is_rate_limited) == ("create", 1000, True)
    assert error.retry_after_ms is not None and error.retry_after_ms > 0
    assert isinstance(error.cause, RateLimitError) and error.cause.http_status == 429
    assert error.cause.limit == 1200 and error.cause.remaining is not None


def test_no_server_is_an_api_connection_error() -> None:
    closed = Client(api_url=f"http://127.0.0.1:{launcher.free_port()}", secret_key="tr_dev_x", timeout=2)
    with pytest.raises(ApiConnectionError):
        closed.runs.retrieve(NO_RUN)


class Stub(BaseHTTPRequestHandler):
    """Answers every request with the status named by the path's first segment."""

    def do_GET(self) -> None:
        status = int(self.path.strip("/").split("/")[0] or 200)
        body = json.dumps({"error": f"stub {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (413, ValidationError),
        (422, ValidationError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
        (418, RunyardError),
    ],
)
def test_each_status_raises_its_class(stub: str, status: int, error_class: type[RunyardError]) -> None:
    with pytest.raises(error_class) as caught:
        Client(api_url=f"{stub}/{status}", secret_key="tr_dev_x").runs.retrieve(NO_RUN)
    assert type(caught.value) is error_class
    assert caught.value.http_status == status and str(caught.value) == f"stub {status}"


# --- choosing the mode ----------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db
def test_environment_variables_send_the_module_functions_over_http(
    live_stack: LiveStack, monkeypatch: pytest.MonkeyPatch, dev: Any
) -> None:
    monkeypatch.setenv("RUNYARD_API_URL", live_stack.base_url)
    monkeypatch.setenv("RUNYARD_SECRET_KEY", live_stack.api_key)
    handle = tasks.trigger("hello-world", {"via": "env"}, {"delay": "1h"})
    assert live_stack.run(handle.id)["payload"] == {"via": "env"}  # in the live stack's database
    assert runs.retrieve(handle.id).payload == {"via": "env"}
    with pytest.raises(ValidationError, match="secret key chooses the environment"):
        runs.retrieve(handle.id, env="prod")
    monkeypatch.delenv("RUNYARD_API_URL")
    with pytest.raises(NotFoundError):  # in-process again: the test database has no such run
        runs.retrieve(handle.id)


@pytest.mark.e2e
def test_configure_wins_over_the_environment(live_stack: LiveStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("RUNYARD_SECRET_KEY", "tr_dev_nothing")
    sdk.configure(api_url=live_stack.base_url, secret_key=live_stack.api_key)
    try:
        assert runs.retrieve(tasks.trigger("hello-world", 1, {"delay": "1h"}).id).payload == 1
    finally:
        sdk.configure()
    with pytest.raises(ApiConnectionError):
        runs.retrieve(NO_RUN)


# --- the same scenario in both modes --------------------------------------------------------


@pytest.fixture(params=["in-process", pytest.param("remote", marks=pytest.mark.e2e)])
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """The module functions of runs.sdk, in-process (test database) or remote (live stack)."""
    if request.param == "in-process":
        factories.environment("dev")
        factories.task_definition("hello-world")
        factories.task_definition("hello-world-2")
        redis = ratelimit.redis_client()  # full batch buckets: batches are rate limited
        for name in redis.scan_iter(f"{ratelimit.KEY_PREFIX}:*"):
            redis.delete(name)
        yield request.param
        return
    stack: LiveStack = request.getfixturevalue("live_stack")
    sdk.configure(api_url=stack.base_url, secret_key=stack.api_key)
    try:
        yield request.param
    finally:
        sdk.configure()


def scenario(tag: str) -> dict[str, Any]:
    """Every verb of runs.sdk, with the results that do not depend on ids or clocks."""
    seen: dict[str, Any] = {}
    options = {"delay": "1h", "tags": [tag, "b"], "metadata": {"m": 1}, "idempotencyKey": f"{tag}-key"}
    handle = tasks.trigger("hello-world", {"n": 1}, options)
    again = tasks.trigger("hello-world", {"n": 2}, options)
    seen["cached"] = (handle.is_cached, again.is_cached, again.id == handle.id)
    info = runs.retrieve(handle.id)
    seen["retrieve"] = (info.status, info.payload, info.tags, info.metadata, info.idempotency_key, info.is_queued)
    items = [{"payload": {"i": i}, "options": {"delay": "1h", "tags": [tag]}} for i in range(3)]
    one_task = tasks.batch_trigger("hello-world", items)
    several = batch.trigger(
        [
            {"id": "hello-world", "payload": "a", "options": {"delay": "1h", "tags": [tag]}},
            {"id": "hello-world-2", "payload": "b", "options": {"delay": "1h", "tags": [tag]}},
        ]
    )
    by_task = batch.trigger_by_task([{"task": hello_world, "payload": "c", "options": {"delay": "1h", "tags": [tag]}}])
    payloads = [runs.retrieve(i).payload for i in [*several.run_ids, *by_task.run_ids]]
    seen["batches"] = (one_task.run_count, several.run_count, by_task.run_count, payloads)
    listed = runs.list(tag=tag, limit=2)
    all_ids = {handle.id, *one_task.run_ids, *several.run_ids, *by_task.run_ids}
    seen["list"] = ([len(page.runs) for page in listed.pages()], {run.id for run in listed} == all_ids)
    seen["list_filtered"] = len(list(runs.list(tag=[tag], task_identifier="hello-world-2", status="DELAYED")))
    moved = runs.reschedule(handle.id, "2h")
    assert moved.delayed_until is not None and info.delayed_until is not None
    seen["reschedule"] = (moved.status, moved.delayed_until > info.delayed_until)
    replayed = runs.retrieve(runs.replay(handle.id, payload={"n": 3}, tags=[tag, "replayed"], delay="1h").id)
    seen["replay"] = (replayed.status, replayed.payload, replayed.tags, replayed.metadata)
    canceled = runs.cancel(handle.id)
    seen["cancel"] = (canceled.status, canceled.is_cancelled, canceled.is_completed, canceled.is_failed)
    seen["errors"] = [
        error_name(lambda: runs.reschedule(handle.id, "1h")),
        error_name(lambda: runs.retrieve(NO_RUN)),
        error_name(lambda: runs.replay(NO_RUN)),
        error_name(lambda: tasks.trigger("hello-world", {}, {"machine": "huge"})),
        error_name(lambda: list(runs.list(status="SLEEPING"))),
        error_name(lambda: tasks.batch_trigger("hello-world", [])),
    ]
    try:
        runs.replay(handle.id, delay="yesterday")
    except ValidationError as exc:
        seen["fields"] = exc.field
    return seen


def error_name(call: Any) -> str:
    try:
        call()
    except RunyardError as exc:
        return type(exc).__name__
    return "nothing raised"


@pytest.mark.django_db  # the in-process mode's database (the remote mode leaves it alone)
def test_the_same_scenario_gives_the_same_results_in_both_modes(mode: str, tag: str) -> None:
    tag_seen = scenario(tag)
    assert tag_seen == {
        "cached": (False, True, True),
        "retrieve": ("DELAYED", {"n": 1}, sorted([tag, "b"]), {"m": 1}, f"{tag}-key", True),
        "batches": (3, 2, 1, ["a", "b", "c"]),
        "list": ([2, 2, 2, 1], True),
        "list_filtered": 1,
        "reschedule": ("DELAYED", True),
        "replay": ("DELAYED", {"n": 3}, sorted([tag, "replayed"]), {"m": 1}),
        "cancel": ("CANCELED", True, True, True),
        "fields": "delay",
        "errors": [
            "RunStateError",
            "NotFoundError",
            "NotFoundError",
            "ValidationError",
            "ValidationError",
            "ValidationError",
        ],
    }
