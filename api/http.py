"""Plumbing every API view shares: the view decorator and JSON body parsing."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from api.auth import authenticate_request
from api.errors import ApiError, error_response
from dashboard.bodysize import DEFAULT, BodyCap
from runs.models import ApiKey, TaskDefinition
from runs.packets import human_size
from runs.textcheck import UnstorableValue, check_json, check_text, deep_path, too_deep

log = logging.getLogger(__name__)

View = Callable[..., HttpResponseBase]


class ApiRequest(HttpRequest):
    """A request that passed API key authentication."""

    api_key: ApiKey
    task_definitions: dict[str, TaskDefinition | None]  # api_view(reads_task=True) only


def api_view(
    *methods: str, authenticate: bool = True, reads_task: bool = False, body: BodyCap = DEFAULT
) -> Callable[[View], View]:
    """Method check, API key auth and JSON errors (never an HTML page or a bare 500).

    API clients send a bearer key, not cookies: CSRF-exempt and login-not-required.
    reads_task: the key's query also reads the definition of the URL's task_id, for the view
    to hand to the engine (request.task_definitions; see api.auth.authenticate_request).
    body: the largest request body, refused with 413 before the view runs
    (dashboard.bodysize); forms and JSON bodies get DATA_UPLOAD_MAX_MEMORY_SIZE.
    """
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in allowed:
                response = error_response(405, f"Method {request.method} not allowed")
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            try:
                check_url(request, kwargs)
                if authenticate:
                    task_id = kwargs["task_id"] if reads_task else None
                    cast(ApiRequest, request).api_key = authenticate_request(request, task_id)
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.message, exc.param)
            except RequestDataTooBig:
                limit = human_size(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
                return error_response(413, f"Request body is too large: the limit is {limit}")
            except (OperationalError, InterfaceError) as exc:
                return database_unavailable(request, exc)
            except Exception:
                log.exception("API request %s %s failed", request.method, request.path)
                return error_response(500, "Something went wrong")

        wrapper.body_cap = body  # type: ignore[attr-defined]
        wrapper.json_errors = True  # type: ignore[attr-defined]
        return csrf_exempt(login_not_required(wrapper))

    return decorate


DATABASE_RETRY_AFTER = 5  # seconds


def database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponseBase:
    """503 while PostgreSQL cannot be reached (down, restarting, out of connections).

    The SDK retries 5xx, so a restart of the database costs callers a delay, not an error.
    Nothing was created: the trigger's transaction could not commit.
    """
    log.warning("API request %s %s: database unavailable: %s", request.method, request.path, exc)
    response = error_response(503, "The database is unavailable; retry in a few seconds")
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def read_body(request: HttpRequest, limit: int | None = None, too_large: str = "") -> bytes:
    """The request body, at most `limit` bytes (None: DATA_UPLOAD_MAX_MEMORY_SIZE, request.body).

    The view's cap (api_view(body=...)) has refused a larger body already; this repeats it
    for a view called without the middleware. Over the limit is ApiError(413, too_large):
    decided from Content-Length alone when the client declares it (nothing is read), else
    by reading at most limit + 1 bytes.
    """
    if limit is None:
        return request.body
    too_large = too_large or f"Request body is too large: the limit is {human_size(limit)}"
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, too_large)
    data = request.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, too_large)
    return data


def check_url(request: HttpRequest, kwargs: dict[str, Any]) -> None:
    """Refuse a NUL or lone surrogate in a path parameter or the query string (ApiError 400).

    No id, task id or filter value can contain one, and PostgreSQL would refuse the query
    that looked it up: one check here spares every view and filter its own.
    """
    try:
        for name, value in kwargs.items():
            if isinstance(value, str):
                check_text(value, _camel(name))
        for name, values in request.GET.lists():
            check_text(name, name)
            for value in values:
                check_text(value, name)
    except UnstorableValue as exc:
        raise ApiError(400, exc.message, exc.field) from exc


def read_json_object(request: HttpRequest, limit: int | None = None, too_large: str = "") -> dict[str, Any]:
    """The request body as a JSON object; an empty body is `{}`. Raises ApiError(400, 413).

    Every field must be storable (runs.textcheck), naming the field that is not: no lone
    surrogate, nesting at most MAX_DEPTH levels, and no NUL except in `payload`, a JSON
    value that is stored as escaped JSON text.
    """
    raw = read_body(request, limit, too_large)
    if not raw:
        return {}
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ApiError(400, f"Request body is not valid JSON: {exc.msg} at {where}") from exc
    except UnicodeDecodeError as exc:
        raise ApiError(400, "Request body is not valid UTF-8") from exc
    except RecursionError as exc:
        error = too_deep(".".join(deep_path(raw.decode("utf-8", "replace"))) or "Request body")
        raise ApiError(400, error.message, None if error.field == "Request body" else error.field) from exc
    except ValueError as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, f"Request body must be a JSON object, not {_json_type(body)}")
    check_fields(body)
    return body


def check_fields(body: dict[str, Any]) -> None:
    """ApiError(400) naming the first field of a JSON body that cannot be stored."""
    try:
        for key, value in body.items():
            check_text(key, key)
            check_json(value, key, nul=key != "payload")
    except UnstorableValue as exc:
        raise ApiError(400, exc.message, exc.field) from exc


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def positive_param(value: str | None, field: str, *, default: int, most: int) -> int:
    """A positive integer query parameter (`default` when absent). Raises ApiError(400)."""
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ApiError(400, f"{field} must be a positive integer", field)
    if int(value) > most:
        raise ApiError(400, f"{field} must be at most {most}", field)
    return int(value)
