"""REST endpoints of the Trigger.dev wire protocol: thin views over runs.engine."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from api import health, jwt, packets, runs_list, serializers
from api.auth import actor
from api.errors import ApiError, error_response
from api.http import ApiRequest, api_view, read_json_object
from dashboard.bodysize import PAYLOAD
from runs import engine, logs
from runs.engine import try_cancel_run
from runs.models import Run, Schedule
from runs.options import OptionError, parse_delay, parse_task_id, parse_trigger_options

REQUEST_KEY_HEADER = "x-trigger-request-idempotency-key"


@api_view("POST", reads_task=True, body=PAYLOAD)
def trigger_task(request: ApiRequest, task_id: str) -> JsonResponse:
    """tasks.trigger: create a run (reference 3.1); a repeated request key returns the first."""
    # The payload limit bounds the whole body, refused from Content-Length before reading.
    body = read_json_object(request, settings.RUNYARD_MAX_PAYLOAD_BYTES, packets.payload_too_large())
    request_key = request.headers.get(REQUEST_KEY_HEADER) or None
    if request_key is not None and len(request_key) > 128:
        raise ApiError(400, f"{REQUEST_KEY_HEADER} must be at most 128 characters")
    now = timezone.now()  # one clock for the delay and the run's creation
    try:
        options = parse_trigger_options(body.get("options"), now=now)
        task_id = parse_task_id(task_id)
    except OptionError as exc:
        raise ApiError(exc.status, exc.message, exc.field) from exc
    environment = request.api_key.environment
    payload, payload_type = packets.accept_payload(body.get("payload"), options.raw.get("payloadType"), environment)
    result = engine.trigger(
        environment=environment,
        task_id=task_id,
        payload=payload,
        payload_type=payload_type,
        options=options,
        actor=actor(request.api_key),
        source="api",
        request_key=request_key,
        now=now,
        definitions=request.task_definitions,
    )
    response = JsonResponse({"id": result.run.id, "isCached": result.is_cached})
    response["x-trigger-jwt"] = jwt.run_token(environment, result.run.id)
    return response


@api_view("GET")
def retrieve_run(request: ApiRequest, run_id: str) -> JsonResponse:
    """runs.retrieve (reference 3.4); runs of other environments are not found."""
    return JsonResponse(_run_body(request, run_id))


def _run_body(request: ApiRequest, run_id: str) -> dict[str, object]:
    environment = request.api_key.environment
    run = Run.objects.select_related("parent", "root").filter(pk=run_id, environment=environment).first()
    if run is None:
        raise ApiError(404, "Run not found")
    children = list(run.children.order_by("created_at", "id"))
    # A deleted schedule's runs keep its id; the reference then shows no schedule.
    schedule = Schedule.objects.filter(pk=run.schedule_id, environment=environment).first() if run.schedule_id else None
    return serializers.run_detail(run, children, request=request, schedule=schedule)


@api_view("POST")
def cancel_run(request: ApiRequest, run_id: str) -> JsonResponse:
    """runs.cancel (reference 3.6): a final run is left as it is and still answers 200."""
    run = _run_of(request, run_id)
    try_cancel_run(run_id=run.id, actor=actor(request.api_key), reason="canceled through the API")
    return JsonResponse({"id": run.id})


@api_view("POST")
def reschedule_run(request: ApiRequest, run_id: str) -> JsonResponse:
    """runs.reschedule (reference 3.7): only delayed runs; answers the whole run."""
    body = read_json_object(request)
    run = _run_of(request, run_id)
    try:
        delay_until = parse_delay(body.get("delay"), timezone.now())
        engine.reschedule_run(
            run_id=run.id,
            delay_until=delay_until,
            actor=actor(request.api_key),
            audit_reason="rescheduled through the API",
        )
    except OptionError as exc:
        raise ApiError(400, f"Invalid delay: {body.get('delay')!r}", "delay") from exc
    except engine.EngineError as exc:
        raise ApiError(400, str(exc)) from exc
    return JsonResponse(_run_body(request, run_id))


@api_view("GET")
def list_runs(request: ApiRequest) -> JsonResponse:
    """runs.list (reference 3.5): the environment's runs, newest first, a page at a time."""
    return JsonResponse(runs_list.list_runs(request.api_key.environment, request.GET, timezone.now()))


@api_view("GET")
def run_logs(request: ApiRequest, run_id: str) -> JsonResponse:
    """A page of the run's log lines, oldest first, and what each attempt's logs hold."""
    run = _run_of(request, run_id)
    try:
        query = logs.parse_query(request.GET)
    except OptionError as exc:
        raise ApiError(400, exc.message, exc.field) from exc
    page = logs.page(run.id, query)
    return JsonResponse(
        {
            "data": [logs.as_json(line) for line in page.lines],
            "pagination": {"next": page.next},
            "attempts": logs.attempts_json(run.id),
        }
    )


# ReplayRunRequestBody is strict: any other key is refused. Wire key -> TriggerOptions field
# of the options replay_run would otherwise copy from the original (None: not copied).
REPLAY_KEYS: dict[str, str | None] = {
    "payload": None,
    "payloadType": None,
    "metadata": "metadata",
    "tags": "tags",
    "queue": "queue",
    "concurrencyKey": "concurrency_key",
    "machine": "machine",
    "version": None,  # accepted and ignored: Runyard has no deployed versions
    "region": "region",
    "delay": None,
    "ttl": None,
    "idempotencyKey": None,  # used as given: the SDK does not hash it here
    "idempotencyKeyTTL": None,
    "maxAttempts": "max_attempts",
    "maxDuration": "max_duration",
    "priority": "priority",
}
REPLAY_PAYLOAD_TYPES = ("application/json", "application/super+json")


@api_view("POST", body=PAYLOAD)
def replay_run(request: ApiRequest, run_id: str) -> JsonResponse:
    """runs.replay (reference 3.8): a new run of the same task, in any status; answers its id."""
    body = read_json_object(request, settings.RUNYARD_MAX_PAYLOAD_BYTES, packets.payload_too_large())
    original = _run_of(request, run_id)
    if unknown := sorted(set(body) - set(REPLAY_KEYS)):
        raise ApiError(400, f"Unknown replay option: {unknown[0]}", unknown[0])
    given = {key: value for key, value in body.items() if value is not None}
    now = timezone.now()
    try:
        # The payload is not an option: it would be kept with the options (Run.options).
        options = parse_trigger_options({k: v for k, v in given.items() if k != "payload"}, now=now)
    except OptionError as exc:
        raise ApiError(exc.status, exc.message, exc.field) from exc
    replay = engine.replay_run(
        run_id=original.id,
        actor=actor(request.api_key),
        options=options,
        payload=_replay_payload(given, original),
        overridden={field for key in given if (field := REPLAY_KEYS[key])},
        request_key=request.headers.get(REQUEST_KEY_HEADER) or None,
        changed=sorted(given),
        audit_reason="replayed through the API",
        now=now,
    )
    return JsonResponse({"id": replay.run.id})


def _replay_payload(given: dict[str, Any], original: Run) -> tuple[str, str] | None:
    payload_type = given.get("payloadType")
    if payload_type is not None and payload_type not in REPLAY_PAYLOAD_TYPES:
        raise ApiError(400, f"payloadType must be one of {', '.join(REPLAY_PAYLOAD_TYPES)}")
    if "payload" not in given:
        return None
    if payload_type == "application/super+json" and not isinstance(given["payload"], str):
        raise ApiError(400, "payload must be a SuperJSON string when payloadType is application/super+json")
    return packets.accept_payload(given["payload"], payload_type, original.environment)


def _run_of(request: ApiRequest, run_id: str) -> Run:
    run = Run.objects.filter(pk=run_id, environment=request.api_key.environment).first()
    if run is None:
        raise ApiError(404, "Run not found")
    return run


@api_view("GET", authenticate=False)
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and operators; 503 only when the database is down."""
    status, body = health.report()
    return JsonResponse(body, status=status)


@api_view("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", authenticate=False)
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other path under /api/: a JSON 404, never an HTML page or a slash redirect."""
    return error_response(404, "Not found")
