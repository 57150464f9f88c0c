"""Run metadata as the official SDK reads and writes it (apiClient.getRunMetadata and
updateRunMetadata, which `metadata.flush()` inside a task calls): thin views over
runs.engine.metadata."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from api.errors import ApiError
from api.http import ApiRequest, api_view, read_json_object
from runs import engine
from runs.metadata import MetadataError, parse_change


@api_view("GET", "PUT")
def run_metadata(request: ApiRequest, run_id: str) -> JsonResponse:
    """GET: {metadata}. PUT {metadata?, operations?, parentOperations?, rootOperations?}:
    the change applied, then {metadata} as it is after."""
    environment_id = request.api_key.environment_id
    try:
        if request.method == "PUT":
            metadata = _update(run_id, environment_id, read_json_object(request))
        else:
            metadata = engine.read_metadata(run_id=run_id, environment_id=environment_id)
    except engine.RunNotFound as exc:
        raise ApiError(404, "Run not found") from exc
    return JsonResponse({"metadata": metadata})


def _update(run_id: str, environment_id: int, body: dict[str, Any]) -> dict[str, Any]:
    try:
        change = parse_change(body)
        return engine.update_metadata(run_id=run_id, change=change, environment_id=environment_id)
    except MetadataError as exc:
        raise ApiError(exc.status, exc.message, exc.field) from exc
    except engine.MetadataTooLarge as exc:
        raise ApiError(exc.error.status, exc.error.message, exc.error.field) from exc
    except engine.RunFinished as exc:
        raise ApiError(422, str(exc)) from exc
