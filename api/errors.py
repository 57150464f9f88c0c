"""The API's one error shape: `{"error": "<message>"}`, for every status.

The SDK retries 5xx, 408, 409 and 429, so those codes are used only where a retry can
help; 409 never (see the wire protocol reference, 2.5).
"""

from __future__ import annotations

from django.http import JsonResponse


class ApiError(Exception):
    """Ends an API request with `{"error": message}` and the given status.

    `param` names the request field at fault, when there is one: the body then carries it as
    `"param"` (the official SDK copies it onto its error; the Python SDK's ValidationError.field).
    """

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error_response(status: int, message: str, param: str | None = None) -> JsonResponse:
    body = {"error": message} if param is None else {"error": message, "param": param}
    return JsonResponse(body, status=status)
