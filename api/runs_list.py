"""runs.list (reference 3.5) over HTTP: runs.listing's page in the wire protocol's shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import QueryDict

from api import serializers
from api.errors import ApiError
from runs import listing
from runs.models import Environment
from runs.options import OptionError


def list_runs(environment: Environment, params: QueryDict, now: datetime) -> dict[str, Any]:
    """The response body of GET /api/v1/runs. Raises ApiError(400) for a bad parameter."""
    try:
        page = listing.list_page(environment, params, now)
    except OptionError as exc:
        raise ApiError(400, exc.message) from exc
    pagination = {"next": page.next, "previous": page.previous}
    return {
        "data": [serializers.run_list_item(run, environment) for run in page.runs],
        "pagination": {key: value for key, value in pagination.items() if value is not None},
    }
