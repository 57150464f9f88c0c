"""Large payloads and outputs (reference 3.9): packet URLs, signed object URLs, stored payloads.

The SDK uploads a payload of 128 KiB or more itself: `PUT /api/v2/packets/{path}` gives it
a signed upload URL, it PUTs the bytes there without an API key, then triggers with
`payloadType: "application/store"` and the path as payload. Runyard offloads inline
payloads and outputs over RUNYARD_PACKET_OFFLOAD_BYTES the same way. Every path lives under
the caller's environment (runs.packets.storage_key).

Signed URLs are this server's `/api/objects/{key}?expires=...&signature=...`: an HMAC keyed
by SECRET_KEY (or one of SECRET_KEY_FALLBACKS while a new key rolls out) over the method, the
expiry and the key, so a download URL cannot be used to overwrite the object and no URL
outlives RUNYARD_PACKET_URL_TTL: an `expires` further ahead than that is refused even when
signed. An upload URL also carries a random nonce and works once; a second PUT is 403.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any
from urllib.parse import urlencode

import redis
from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from api.errors import ApiError
from api.http import ApiRequest, api_view, read_body
from dashboard.bodysize import PAYLOAD
from runs import packets, storage
from runs.models import Environment, Run
from runs.options import OptionError, parse_payload
from runs.redis_client import redis_client

SIGNATURE_SALT = "runyard.api.packets.signed-url"
USED_UPLOAD_PREFIX = "runyard:used-upload:"  # Redis keys: upload URLs already PUT to
EXPIRES_DIGITS = 12  # a Unix time in seconds; longer is not a time (and int() of it is slow)

log = logging.getLogger(__name__)
PACKET_KINDS = ("payload", "output")


def payload_too_large() -> str:
    return f"Payload is too large: the limit is {packets.human_size(settings.RUNYARD_MAX_PAYLOAD_BYTES)}"


# --- API key endpoints --------------------------------------------------------------------


@api_view("PUT")
def create_upload_url(request: ApiRequest, filename: str) -> JsonResponse:
    """PUT /api/v2/packets/{filename}: where the SDK uploads a large payload (no body)."""
    return _upload_url(request, filename)


@api_view("GET", "PUT")
def packet_url(request: ApiRequest, filename: str) -> JsonResponse:
    """/api/v1/packets/{filename}: GET a download URL for a stored packet (PUT as in v2)."""
    if request.method == "PUT":
        return _upload_url(request, filename)
    key = _key(request.api_key.environment, filename)
    if not storage.exists(key):
        raise ApiError(404, f"Packet {filename} not found")
    return JsonResponse({"presignedUrl": signed_url(request, key, "GET")})


@api_view("GET")
def run_packet_url(request: ApiRequest, run_id: str, kind: str) -> JsonResponse:
    """/api/v1/runs/{runId}/packets/{payload|output}: a download URL for an offloaded packet."""
    if kind not in PACKET_KINDS:
        raise ApiError(404, "Not found")
    run = Run.objects.filter(pk=run_id, environment=request.api_key.environment).first()
    if run is None:
        raise ApiError(404, "Run not found")
    data, content_type = (run.payload, run.payload_type) if kind == "payload" else (run.output, run.output_type)
    if content_type != packets.STORE or not data:
        raise ApiError(404, f"Run {run_id} has no offloaded {kind}")
    return JsonResponse({"presignedUrl": download_url(request, run.environment_id, data)})


def _upload_url(request: ApiRequest, filename: str) -> JsonResponse:
    # storagePath is the path as given: the trigger names it, and _key scopes it again.
    key = _key(request.api_key.environment, filename)
    if filename.startswith(packets.RUNYARD_PREFIX):
        # Payloads and outputs Runyard offloaded stay as written: no client overwrites them.
        raise ApiError(400, f"storage paths under {packets.RUNYARD_PREFIX} are Runyard's own")
    return JsonResponse({"presignedUrl": signed_url(request, key, "PUT"), "storagePath": filename})


def _key(environment: Environment, path: str) -> str:
    try:
        return packets.storage_key(environment.pk, path)
    except storage.InvalidKey as exc:
        raise ApiError(400, str(exc)) from exc


# --- signed URLs (no API key) -------------------------------------------------------------


@api_view("GET", "PUT", authenticate=False, body=PAYLOAD)
def signed_object(request: HttpRequest, key: str) -> HttpResponseBase:
    """GET serves a stored object with its Content-Type; PUT stores the body (SDK upload)."""
    _verify(request, key)
    if request.method == "PUT":
        return _store_upload(request, key)
    try:
        stored = storage.open_object(key)
    except storage.ObjectNotFound as exc:
        raise ApiError(404, "Object not found") from exc
    response = FileResponse(stored.stream, content_type=stored.content_type)
    response["Content-Length"] = str(stored.size)
    # The bytes are the uploader's: never let a browser run them on this origin.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response


def _store_upload(request: HttpRequest, key: str) -> HttpResponse:
    data = read_body(request, settings.RUNYARD_MAX_PAYLOAD_BYTES, payload_too_large())
    try:
        content_type = storage.check_content_type(request.content_type or storage.DEFAULT_CONTENT_TYPE)
    except storage.StorageError as exc:
        raise ApiError(400, str(exc)) from exc
    used = _claim_upload(request)
    try:
        storage.put(key, data, content_type)
    except Exception:
        # A failing store is the server's problem: a 500, which the SDK retries with the same URL.
        _release_upload(used)
        raise
    return HttpResponse(status=200)


def _claim_upload(request: HttpRequest) -> str:
    """Mark this upload URL used (until it expires); 403 when it already was."""
    used = USED_UPLOAD_PREFIX + request.GET["signature"]
    remaining = max(1, int(request.GET["expires"]) - math.floor(timezone.now().timestamp()) + 1)
    try:
        claimed = redis_client().set(used, 1, nx=True, ex=remaining)
    except redis.RedisError as exc:
        log.warning("Upload refused: Redis is unavailable to record its URL as used (%s)", exc)
        raise ApiError(503, "Uploads are unavailable for a moment (Redis cannot be reached); retry") from exc
    if not claimed:
        raise ApiError(403, "This upload URL has already been used: ask for a new one")
    return used


def _release_upload(used: str) -> None:
    try:
        redis_client().delete(used)
    except redis.RedisError:
        log.warning("Upload URL stays marked used after a failed store: Redis is unavailable")


def signed_url(request: HttpRequest, key: str, method: str) -> str:
    """An absolute URL that allows `method` on the object under key until the TTL ends."""
    # Rounded up: a URL works for at least the TTL.
    expires = math.ceil(timezone.now().timestamp()) + settings.RUNYARD_PACKET_URL_TTL
    # Upload URLs are single-use, so each must differ from the next for the same path.
    nonce = secrets.token_urlsafe(12) if method == "PUT" else ""
    fields = {"expires": expires} | ({"nonce": nonce} if nonce else {})
    query = urlencode(fields | {"signature": _signature(method, key, expires, nonce)})
    return request.build_absolute_uri(f"{reverse('api-packet-object', kwargs={'key': key})}?{query}")


def download_url(request: HttpRequest, environment_id: int, path: str) -> str:
    return signed_url(request, packets.storage_key(environment_id, path), "GET")


def _signature(method: str, key: str, expires: int, nonce: str = "", secret: str | None = None) -> str:
    message = f"{method}\n{expires}\n{key}" + (f"\n{nonce}" if nonce else "")
    return salted_hmac(SIGNATURE_SALT, message, secret=secret, algorithm="sha256").hexdigest()


def _verify(request: HttpRequest, key: str) -> None:
    method = "GET" if request.method == "HEAD" else str(request.method)
    expires, signature = request.GET.get("expires", ""), request.GET.get("signature", "")
    nonce = request.GET.get("nonce", "")
    if not (expires.isdigit() and len(expires) <= EXPIRES_DIGITS) or not any(
        constant_time_compare(signature, _signature(method, key, int(expires), nonce, secret))
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    ):
        raise ApiError(403, "Invalid signature")
    now = timezone.now().timestamp()
    if int(expires) < now:
        raise ApiError(403, "This URL has expired")
    if int(expires) > math.ceil(now) + settings.RUNYARD_PACKET_URL_TTL:
        # Signed by this server, but with a lifetime longer than it grants (a key that leaked
        # with a longer TTL, or a clock far off): refused rather than honoured for years.
        raise ApiError(403, "This URL expires later than RUNYARD_PACKET_URL_TTL allows")


# --- payloads of triggers -----------------------------------------------------------------


def accept_payload(payload: Any, payload_type: Any, environment: Environment) -> tuple[str, str]:
    """(data, content type) a trigger stores: a stored packet's path, or the inline payload,
    offloaded when it is large. Raises ApiError (400 shape, 413 size, 422 missing packet)."""
    if payload_type == packets.STORE:
        return _stored_payload(payload, environment), packets.STORE
    try:
        data, content_type = parse_payload(payload, payload_type)
        packets.check_size(data, settings.RUNYARD_MAX_PAYLOAD_BYTES, "Payload")
    except OptionError as exc:
        raise ApiError(exc.status, exc.message, exc.field) from exc
    except packets.PacketTooLarge as exc:
        raise ApiError(413, payload_too_large()) from exc
    path = packets.new_path("payload", content_type)
    return packets.offload(data, content_type, environment_id=environment.pk, path=path)


def _stored_payload(path: Any, environment: Environment) -> str:
    if not isinstance(path, str) or not path:
        raise ApiError(400, "payload must be the storage path when options.payloadType is application/store")
    info = storage.head(_key(environment, path))
    if info is None:
        raise ApiError(422, f"Stored payload {path} not found: upload it with PUT /api/v2/packets/{path} first")
    if info.size > settings.RUNYARD_MAX_PAYLOAD_BYTES:
        raise ApiError(413, payload_too_large())
    if info.content_type not in packets.DECODABLE:
        allowed = ", ".join(packets.DECODABLE)
        raise ApiError(422, f"Stored payload {path} has content type {info.content_type}; use one of {allowed}")
    return path
