"""A NUL character in a dashboard URL path or form is a 400 naming where it is.

PostgreSQL cannot store or compare text holding a NUL, so a run id or a cancel reason with
one would fail in the database as a 500. One check before any dashboard view runs covers
every page, fragment and form, the admin's included. Query strings are the views' own: a
filter they cannot use is shown as an error next to it, the page still a 200
(runs.filters). The REST API's views
(`json_errors`) answer in JSON, naming the parameter, themselves (api.http.api_view). Lone
surrogates cannot arrive this way: Django decodes URLs and forms as UTF-8.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.http.response import HttpResponseBase
from django.shortcuts import render

NUL = "\x00"


def nul_in(params: Iterable[tuple[str, str]]) -> str | None:
    """The name of the first parameter whose name or value holds a NUL."""
    for name, value in params:
        if NUL in name or NUL in value:
            return name.replace(NUL, "\\u0000")
    return None


def _items(query: QueryDict) -> Iterable[tuple[str, str]]:
    return ((name, value) for name, values in query.lists() for value in values)


class RefuseNulMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        if getattr(view, "json_errors", False):
            return None
        where = nul_in((name, str(value)) for name, value in kwargs.items())
        if where is None and request.method == "POST" and request.content_type != "application/json":
            where = nul_in(_items(request.POST))
        if where is None:
            return None
        message = f"{where}: contains a NUL character, which cannot be stored"
        return render(request, "400.html", {"message": message}, status=400)
