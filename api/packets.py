"""Large payloads and outputs: packet upload URLs and signed downloads (reference 3.9)."""

from __future__ import annotations

from django.http import JsonResponse

from api.errors import ApiError
from api.http import ApiRequest, api_view


@api_view("PUT")
def create_upload_url(request: ApiRequest, filename: str) -> JsonResponse:
    raise ApiError(501, "Not implemented yet")
