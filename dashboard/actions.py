"""Placeholder: filled in by its owner this session."""

from django.http import Http404, HttpRequest, HttpResponse


def run_cancel(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404


def run_reschedule(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404


def run_replay(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404


def bulk_start(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404


def bulk_detail(request: HttpRequest, **kwargs: str) -> HttpResponse:
    raise Http404
