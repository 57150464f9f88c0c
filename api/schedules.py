"""schedules.create, retrieve, update, list, activate, deactivate, del and timezones, as the
official SDK calls them: thin views over runs.engine.schedules, which audits each change.

The shapes are runs.schedule_items'. Beyond the reference, create and update take Runyard's
payload, options, overlap and missed, and every schedule returned carries them.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from api.auth import actor
from api.errors import ApiError
from api.http import ApiRequest, api_view, positive_param, read_json_object
from runs import engine, schedule_items
from runs.models import Schedule
from runs.schedule_spec import ScheduleSpecError, parse_schedule

# Fields whose bad values are well-formed but not acceptable (422, as the reference answers an
# invalid cron expression or time zone); any other field's are malformed (400).
MEANING_FIELDS = ("cron", "timezone", "window", "options")


@api_view("GET", "POST")
def schedules(request: ApiRequest) -> JsonResponse:
    """POST: schedules.create (an upsert by deduplicationKey). GET: schedules.list."""
    if request.method == "POST":
        return _create(request)
    page = positive_param(request.GET.get("page"), "page", default=1, most=schedule_items.MAX_PAGE)
    most = schedule_items.MAX_PER_PAGE
    per_page = positive_param(request.GET.get("perPage"), "perPage", default=schedule_items.DEFAULT_PER_PAGE, most=most)
    return JsonResponse(schedule_items.page(request.api_key.environment, page, per_page, timezone.now()))


def _create(request: ApiRequest) -> JsonResponse:
    try:
        spec = parse_schedule(read_json_object(request))
    except ScheduleSpecError as exc:
        raise _invalid(exc) from exc
    environment = request.api_key.environment
    try:
        schedule, _ = engine.create_schedule(environment=environment, spec=spec, actor=actor(request.api_key))
    except engine.DeclarativeSchedule as exc:
        raise ApiError(422, str(exc), "deduplicationKey") from exc
    return _answer(request, schedule)


@api_view("GET", "PUT", "DELETE")
def schedule(request: ApiRequest, schedule_id: str) -> JsonResponse:
    """GET: schedules.retrieve. PUT: schedules.update. DELETE: schedules.del ({id})."""
    environment_id, who = request.api_key.environment_id, actor(request.api_key)
    try:
        if request.method == "GET":
            return _answer(request, engine.find_schedule(environment_id=environment_id, schedule_id=schedule_id))
        if request.method == "DELETE":
            engine.delete_schedule(environment_id=environment_id, schedule_id=schedule_id, actor=who)
            return JsonResponse({"id": schedule_id})
        return _update(request, schedule_id)
    except engine.ScheduleNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except engine.DeclarativeSchedule as exc:
        raise ApiError(422, str(exc)) from exc


def _update(request: ApiRequest, schedule_id: str) -> JsonResponse:
    body = read_json_object(request)
    environment_id = request.api_key.environment_id
    found = engine.find_schedule(environment_id=environment_id, schedule_id=schedule_id)
    try:
        spec = schedule_items.update_spec(found, body)
    except ScheduleSpecError as exc:
        raise _invalid(exc) from exc
    who = actor(request.api_key)
    return _answer(
        request, engine.update_schedule(environment_id=environment_id, schedule_id=found.id, spec=spec, actor=who)
    )


@api_view("POST")
def activate(request: ApiRequest, schedule_id: str) -> JsonResponse:
    """schedules.activate: its next tick is the first after now."""
    return _set_active(request, schedule_id, True)


@api_view("POST")
def deactivate(request: ApiRequest, schedule_id: str) -> JsonResponse:
    """schedules.deactivate: no tick fires until it is activated again."""
    return _set_active(request, schedule_id, False)


@api_view("GET", authenticate=False)
def timezones(request: HttpRequest) -> JsonResponse:
    """schedules.timezones: the official SDK sends no API key for it, as the reference takes none."""
    exclude = request.GET.get("excludeUtc", "false")
    if exclude not in ("true", "false"):
        raise ApiError(400, "excludeUtc must be true or false", "excludeUtc")
    return JsonResponse({"timezones": schedule_items.timezones(exclude_utc=exclude == "true")})


def _set_active(request: ApiRequest, schedule_id: str, active: bool) -> JsonResponse:
    try:
        changed = engine.set_schedule_active(
            environment_id=request.api_key.environment_id,
            schedule_id=schedule_id,
            active=active,
            actor=actor(request.api_key),
            reason=f"{'activated' if active else 'deactivated'} through the API",
        )
    except engine.ScheduleNotFound as exc:
        raise ApiError(404, str(exc)) from exc
    return _answer(request, changed)


def _answer(request: ApiRequest, found: Schedule) -> JsonResponse:
    return JsonResponse(schedule_items.item(found, request.api_key.environment, timezone.now()))


def _invalid(exc: ScheduleSpecError) -> ApiError:
    missing = exc.message.endswith(" is required")
    meaning = exc.field.split(".")[0] in MEANING_FIELDS and not missing
    return ApiError(422 if meaning else 400, exc.message, exc.field)
