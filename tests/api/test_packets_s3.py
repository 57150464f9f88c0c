"""The SDK's large-payload flow with the packets in an S3 bucket (moto's S3 through boto3)."""

from __future__ import annotations

from typing import Any

from django.test import Client

from runs.models import Environment
from tests.s3 import BUCKET

PATH = "trigger/packet_s3flow/payload.json"
SUPERJSON_PAYLOAD = '{"json":{"hello":"bucket"}}'


def test_upload_trigger_and_download_through_runyards_signed_urls_with_a_private_bucket(
    api: Any, s3_bucket: Any, dev: Environment
) -> None:
    anonymous = Client()
    answer = api.client.put(f"/api/v2/packets/{PATH}", content_type="application/json", headers=api.headers())
    assert answer.status_code == 200, answer.content
    stored = anonymous.put(answer.json()["presignedUrl"], data=SUPERJSON_PAYLOAD, content_type="application/super+json")
    assert stored.status_code == 200, stored.content
    in_bucket = s3_bucket.get_object(Bucket=BUCKET, Key=f"env-{dev.pk}/{PATH}")
    assert in_bucket["Body"].read() == SUPERJSON_PAYLOAD.encode()

    options = {"payloadType": "application/store", "payloadSize": len(SUPERJSON_PAYLOAD)}
    triggered = api.trigger(body={"payload": PATH, "options": options})
    assert triggered.status_code == 200, triggered.content
    detail = api.get(f"/api/v3/runs/{triggered.json()['id']}").json()
    fetched = anonymous.get(detail["payloadPresignedUrl"])
    assert fetched.status_code == 200
    assert fetched["Content-Type"] == "application/super+json"
    assert b"".join(fetched.streaming_content) == SUPERJSON_PAYLOAD.encode()
