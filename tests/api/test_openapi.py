"""GET /api/openapi.json: a valid OpenAPI 3.1 document that matches api/urls.py route for route."""

from __future__ import annotations

import re

import jsonschema_rs
import pytest
import schemathesis
from django.test import Client

from api import openapi, urls

METHODS = ("get", "post", "put", "patch", "delete")
CATCH_ALL = "api-not-found"


def openapi_path(route: str) -> str:
    """A Django route ("api/v3/runs/<str:run_id>") as an OpenAPI path ("/api/v3/runs/{runId}")."""

    def camel(found: re.Match[str]) -> str:
        head, *rest = found[1].split("_")
        return "{" + head + "".join(part.title() for part in rest) + "}"

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", camel, route)


def routes() -> set[str]:
    return {openapi_path(str(p.pattern)) for p in urls.urlpatterns if p.name != CATCH_ALL}


def test_the_document_is_served_without_an_api_key(client: Client) -> None:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json() == openapi.DOCUMENT
    assert response.json()["openapi"].startswith("3.1")


def test_every_route_is_documented_and_every_documented_path_is_routed() -> None:
    assert routes() == set(openapi.DOCUMENT["paths"])


def test_the_catch_all_is_the_only_route_left_out() -> None:
    left_out = [p.name for p in urls.urlpatterns if openapi_path(str(p.pattern)) not in openapi.DOCUMENT["paths"]]
    assert left_out == [CATCH_ALL]


def example(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda found: "payload" if found[1] == "kind" else f"x_{found[1]}", path)


@pytest.mark.django_db
def test_documented_methods_are_exactly_the_allowed_ones(client: Client) -> None:
    """An undocumented method answers 405; a documented one never does."""
    for path, operations in openapi.DOCUMENT["paths"].items():
        for method in METHODS:
            status = getattr(client, method)(example(path)).status_code
            if method in operations:
                assert status != 405, f"{method.upper()} {path} is documented but not allowed"
            else:
                assert status == 405, f"{method.upper()} {path} answers {status} but is not documented"


def test_every_operation_has_an_id_a_summary_and_its_error_shapes() -> None:
    ids = []
    for path, operations in openapi.DOCUMENT["paths"].items():
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            assert operation["summary"], f"{method} {path}"
            for status, response in operation["responses"].items():
                if status >= "400" and not (path == "/healthz" and status == "503"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path} {status}"
    assert len(ids) == len(set(ids))


def test_authenticated_operations_document_the_401() -> None:
    for path, operations in openapi.DOCUMENT["paths"].items():
        for method, operation in operations.items():
            if operation.get("security", openapi.DOCUMENT["security"]):
                assert "401" in operation["responses"], f"{method} {path}"


def test_the_security_scheme_is_a_bearer_token() -> None:
    assert openapi.DOCUMENT["security"] == [{"bearerAuth": []}]
    assert openapi.DOCUMENT["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": openapi.DOCUMENT["components"]["securitySchemes"]["bearerAuth"]["description"],
    }


def test_every_schema_is_valid_json_schema_and_the_document_loads_in_schemathesis() -> None:
    for name, schema in openapi.DOCUMENT["components"]["schemas"].items():
        try:
            jsonschema_rs.meta.validate(schema)
        except jsonschema_rs.ValidationError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{name}: {exc}")
    schema = schemathesis.openapi.from_dict(openapi.DOCUMENT)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in openapi.DOCUMENT["paths"].values())
