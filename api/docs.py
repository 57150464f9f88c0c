"""GET /api/docs/: the REST API's reference, Swagger UI (vendored under static/) over
/api/openapi.json, so it works offline. Public, as the OpenAPI document is; "Authorize" takes
an API key for "Try it out"."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@login_not_required
@require_GET
def api_docs(request: HttpRequest) -> HttpResponse:
    return render(request, "api_docs.html")
