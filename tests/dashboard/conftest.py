"""Fixtures of the websocket tests (test_consumers*.py), which run against the real Redis
channel layer and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import connections

from tests.dashboard.test_consumers import make_user


@pytest.fixture
async def close_thread_connections() -> AsyncIterator[None]:
    """Sync code of consumers and tests runs in one executor thread whose connection would
    otherwise outlive the test (CONN_MAX_AGE) and block dropping the test database."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
async def user() -> User:
    return await make_user()


@pytest.fixture
async def connected() -> AsyncIterator[list[WebsocketCommunicator]]:
    """Communicators opened by a test; disconnected afterwards."""
    opened: list[WebsocketCommunicator] = []
    yield opened
    await asyncio.gather(*(communicator.disconnect() for communicator in opened))
