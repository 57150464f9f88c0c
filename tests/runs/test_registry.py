"""The @task decorator and its defaults."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, TypedDict

import pytest
from pydantic import BaseModel, Field, ValidationError

from runs import engine, registry
from runs.models import TaskDefinition
from runs.registry import Retry, task


def test_a_decorated_function_is_registered_with_its_defaults() -> None:
    @task(id="test-registry-defaults", queue="reports", concurrency_limit=3, max_duration=60, machine="large-1x")
    def build_report(payload: Any) -> int:
        return 1

    spec = registry.get("test-registry-defaults")
    assert spec is not None
    assert (spec.queue, spec.concurrency_limit, spec.max_duration, spec.machine) == ("reports", 3, 60, "large-1x")
    assert spec.retry == Retry()
    assert spec.call({}) == 1


def test_the_default_queue_is_named_after_the_task() -> None:
    @task(id="test-registry-queue")
    def work() -> str:
        return "done"

    spec = registry.get("test-registry-queue")
    assert spec is not None and spec.queue == "task/test-registry-queue"
    assert spec.call({"ignored": True}) == "done"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "has spaces"}, "task id"),
        ({"id": "ok-id", "machine": "huge"}, "machine 'huge'"),
        ({"id": "ok-id", "concurrency_limit": -1}, "concurrency_limit"),
    ],
)
def test_invalid_task_declarations_are_refused_with_the_rule(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        task(**kwargs)


def test_two_functions_cannot_share_a_task_id() -> None:
    @task(id="test-registry-dup")
    def first() -> None: ...

    with pytest.raises(ValueError, match="already registered"):

        @task(id="test-registry-dup")
        def second() -> None: ...


def test_each_machine_preset_has_its_own_celery_queue() -> None:
    assert registry.celery_queue("small-1x") == "runyard.small-1x"
    assert len({registry.celery_queue(m) for m in registry.MACHINES}) == len(registry.MACHINES)


def test_a_region_with_workers_of_its_own_routes_to_its_queue(settings: Any) -> None:
    settings.RUNYARD_REGIONS = ["eu-central-1"]
    assert registry.celery_queue("large-1x", "eu-central-1") == "runyard.large-1x.eu-central-1"
    assert "runyard.micro.eu-central-1" in registry.worker_queues("eu-central-1")


def test_an_unknown_region_is_recorded_but_runs_on_the_shared_queue(settings: Any) -> None:
    settings.RUNYARD_REGIONS = []
    assert registry.celery_queue("small-1x", "us-east-1") == "runyard.small-1x"


# --- payload types -------------------------------------------------------------------------


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


class Order(BaseModel):
    sku: str = Field(description="Stock keeping unit")
    quantity: int = Field(ge=1)
    gift: bool = False
    colour: Colour = Colour.RED
    note: str | None = None


@dataclass
class Ping:
    host: str
    port: int = 443


class Greeting(TypedDict, total=False):
    name: str
    times: int


def test_a_pydantic_payload_type_gives_its_json_schema_and_arrives_as_a_model() -> None:
    @task(id="test-registry-typed-order")
    def place(order: Order) -> str:
        assert isinstance(order, Order)
        return f"{order.quantity} x {order.sku} in {order.colour.value}"

    spec = registry.get("test-registry-typed-order")
    assert spec is not None and spec.payload_type is Order
    schema = spec.payload_schema
    assert schema is not None and schema["type"] == "object" and schema["required"] == ["sku", "quantity"]
    assert schema["properties"]["sku"] == {"description": "Stock keeping unit", "title": "Sku", "type": "string"}
    assert schema["properties"]["gift"]["default"] is False
    assert schema["$defs"]["Colour"]["enum"] == ["red", "blue"]
    assert registry.definition_fields(spec)["payload_schema"] == schema
    assert spec.call({"sku": "A1", "quantity": 2, "colour": "blue"}) == "2 x A1 in blue"
    with pytest.raises(ValidationError):
        spec.call({"sku": "A1", "quantity": 0})


def test_dataclass_typeddict_and_plain_payload_types_give_schemas() -> None:
    @task(id="test-registry-typed-ping")
    def ping(target: Ping) -> int:
        return target.port

    @task(id="test-registry-typed-greeting")
    def greet(payload: Greeting) -> str:
        return payload.get("name", "?")

    @task(id="test-registry-typed-count")
    def count(payload: int) -> int:
        return payload

    ping_spec, greet_spec, count_spec = (
        registry.get(f"test-registry-typed-{n}") for n in ("ping", "greeting", "count")
    )
    assert ping_spec and greet_spec and count_spec
    assert ping_spec.payload_schema and ping_spec.payload_schema["required"] == ["host"]
    assert ping_spec.call({"host": "example.com"}) == 443  # a dataclass arrives built, defaults applied
    assert greet_spec.payload_schema and set(greet_spec.payload_schema["properties"]) == {"name", "times"}
    assert "required" not in greet_spec.payload_schema  # total=False
    assert greet_spec.call({"name": "Ada"}) == "Ada"  # a TypedDict stays a dict
    assert count_spec.payload_schema == {"type": "integer"}


def test_untyped_payloads_have_no_schema() -> None:
    @task(id="test-registry-untyped-any")
    def anything(payload: Any) -> None: ...

    @task(id="test-registry-untyped-bare")
    def bare(payload):  # type: ignore[no-untyped-def]
        return payload

    @task(id="test-registry-untyped-none")
    def nothing() -> None: ...

    for name in ("any", "bare", "none"):
        spec = registry.get(f"test-registry-untyped-{name}")
        assert spec is not None and spec.payload_schema is None and spec.payload_type is None
    bare_spec = registry.get("test-registry-untyped-bare")
    assert bare_spec is not None and bare_spec.call({"x": 1}) == {"x": 1}


def test_a_worker_records_the_payload_schema_of_its_tasks(db: None) -> None:
    @task(id="test-registry-recorded-order")
    def place(order: Order) -> None: ...

    spec = registry.get("test-registry-recorded-order")
    assert spec is not None
    engine.register_worker(hostname="w-schema", queues=["runyard.small-1x"], specs=[spec])
    recorded = TaskDefinition.objects.get(task_id="test-registry-recorded-order").payload_schema
    assert recorded == spec.payload_schema and recorded is not None and "sku" in recorded["properties"]


def test_in_process_tasks_are_validated_by_pydantic() -> None:
    @task(id="test-registry-validated-order")
    def place(order: Order) -> None: ...

    errors = registry.validate_payload("test-registry-validated-order", {"quantity": "x", "colour": "green"}, None)
    assert set(errors) == {"sku", "quantity", "colour"}
    assert errors["sku"] == "Field required"
    assert registry.validate_payload("test-registry-validated-order", {"sku": "A", "quantity": 1}, None) == {}


ORDER_SCHEMA = Order.model_json_schema()


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"sku": "A", "quantity": 1}, {}),
        ({"sku": "A", "quantity": 1, "note": None, "colour": "blue", "gift": True}, {}),
        ({}, {"sku": "is required", "quantity": "is required"}),
        ({"sku": 5, "quantity": 1.5}, {"sku": "must be a string", "quantity": "must be an integer"}),
        ({"sku": "A", "quantity": 0}, {"quantity": "must be at least 1"}),
        ({"sku": "A", "quantity": 1, "gift": "yes"}, {"gift": "must be true or false"}),
        ({"sku": "A", "quantity": 1, "colour": "green"}, {"colour": 'must be one of "red", "blue"'}),
        ({"sku": "A", "quantity": 1, "note": 3}, {"note": "must be a string"}),
        ([1], {"": "must be an object"}),
    ],
)
def test_the_json_schema_check_without_the_task_code(payload: Any, errors: dict[str, str]) -> None:
    # A task this process does not know: only the recorded schema is there to check against.
    assert registry.validate_payload("not-registered-here", payload, ORDER_SCHEMA) == errors


def test_the_schema_check_reports_nested_paths_and_string_bounds() -> None:
    schema = {
        "type": "object",
        "properties": {
            "to": {"type": "string", "pattern": "^[^@]+@[^@]+$", "minLength": 1},
            "lines": {"type": "array", "items": {"type": "object", "required": ["qty"]}},
        },
    }
    errors = registry.check_schema(schema, {"to": "nobody", "lines": [{"qty": 1}, {}]})
    assert errors == {"to": "must match the pattern ^[^@]+@[^@]+$", "lines.1.qty": "is required"}
    assert registry.check_schema(schema, {"to": ""}) == {"to": "must not be empty"}
