"""The API's one error shape: `{"error": "<message>"}`, for every status.

The SDK retries 5xx, 408, 409 and 429, so those codes are used only where a retry can
help; 409 never (see the wire protocol reference, 2.5).
"""

from __future__ import annotations

from django.http import JsonResponse


class ApiError(Exception):
    """Ends an API request with `{"error": message}` and the given status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def error_response(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)
