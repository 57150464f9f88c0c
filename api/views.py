"""REST endpoints of the Trigger.dev wire protocol: thin views over runs.engine."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from api import health, jwt, serializers
from api.auth import actor
from api.errors import ApiError, error_response
from api.http import ApiRequest, api_view, read_json_object
from runs import engine
from runs.models import Run
from runs.options import OptionError, parse_payload, parse_task_id, parse_trigger_options

REQUEST_KEY_HEADER = "x-trigger-request-idempotency-key"


@api_view("POST")
def trigger_task(request: ApiRequest, task_id: str) -> JsonResponse:
    """tasks.trigger: create a run (reference 3.1); a repeated request key returns the first."""
    body = read_json_object(request)
    request_key = request.headers.get(REQUEST_KEY_HEADER) or None
    if request_key is not None and len(request_key) > 128:
        raise ApiError(400, f"{REQUEST_KEY_HEADER} must be at most 128 characters")
    try:
        options = parse_trigger_options(body.get("options"))
        payload, payload_type = parse_payload(body.get("payload"), options.raw.get("payloadType"))
        task_id = parse_task_id(task_id)
    except OptionError as exc:
        raise ApiError(exc.status, exc.message) from exc
    environment = request.api_key.environment
    result = engine.trigger(
        environment=environment,
        task_id=task_id,
        payload=payload,
        payload_type=payload_type,
        options=options,
        actor=actor(request.api_key),
        source="api",
        request_key=request_key,
    )
    response = JsonResponse({"id": result.run.id, "isCached": result.is_cached})
    response["x-trigger-jwt"] = jwt.run_token(environment, result.run.id)
    return response


@api_view("GET")
def retrieve_run(request: ApiRequest, run_id: str) -> JsonResponse:
    """runs.retrieve (reference 3.4); runs of other environments are not found."""
    environment = request.api_key.environment
    run = Run.objects.select_related("parent", "root").filter(pk=run_id, environment=environment).first()
    if run is None:
        raise ApiError(404, "Run not found")
    children = list(run.children.order_by("created_at", "id"))
    return JsonResponse(serializers.run_detail(run, children))


@api_view("GET", authenticate=False)
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and operators; 503 only when the database is down."""
    status, body = health.report()
    return JsonResponse(body, status=status)


@api_view("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", authenticate=False)
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other path under /api/: a JSON 404, never an HTML page or a slash redirect."""
    return error_response(404, "Not found")
