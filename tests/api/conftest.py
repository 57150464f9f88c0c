from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from runs.models import Environment
from tests import factories


class Api:
    """A test client that speaks like the official SDK: bearer key, JSON on every request."""

    def __init__(self, client: Client, key: str) -> None:
        self.client, self.key = client, key

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **extra}

    def post(self, path: str, body: Any = None, raw: bytes | str | None = None, **headers: str) -> Any:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(path, data=data, content_type="application/json", headers=self.headers(**headers))

    def get(self, path: str, **headers: str) -> Any:
        return self.client.get(path, content_type="application/json", headers=self.headers(**headers))

    def trigger(self, task_id: str = "hello-world", body: Any = None, **headers: str) -> Any:
        if body is None:
            body = {"payload": '{"json":{"hello":"world"}}', "options": {"payloadType": "application/super+json"}}
        return self.post(f"/api/v1/tasks/{task_id}/trigger", body, **headers)


@pytest.fixture
def dev_key(dev: Environment) -> str:
    return factories.api_key("dev")


@pytest.fixture
def api(client: Client, dev_key: str) -> Api:
    return Api(client, dev_key)


@pytest.fixture
def prod_api(client: Client, prod: Environment) -> Api:
    return Api(client, factories.api_key("prod"))
