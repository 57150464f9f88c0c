"""Websocket routes (served by daphne through dashboard.asgi, behind AuthMiddlewareStack)."""

from typing import Any

from django.urls import path

from dashboard import consumers

websocket_urlpatterns: list[Any] = [
    path("ws/runs/", consumers.RunsConsumer.as_asgi(), name="ws-runs"),
    path("ws/runs/<str:run_id>/", consumers.RunConsumer.as_asgi(), name="ws-run"),
    path("ws/batches/<str:batch_id>/", consumers.BatchConsumer.as_asgi(), name="ws-batch"),
]
