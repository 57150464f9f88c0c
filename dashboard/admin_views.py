"""Placeholder: filled in by its owner this session."""

from django.http import Http404, HttpRequest, HttpResponse


def audit_log(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404


def api_keys(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404


def environments(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404
