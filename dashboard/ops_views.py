"""Placeholder: filled in by its owner this session."""

from django.http import Http404, HttpRequest, HttpResponse


def queues(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404


def workers(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404
