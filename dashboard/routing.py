"""Websocket routes (served by daphne through dashboard.asgi, behind AuthMiddlewareStack)."""

from typing import Any

from channels.routing import URLRouter
from django.urls import path

from dashboard import consumers

websocket_urlpatterns: list[Any] = [
    path("ws/runs/", consumers.RunsConsumer.as_asgi(), name="ws-runs"),
    path("ws/runs/<str:run_id>/", consumers.RunConsumer.as_asgi(), name="ws-run"),
    path("ws/batches/<str:batch_id>/", consumers.BatchConsumer.as_asgi(), name="ws-batch"),
]


def websocket_urlpatterns_under(prefix: str) -> list[Any]:
    """The routes mounted under a project's prefix ("runyard/"), where its urls.py includes ours.

    The pages build their websocket URLs from the dashboard's own root URL, so both must agree.
    """
    if not prefix.strip("/"):
        return list(websocket_urlpatterns)
    return [path(prefix.strip("/") + "/", URLRouter(websocket_urlpatterns))]
