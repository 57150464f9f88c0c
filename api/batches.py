"""Batch endpoints of the wire protocol (reference 3.2, 3.3, 3.10)."""

from __future__ import annotations

from django.http import JsonResponse

from api.errors import ApiError
from api.http import ApiRequest, api_view


@api_view("POST")
def create_batch(request: ApiRequest) -> JsonResponse:
    raise ApiError(501, "Not implemented yet")


@api_view("POST")
def stream_batch_items(request: ApiRequest, batch_id: str) -> JsonResponse:
    raise ApiError(501, "Not implemented yet")


@api_view("GET")
def retrieve_batch(request: ApiRequest, batch_id: str) -> JsonResponse:
    raise ApiError(501, "Not implemented yet")
