"""Placeholder: filled in by its owner this session."""

from django.http import Http404, HttpRequest, HttpResponse


def tasks_list(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404


def task_trigger(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404
