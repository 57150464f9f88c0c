"""Bad input gets its documented 4xx naming the problem, never a 5xx: malformed JSON and
NDJSON, oversized bodies and items, unknown tasks and invalid options, fixed cases and
hypothesis-generated ones, through the real views."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api import batches
from runs import engine, packets, ratelimit
from runs.models import Batch, BatchStatus, Environment, Run
from tests import factories
from tests.api.conftest import Api
from tests.runs.test_parsers_hypothesis import json_values, options

pytestmark = pytest.mark.django_db
NDJSON = "application/x-ndjson"
HUGE = "9" * 400  # a JSON integer far past any limit (json.loads makes it a Python int)
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(autouse=True)
def setup(db: None) -> None:
    factories.task_definition("hello-world")
    client = ratelimit.redis_client()
    for name in client.scan_iter(f"{ratelimit.KEY_PREFIX}:*"):
        client.delete(name)


def error_of(response: Any) -> str:
    assert response["Content-Type"] == "application/json", response.content
    message: str = response.json()["error"]
    return message


def trigger_raw(api: Api, raw: str, task: str = "hello-world") -> Any:
    return api.post(f"/api/v1/tasks/{task}/trigger", raw=raw)


def new_batch(dev: Environment, run_count: int = 2) -> Batch:
    batch, _ = engine.create_batch(environment=dev, run_count=run_count, task_identifiers=["hello-world"])
    return batch


def stream(api: Api, batch_id: str, body: bytes, content_type: str = NDJSON) -> Any:
    path = f"/api/v3/batches/{batch_id}/items"
    return api.client.post(path, data=body, content_type=content_type, headers=api.headers())


# --- malformed JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw", "expected"),
    [
        ("/api/v1/tasks/hello-world/trigger", '{"payload": ', "not valid JSON"),
        ("/api/v1/tasks/hello-world/trigger", '{"options": NaN}', "NaN is not allowed"),
        ("/api/v1/tasks/hello-world/trigger", "[1, 2]", "must be a JSON object, not an array"),
        ("/api/v1/tasks/hello-world/trigger", "[" * 100_000, "Request body: nested deeper than 100 levels"),
        ("/api/v1/tasks/hello-world/trigger", b'{"payload": "\xff"}', "not valid UTF-8"),
        ("/api/v3/batches", '{"runCount": 2', "not valid JSON"),
        ("/api/v3/batches", '"runCount"', "not a string"),
    ],
)
def test_malformed_json_is_a_400_that_says_so(api: Api, path: str, raw: Any, expected: str) -> None:
    response = api.post(path, raw=raw)
    assert response.status_code == 400
    assert expected.replace("not a string", "a string") in error_of(response)


# --- oversized bodies -------------------------------------------------------------------------


def test_a_trigger_body_over_the_payload_limit_is_413_naming_the_limit(api: Api, settings: Any) -> None:
    settings.RUNYARD_MAX_PAYLOAD_BYTES = 1024
    response = api.trigger(body={"payload": "x" * 2000})
    assert response.status_code == 413 and "1 KB" in error_of(response)
    assert not Run.objects.exists()


def test_an_ndjson_item_over_its_limit_is_413_naming_its_index(
    api: Api, dev: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "MAX_ITEM_BYTES", 200)
    batch = new_batch(dev)
    big = json.dumps({"index": 1, "task": "hello-world", "payload": "x" * 300})
    small = json.dumps({"index": 0, "task": "hello-world"})
    response = stream(api, batch.id, f"{small}\n{big}\n".encode())
    assert response.status_code == 413
    assert error_of(response) == "Batch item 1: larger than the limit of 3 MiB per item"
    assert Batch.objects.get(pk=batch.id).status == BatchStatus.ABORTED and not Run.objects.exists()


def test_metadata_over_256_kib_is_413_naming_metadata(api: Api) -> None:
    body = {"payload": "{}", "options": {"metadata": {"x": "y" * 300_000}}}
    response = api.trigger(body=body)
    assert response.status_code == 413 and "metadata" in error_of(response)


# --- malformed NDJSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (b'{"index": 0, "task": "hello-world"}\n{"index": 1, "task"\n', 400, "Batch item 1: not valid JSON"),
        (b'{"index": 0, "task": "hello-world"}\nnot json\n', 400, "Batch item on line 2: not valid JSON"),
        (b"[1, 2]\n", 422, "Batch item on line 1: must be an object whose index is an integer >= 0"),
        (b'{"index": -1, "task": "hello-world"}\n', 422, "index is an integer >= 0"),
        (b'{"index": ' + HUGE.encode() + b', "task": "hello-world"}\n', 422, "index must be from 0 to 1"),
        (b'{"index": 0, "task": "<script>"}\n', 422, "Batch item 0: taskId must be"),
        (b'{"index": 0, "task": 7}\n', 422, "Batch item 0: task must be a task id"),
        (b'{"index": 0, "task": "hello-world", "options": {"maxAttempts": 0}}\n', 422, "options.maxAttempts"),
        (b'{"index": 0, "task": "hello-world", "options": {"delay": "99999999999999d"}}\n', 422, "Invalid delay"),
    ],
)
def test_bad_ndjson_aborts_the_batch_with_an_error_naming_the_item(
    api: Api, dev: Environment, body: bytes, status: int, expected: str
) -> None:
    batch = new_batch(dev)
    response = stream(api, batch.id, body)
    assert response.status_code == status, response.content
    assert expected in error_of(response)
    assert Batch.objects.get(pk=batch.id).status == BatchStatus.ABORTED and not Run.objects.exists()


def test_items_sent_as_json_instead_of_ndjson_are_415(api: Api, dev: Environment) -> None:
    response = stream(api, new_batch(dev).id, b'{"index": 0}', content_type="application/json")
    assert response.status_code == 415 and "application/x-ndjson" in error_of(response)


# --- unknown tasks --------------------------------------------------------------------------


def test_a_task_id_that_can_never_exist_is_400_naming_taskId(api: Api) -> None:
    response = trigger_raw(api, "{}", task="bad%20task")
    assert response.status_code == 400 and "taskId" in error_of(response)


def test_a_well_formed_unknown_task_waits_for_a_worker_as_documented(api: Api) -> None:
    response = trigger_raw(api, "{}", task="not-deployed-yet")
    assert response.status_code == 200
    assert Run.objects.get(pk=response.json()["id"]).status == "PENDING_VERSION"


@pytest.mark.parametrize("run_count", [HUGE, "0", "1.5", '"2"', "true", "1001"])
def test_a_batch_run_count_that_is_not_1_to_1000_is_400_naming_it(api: Api, run_count: str) -> None:
    response = api.post("/api/v3/batches", raw='{"taskIdentifiers": ["hello-world"], "runCount": ' + run_count + "}")
    assert response.status_code == 400 and "runCount" in error_of(response)


def test_batch_task_identifiers_that_can_never_exist_are_400(api: Api) -> None:
    response = api.post("/api/v3/batches", {"runCount": 1, "taskIdentifiers": ["no spaces"]})
    assert response.status_code == 400 and "taskIdentifiers" in error_of(response)


# --- invalid options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_options", "status", "field"),
    [
        ('{"maxAttempts": ' + HUGE + "}", 400, "maxAttempts"),
        ('{"maxDuration": ' + HUGE + "}", 200, None),  # clamped to the largest maxDuration
        ('{"ttl": ' + HUGE + "}", 400, "ttl"),
        ('{"idempotencyKeyTTL": ' + HUGE + "}", 422, "idempotencyKeyTTL"),
        ('{"concurrencyKey": ' + HUGE + "}", 400, "concurrencyKey"),
        ('{"queue": {"name": "q", "concurrencyLimit": ' + HUGE + "}}", 400, "concurrencyLimit"),
        ('{"priority": ' + HUGE + "}", 400, "priority"),
        ('{"delay": "99999999999999d"}', 422, "delay"),
        ('{"delay": "2001-01-01"}', 422, "delay"),
        ('{"debounce": {"key": "k", "delay": "99999999999999w"}}', 422, "debounce.delay"),
        ('{"tags": [1]}', 400, "tags"),
        ('{"machine": "huge"}', 400, "machine"),
        ('{"maxAttempts": 1.5}', 400, "maxAttempts"),
    ],
)
def test_invalid_options_are_a_4xx_naming_the_option_never_a_500(
    api: Api, raw_options: str, status: int, field: str | None
) -> None:
    response = trigger_raw(api, '{"payload": "{}", "options": ' + raw_options + "}")
    assert response.status_code == status, response.content
    if field is not None:
        assert field in error_of(response)


# --- generated input: never a 5xx -----------------------------------------------------------


@FUZZ
@given(st.one_of(options, json_values), json_values)
@example({"maxAttempts": 10**400}, None)
def test_any_trigger_body_is_answered_without_a_5xx(api: Api, trigger_options: Any, payload: Any) -> None:
    response = api.trigger(body={"payload": payload, "options": trigger_options})
    assert response.status_code < 500, response.content
    if response.status_code != 200:
        assert response.status_code in {400, 413, 422} and error_of(response)


@FUZZ
@given(
    st.lists(st.one_of(json_values.map(json.dumps), st.binary(max_size=60).map(lambda b: b.decode("latin-1"))))
    .map("\n".join)
    .filter(bool)  # the test client drops the Content-Type of an empty body
)
def test_any_ndjson_stream_is_answered_without_a_5xx(api: Api, dev: Environment, lines: str) -> None:
    batch = new_batch(dev, run_count=3)
    response = stream(api, batch.id, lines.encode())
    assert response.status_code < 500, response.content
    assert response.status_code in {200, 400, 413, 422}


# --- NUL characters, lone surrogates and deep nesting (#14.5) -------------------------------

DEEP = 1000
deep_list = "[" * DEEP + "]" * DEEP
deep_object = '{"a": ' * DEEP + "1" + "}" * DEEP


def trigger_json(api: Api, body: Any) -> Any:
    # json.dumps escapes NUL as \u0000 and a lone surrogate as \ud800: valid JSON text.
    return trigger_raw(api, json.dumps(body))


def assert_refused(response: Any, field: str, problem: str) -> None:
    assert response.status_code == 400, response.content
    assert error_of(response).startswith(f"{field}: {problem}")
    assert response.json()["param"] == field


@pytest.mark.parametrize(
    ("options", "field", "problem"),
    [
        ({"tags": ["ok", "a\x00b"]}, "options.tags.1", "contains a NUL character"),
        ({"tags": ["a\ud800"]}, "options.tags.0", "contains a lone surrogate"),
        ({"metadata": {"a": {"b": "\x00"}}}, "options.metadata.a.b", "contains a NUL character"),
        ({"metadata": {"a": ["\udfff"]}}, "options.metadata.a.0", "contains a lone surrogate"),
        ({"idempotencyKey": "k\x00"}, "options.idempotencyKey", "contains a NUL character"),
        ({"concurrencyKey": "\ud83d"}, "options.concurrencyKey", "contains a lone surrogate"),
    ],
)
def test_a_nul_or_lone_surrogate_in_an_option_is_a_400_naming_its_path(
    api: Api, options: dict[str, Any], field: str, problem: str
) -> None:
    response = trigger_json(api, {"payload": "{}", "options": options})
    assert_refused(response, field, problem)
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": {"text": "a\ud800b"}}, "payload.text"),
        (
            {"payload": json.dumps({"json": {"text": "\ud800"}}), "options": {"payloadType": "application/super+json"}},
            "payload.text",  # the path within the value the SDK's SuperJSON string carries
        ),
        ({"payload": "a\udc00", "options": {"payloadType": "text/plain"}}, "payload"),
    ],
    ids=["json-value", "superjson-string", "text"],
)
def test_a_lone_surrogate_in_a_payload_is_a_400_naming_payload(api: Api, body: Any, field: str) -> None:
    assert_refused(trigger_json(api, body), field, "contains a lone surrogate")
    assert not Run.objects.exists()


def test_a_nul_escaped_inside_a_json_payload_is_stored_as_the_escape(api: Api) -> None:
    # Valid JSON data: the payload column holds the JSON text, where the NUL stays "\u0000".
    body = {"payload": factories.superjson({"text": "a\x00b"}), "options": {"payloadType": "application/super+json"}}
    response = trigger_json(api, body)
    assert response.status_code == 200, response.content
    run = Run.objects.get()
    assert packets.decode(run.payload, run.payload_type) == {"text": "a\x00b"}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"payload": ' + deep_list + "}", "payload"),
        ('{"payload": "{}", "options": {"metadata": ' + deep_object + "}}", "options.metadata"),
        ('{"payload": "{}", "options": {"tags": ' + deep_list + "}}", "options.tags"),
        ('{"payload": ' + json.dumps(deep_list) + "}", "payload"),  # inside the payload string
    ],
    ids=["payload", "metadata", "tags", "payload-string"],
)
def test_json_nested_1000_deep_is_a_400_naming_the_field(api: Api, raw: str, field: str) -> None:
    response = trigger_raw(api, raw)
    assert_refused(response, field, "nested deeper than 100 levels")
    assert not Run.objects.exists()


def test_json_nested_101_deep_is_refused_and_100_deep_accepted(api: Api) -> None:
    accepted = trigger_json(api, {"payload": json.loads("[" * 100 + "]" * 100)})
    assert accepted.status_code == 200, accepted.content
    refused = trigger_json(api, {"payload": json.loads("[" * 101 + "]" * 101)})
    assert_refused(refused, "payload", "nested deeper than 100 levels")


def test_a_replay_body_with_a_lone_surrogate_in_tags_is_a_400(api: Api) -> None:
    run = factories.run()
    response = api.post(f"/api/v1/runs/{run.id}/replay", raw=json.dumps({"tags": ["\ud800"]}))
    assert_refused(response, "tags.0", "contains a lone surrogate")
    assert Run.objects.count() == 1


def test_a_batch_item_nested_1000_deep_aborts_the_batch_naming_the_field(api: Api, dev: Environment) -> None:
    batch = new_batch(dev)
    line = '{"index": 0, "task": "hello-world", "payload": ' + deep_list + "}\n"
    response = stream(api, batch.id, line.encode())
    assert response.status_code == 400
    assert error_of(response) == "Batch item 0: payload: nested deeper than 100 levels"
    assert Batch.objects.get(pk=batch.id).status == BatchStatus.ABORTED and not Run.objects.exists()


def test_a_batch_item_with_a_nul_in_its_tags_aborts_the_batch_naming_the_field(api: Api, dev: Environment) -> None:
    batch = new_batch(dev)
    line = json.dumps({"index": 0, "task": "hello-world", "options": {"tags": ["\x00"]}}) + "\n"
    response = stream(api, batch.id, line.encode())
    assert response.status_code == 400
    assert error_of(response) == "Batch item 0: options.tags.0: contains a NUL character"


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("post", "/api/v1/tasks/hello%00world/trigger", "taskId"),
        ("get", "/api/v3/runs/run_%00", "runId"),
        ("post", "/api/v2/runs/run_%00/cancel", "runId"),
        ("post", "/api/v1/runs/run_%00/reschedule", "runId"),
        ("post", "/api/v1/runs/run_%00/replay", "runId"),
        ("get", "/api/v2/batches/batch_%00", "batchId"),
        ("get", "/api/v1/runs/run_%00/packets/payload", "runId"),
    ],
)
def test_a_nul_in_a_path_id_is_a_400_naming_the_parameter(api: Api, method: str, path: str, param: str) -> None:
    response = getattr(api, method)(path)
    assert_refused(response, param, "contains a NUL character")


@pytest.mark.parametrize(
    "name", ["filter[status]", "filter[taskIdentifier]", "filter[tag]", "filter[batch]", "filter[queue]", "page[after]"]
)
def test_a_nul_in_a_list_filter_is_a_400_naming_the_parameter(api: Api, name: str) -> None:
    response = api.get(f"/api/v1/runs?{name}=a%00b")
    assert_refused(response, name, "contains a NUL character")


# Text with the characters storage refuses mixed in, for the generated cases below.
hostile_text = st.lists(
    st.one_of(st.text(max_size=5), st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d\ude00"])), max_size=4
).map("".join)
hostile_json = st.recursive(
    st.one_of(st.none(), st.integers(), hostile_text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={"tags": st.lists(hostile_text, max_size=3), "metadata": st.dictionaries(hostile_text, hostile_json)},
    ),
    hostile_json,
    st.integers(0, 1200),
)
def test_hostile_text_and_nesting_in_a_trigger_get_a_4xx_naming_the_field(
    api: Api, trigger_options: dict[str, Any], payload: Any, depth: int
) -> None:
    if depth > 100:
        payload = json.loads("[" * depth + "]" * depth) if depth < 900 else payload
    raw = json.dumps({"payload": payload, "options": trigger_options})
    if depth >= 900:
        raw = '{"payload": ' + "[" * depth + "]" * depth + ', "options": ' + json.dumps(trigger_options) + "}"
    response = trigger_raw(api, raw)
    assert response.status_code < 500, response.content
    if response.status_code != 200:
        assert response.status_code in {400, 413, 422}
        param = response.json().get("param", "")
        assert param and param in error_of(response), response.content


@FUZZ
@given(
    hostile_text.filter(lambda text: "\x00" in text),
    st.sampled_from(["/api/v3/runs/{}", "/api/v1/runs?filter[tag]={}"]),
)
def test_hostile_text_in_an_id_or_filter_gets_a_400_never_a_500(api: Api, text: str, template: str) -> None:
    # Percent-encoded lone surrogates arrive replaced (U+FFFD): only the NUL reaches the view.
    encoded = quote(text.encode("utf-8", "surrogatepass"), safe="")
    response = api.get(template.format(encoded))
    assert response.status_code in {400, 404}, response.content


@pytest.mark.parametrize(
    "stored",
    ['{"note": "\\ud800"}', "[" * 5000 + "]" * 5000],
    ids=["lone-surrogate", "nested-5000-deep"],
)
def test_a_run_stored_with_an_unreadable_payload_is_still_retrieved(api: Api, dev: Environment, stored: str) -> None:
    run = factories.run(payload={"n": 1})
    Run.objects.filter(pk=run.id).update(payload=stored, payload_type="application/json")
    response = api.get(f"/api/v3/runs/{run.id}")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == run.id
