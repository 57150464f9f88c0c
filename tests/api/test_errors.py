from __future__ import annotations

import pytest
from django.http import HttpRequest, JsonResponse
from django.test import RequestFactory

from api.http import api_view

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["/api/v9/nothing", "/api/", "/api/v3/runs/run_x/", "/api/v1/tasks/hello/trigger/", "/api/v3/runs"]
)
def test_unknown_path_under_api_is_a_json_404_without_redirect(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()
    assert "x-should-retry" not in response


def test_wrong_method_is_a_json_405(api):
    response = api.get("/api/v1/tasks/hello-world/trigger")
    assert response.status_code == 405
    assert response.json() == {"error": "Method GET not allowed"}
    assert response["Allow"] == "POST"


def test_run_retrieve_does_not_accept_post(api):
    assert api.post("/api/v3/runs/run_x").status_code == 405


def test_unexpected_exception_is_a_json_500_and_is_logged(caplog):
    @api_view("GET", authenticate=False)
    def broken(request: HttpRequest) -> JsonResponse:
        raise RuntimeError("database exploded")

    response = broken(RequestFactory().get("/api/broken"))
    assert response.status_code == 500
    assert response.content == b'{"error": "Something went wrong"}'
    assert "database exploded" in caplog.text


def test_too_large_body_is_413(api, settings):
    # A JSON action: DATA_UPLOAD_MAX_MEMORY_SIZE is its cap (a trigger's is the payload limit).
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post("/api/v3/batches", {"runCount": 1, "pad": "x" * 2000})
    assert response.status_code == 413
