"""ASGI entry point: HTTP through Django in one thread hop a request (the REST API with its
own short middleware chain), websockets through Channels (login required)."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from dashboard import apihandler  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402

api_app = apihandler.ApiHandler()
dashboard_app = apihandler.OneHopHandler()


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/api/v1-3/ and /healthz skip the dashboard's middleware (dashboard.apihandler)."""
    app = api_app if apihandler.serves(scope["path"]) else dashboard_app
    await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
