"""Runyard's URLs behind /bench/ping/, a bare Django JSON view: the baseline of the trigger API."""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.urls import include, path


@login_not_required
def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("bench/ping/", ping, name="bench-ping"),
    path("", include("dashboard.urls")),
]
