"""Large payloads over the wire (reference 3.9): packet URLs, signed URLs, offload, size limits."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import time_machine
from django.core.handlers.asgi import ASGIRequest
from django.test import Client
from django.utils import timezone

from api import views
from runs import packets, storage
from runs.models import Run
from tests import factories

PATH = "trigger/packet_ixq2kn14jzju6fndh1tbt/payload.json"
SUPERJSON_PAYLOAD = '{"json":{"hello":"world","n":[1,2]}}'
MiB = 1024 * 1024


@pytest.fixture
def anonymous() -> Client:
    """A client with no API key and no session, as the SDK's fetch of a presigned URL."""
    return Client()


def upload(api, anonymous: Client, path: str = PATH, data: str = SUPERJSON_PAYLOAD) -> dict[str, Any]:
    """What the SDK does for a payload of 128 KiB or more: ask for a URL, PUT the bytes there."""
    answer = api.client.put(f"/api/v2/packets/{path}", content_type="application/json", headers=api.headers())
    assert answer.status_code == 200, answer.content
    body = answer.json()
    stored = anonymous.put(body["presignedUrl"], data=data, content_type="application/super+json")
    assert stored.status_code == 200, stored.content
    return body


def trigger_stored(api, path: str = PATH) -> Any:
    options = {"payloadType": "application/store", "payloadSize": len(SUPERJSON_PAYLOAD)}
    return api.trigger(body={"payload": path, "options": options})


def with_query(url: str, **changes: str) -> str:
    parsed = urlparse(url)
    query = {key: values[0] for key, values in parse_qs(parsed.query).items()} | changes
    return parsed._replace(query=urlencode(query)).geturl()


# --- the SDK's upload flow ----------------------------------------------------------------


def test_upload_trigger_retrieve_and_download_like_the_sdk(api, anonymous: Client) -> None:
    body = upload(api, anonymous)
    assert body["storagePath"] == PATH
    assert body["presignedUrl"].startswith("http://testserver/")

    triggered = trigger_stored(api)
    assert triggered.status_code == 200, triggered.content
    run = Run.objects.get(pk=triggered.json()["id"])
    assert (run.payload, run.payload_type) == (PATH, "application/store")

    detail = api.get(f"/api/v3/runs/{run.id}").json()
    assert "payload" not in detail
    fetched = anonymous.get(detail["payloadPresignedUrl"])
    assert fetched.status_code == 200
    assert fetched["Content-Type"] == "application/super+json"
    assert b"".join(fetched.streaming_content) == SUPERJSON_PAYLOAD.encode()


def test_the_upload_path_arrives_encoded_as_one_segment_too(api, anonymous: Client) -> None:
    encoded = PATH.replace("/", "%2F")
    answer = api.client.put(f"/api/v2/packets/{encoded}", content_type="application/json", headers=api.headers())
    assert answer.json()["storagePath"] == PATH


def test_packet_endpoints_need_an_api_key(anonymous: Client, dev) -> None:
    assert anonymous.put(f"/api/v2/packets/{PATH}", content_type="application/json").status_code == 401
    assert anonymous.get(f"/api/v1/packets/{PATH}").status_code == 401


def test_v1_packets_gives_a_download_url_for_a_stored_packet(api, anonymous: Client) -> None:
    assert api.get(f"/api/v1/packets/{PATH}").status_code == 404
    upload(api, anonymous)
    url = api.get(f"/api/v1/packets/{PATH}").json()["presignedUrl"]
    assert b"".join(anonymous.get(url).streaming_content) == SUPERJSON_PAYLOAD.encode()


def test_run_packets_gives_the_url_of_an_offloaded_payload_only(api, anonymous: Client) -> None:
    upload(api, anonymous)
    run_id = trigger_stored(api).json()["id"]
    url = api.get(f"/api/v1/runs/{run_id}/packets/payload").json()["presignedUrl"]
    assert anonymous.get(url).status_code == 200
    assert api.get(f"/api/v1/runs/{run_id}/packets/output").status_code == 404
    assert api.get(f"/api/v1/runs/{run_id}/packets/metadata").status_code == 404
    inline = api.trigger().json()["id"]
    missing = api.get(f"/api/v1/runs/{inline}/packets/payload")
    assert missing.status_code == 404 and "no offloaded payload" in missing.json()["error"]


@pytest.mark.parametrize("path", ["trigger/../../etc/passwd", "trigger/.secret/payload.json", "trigger/a%20b.json"])
def test_unsafe_packet_paths_are_400(api, path: str) -> None:
    answer = api.client.put(f"/api/v2/packets/{path}", content_type="application/json", headers=api.headers())
    assert answer.status_code == 400
    assert "storage path" in answer.json()["error"]


def test_clients_cannot_upload_over_packets_runyard_offloaded(api) -> None:
    body = {"payload": "a" * (600 * 1024), "options": {"payloadType": "text/plain"}}
    run = Run.objects.get(pk=api.trigger(body=body).json()["id"])
    answer = api.client.put(f"/api/v2/packets/{run.payload}", content_type="application/json", headers=api.headers())
    assert answer.status_code == 400 and "runyard/" in answer.json()["error"]


def test_a_path_too_long_with_its_environment_prefix_is_400(api) -> None:
    path = "trigger/" + "p" * 1012
    answer = api.client.put(f"/api/v2/packets/{path}", content_type="application/json", headers=api.headers())
    assert answer.status_code == 400
    assert trigger_stored(api, path).status_code == 400


# --- triggering with a stored payload -----------------------------------------------------


def test_a_stored_payload_that_was_never_uploaded_is_422_naming_it(api) -> None:
    answer = trigger_stored(api, "trigger/packet_never/payload.json")
    assert answer.status_code == 422
    assert "trigger/packet_never/payload.json" in answer.json()["error"]


def test_a_stored_payload_must_be_a_path(api) -> None:
    answer = api.trigger(body={"payload": {"not": "a path"}, "options": {"payloadType": "application/store"}})
    assert answer.status_code == 400


def test_a_stored_payload_of_an_unknown_type_is_422(api, anonymous: Client) -> None:
    assert anonymous.put(upload_url(api), data=b"\x89PNG", content_type="image/png").status_code == 200
    answer = trigger_stored(api)
    assert answer.status_code == 422 and "image/png" in answer.json()["error"]


def test_a_stored_payload_over_the_limit_is_413(api, anonymous: Client, settings) -> None:
    upload(api, anonymous)
    settings.RUNYARD_MAX_PAYLOAD_BYTES = 10
    answer = trigger_stored(api)
    assert answer.status_code == 413
    assert answer.json() == {"error": "Payload is too large: the limit is 10 bytes"}


# --- signatures ---------------------------------------------------------------------------


def test_a_tampered_signature_is_403(api, anonymous: Client) -> None:
    url = upload(api, anonymous)["presignedUrl"]
    signature = parse_qs(urlparse(url).query)["signature"][0]
    forged = with_query(url, signature=("0" if signature[0] != "0" else "1") + signature[1:])
    answer = anonymous.get(forged)
    assert answer.status_code == 403 and answer.json() == {"error": "Invalid signature"}
    assert anonymous.get(url.split("?")[0]).status_code == 403


def test_a_later_expiry_does_not_keep_the_signature_valid(api, anonymous: Client) -> None:
    url = upload(api, anonymous)["presignedUrl"]
    expires = int(parse_qs(urlparse(url).query)["expires"][0])
    extended = with_query(url, expires=str(expires + 86400))
    assert anonymous.put(extended, data="x", content_type="text/plain").status_code == 403


def test_an_upload_url_cannot_download_and_a_download_url_cannot_upload(api, anonymous: Client) -> None:
    upload_url = upload(api, anonymous)["presignedUrl"]
    assert anonymous.get(upload_url).status_code == 403
    download = api.get(f"/api/v1/packets/{PATH}").json()["presignedUrl"]
    overwrite = anonymous.put(download, data='{"json":"evil"}', content_type="application/super+json")
    assert overwrite.status_code == 403
    assert storage.get(packets.storage_key(factories.environment("dev").pk, PATH))[0] == SUPERJSON_PAYLOAD.encode()


def test_signed_urls_expire_after_the_ttl(api, anonymous: Client, settings) -> None:
    settings.RUNYARD_PACKET_URL_TTL = 60
    upload(api, anonymous)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        url = api.get(f"/api/v1/packets/{PATH}").json()["presignedUrl"]
        clock.shift(timedelta(seconds=60))
        assert anonymous.get(url).status_code == 200
        clock.shift(timedelta(seconds=1))
        answer = anonymous.get(url)
    assert answer.status_code == 403 and answer.json() == {"error": "This URL has expired"}


def upload_url(api, path: str = PATH) -> str:
    answer = api.client.put(f"/api/v2/packets/{path}", content_type="application/json", headers=api.headers())
    return str(answer.json()["presignedUrl"])


def stored(path: str = PATH) -> bytes:
    return storage.get(packets.storage_key(factories.environment("dev").pk, path))[0]


def test_an_upload_url_works_once_and_a_second_put_leaves_the_object_unchanged(api, anonymous: Client) -> None:
    url = upload(api, anonymous)["presignedUrl"]
    again = anonymous.put(url, data='{"json":"evil"}', content_type="application/super+json")
    assert again.status_code == 403
    assert again.json() == {"error": "This upload URL has already been used: ask for a new one"}
    assert stored() == SUPERJSON_PAYLOAD.encode()


def test_each_upload_url_is_its_own_even_within_one_second(api, anonymous: Client) -> None:
    with time_machine.travel(timezone.now(), tick=False):
        first, second = upload_url(api), upload_url(api)
        assert first != second
        assert anonymous.put(first, data='{"json":1}', content_type="application/super+json").status_code == 200
        assert anonymous.put(second, data='{"json":2}', content_type="application/super+json").status_code == 200
    assert stored() == b'{"json":2}'


def test_an_upload_that_failed_to_store_can_be_retried_with_the_same_url(
    api, anonymous: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = upload_url(api)
    put = storage.put

    def broken(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(storage, "put", broken)
    assert anonymous.put(url, data=SUPERJSON_PAYLOAD, content_type="application/super+json").status_code == 500
    monkeypatch.setattr(storage, "put", put)
    assert anonymous.put(url, data=SUPERJSON_PAYLOAD, content_type="application/super+json").status_code == 200
    assert stored() == SUPERJSON_PAYLOAD.encode()


def test_a_signed_url_expiring_beyond_the_configured_lifetime_is_refused(api, anonymous: Client, settings) -> None:
    upload(api, anonymous)
    settings.RUNYARD_PACKET_URL_TTL = 30 * 86400  # a URL signed while the lifetime was a month
    url = api.get(f"/api/v1/packets/{PATH}").json()["presignedUrl"]
    settings.RUNYARD_PACKET_URL_TTL = 3600
    answer = anonymous.get(url)
    assert answer.status_code == 403
    assert answer.json() == {"error": "This URL expires later than RUNYARD_PACKET_URL_TTL allows"}


@pytest.mark.parametrize("expires", ["9" * 13, "9" * 5000, "-1", "1e9", ""])
def test_an_expiry_that_is_no_time_is_an_invalid_signature(api, anonymous: Client, expires: str) -> None:
    url = with_query(upload_url(api), expires=expires)
    answer = anonymous.put(url, data="x", content_type="text/plain")
    assert answer.status_code == 403 and answer.json() == {"error": "Invalid signature"}


def test_urls_signed_with_the_previous_key_work_while_it_is_a_fallback(api, anonymous: Client, settings) -> None:
    upload(api, anonymous)
    url = api.get(f"/api/v1/packets/{PATH}").json()["presignedUrl"]
    old, settings.SECRET_KEY = settings.SECRET_KEY, "a-new-key-" + "n" * 50
    assert anonymous.get(url).status_code == 403
    settings.SECRET_KEY_FALLBACKS = [old]
    assert anonymous.get(url).status_code == 200
    fresh = api.get(f"/api/v1/packets/{PATH}").json()["presignedUrl"]
    settings.SECRET_KEY_FALLBACKS = []
    assert anonymous.get(fresh).status_code == 200  # new URLs are signed with the new key


def test_downloads_never_run_as_a_page_of_this_site(api, anonymous: Client) -> None:
    url = upload_url(api)
    assert anonymous.put(url, data="<script>alert(1)</script>", content_type="text/html").status_code == 200
    answer = anonymous.get(api.get(f"/api/v1/packets/{PATH}").json()["presignedUrl"])
    assert "sandbox" in answer["Content-Security-Policy"]


# --- environments -------------------------------------------------------------------------


def test_one_environment_cannot_reach_another_environments_packets(api, prod_api, anonymous: Client) -> None:
    upload(api, anonymous)
    run_id = trigger_stored(api).json()["id"]
    assert prod_api.get(f"/api/v1/packets/{PATH}").status_code == 404
    assert trigger_stored(prod_api).status_code == 422
    assert prod_api.get(f"/api/v1/runs/{run_id}/packets/payload").status_code == 404
    # The same path in prod is prod's own packet.
    upload(prod_api, anonymous, data='{"json":"prod"}')
    prod_url = prod_api.get(f"/api/v1/packets/{PATH}").json()["presignedUrl"]
    assert b"".join(anonymous.get(prod_url).streaming_content) == b'{"json":"prod"}'
    dev_url = api.get(f"/api/v1/packets/{PATH}").json()["presignedUrl"]
    assert b"".join(anonymous.get(dev_url).streaming_content) == SUPERJSON_PAYLOAD.encode()


# --- offload of inline payloads -----------------------------------------------------------


def test_an_inline_payload_over_512_kb_is_offloaded_and_comes_back_by_url(api, anonymous: Client) -> None:
    text = "a" * (600 * 1024)
    answer = api.trigger(body={"payload": text, "options": {"payloadType": "text/plain"}})
    assert answer.status_code == 200
    run = Run.objects.get(pk=answer.json()["id"])
    assert run.payload_type == "application/store" and run.payload.startswith("runyard/packet_")
    assert len(run.payload) < 100  # the row holds the path, not the payload
    detail = api.get(f"/api/v3/runs/{run.id}").json()
    fetched = anonymous.get(detail["payloadPresignedUrl"])
    assert fetched["Content-Type"] == "text/plain"
    assert b"".join(fetched.streaming_content) == text.encode()


def test_an_inline_payload_of_512_kb_stays_in_the_row(api) -> None:
    payload = json.dumps({"json": "b" * (512 * 1024 - 11)}, separators=(",", ":"))
    assert len(payload) == 512 * 1024
    answer = api.trigger(body={"payload": payload, "options": {"payloadType": "application/super+json"}})
    run = Run.objects.get(pk=answer.json()["id"])
    assert run.payload_type == "application/super+json" and run.payload == payload


# --- request size -------------------------------------------------------------------------


def test_a_trigger_body_over_10_mb_is_413_naming_the_limit(api) -> None:
    envelope = json.dumps({"payload": "", "options": {"payloadType": "text/plain"}})
    body = envelope.replace('"payload": ""', '"payload": "' + "x" * (10 * MiB + 1 - len(envelope)) + '"')
    assert len(body) == 10 * MiB + 1
    answer = api.post("/api/v1/tasks/hello-world/trigger", raw=body)
    assert answer.status_code == 413
    assert answer.json() == {"error": "Payload is too large: the limit is 10 MB"}
    assert not Run.objects.exists()


def test_a_declared_oversized_body_is_refused_from_its_headers_without_reading_it(api) -> None:
    # The test client's input stream fails any read past its 2 real bytes: a 413 proves none.
    answer = api.post("/api/v1/tasks/hello-world/trigger", raw="{}", CONTENT_LENGTH=str(10 * MiB + 1))
    assert answer.status_code == 413
    assert answer.json() == {"error": "Payload is too large: the limit is 10 MB"}


def chunked_trigger(key: str, body: bytes) -> Any:
    """A trigger as daphne hands over a chunked request: no Content-Length, the body spooled."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/tasks/hello-world/trigger",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")],
        "server": ("testserver", 80),
    }
    return views.trigger_task(ASGIRequest(scope, io.BytesIO(body)), task_id="hello-world")


def test_a_chunked_trigger_body_is_read_up_to_the_limit_only(dev_key: str, settings) -> None:
    settings.RUNYARD_MAX_PAYLOAD_BYTES = 1000
    fits = json.dumps({"payload": "x" * 900, "options": {"payloadType": "text/plain"}}).encode()
    assert chunked_trigger(dev_key, fits).status_code == 200
    over = json.dumps({"payload": "x" * 1000, "options": {"payloadType": "text/plain"}}).encode()
    answer = chunked_trigger(dev_key, over)
    assert answer.status_code == 413
    assert json.loads(answer.content) == {"error": "Payload is too large: the limit is 1000 bytes"}


def test_an_upload_over_the_limit_is_413(api, anonymous: Client, settings) -> None:
    url = upload(api, anonymous)["presignedUrl"]
    settings.RUNYARD_MAX_PAYLOAD_BYTES = 1000
    answer = anonymous.put(url, data="x" * 1001, content_type="text/plain")
    assert answer.status_code == 413
    assert answer.json() == {"error": "Payload is too large: the limit is 1000 bytes"}
    declared = anonymous.put(url, data="x", content_type="text/plain", CONTENT_LENGTH=str(10 * MiB))
    assert declared.status_code == 413
    assert storage.get(packets.storage_key(factories.environment("dev").pk, PATH))[0] == SUPERJSON_PAYLOAD.encode()


def test_other_api_bodies_over_the_django_ceiling_are_413_naming_it(api, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    run_id = api.trigger().json()["id"]
    answer = api.post(f"/api/v1/runs/{run_id}/reschedule", {"delay": "1h", "pad": "x" * 4096})
    assert answer.status_code == 413
    assert answer.json() == {"error": "Request body is too large: the limit is 2 KB"}
