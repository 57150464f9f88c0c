"""Listing runs (reference 3.5): the filters of runs.list and keyset pagination.

Shared by GET /api/v1/runs and the Python SDK's in-process runs.list, so both answer the
same query the same way. Parameters are the wire protocol's (`filter[status]`,
`page[size]`, ...) in any mapping with `.get` (a QueryDict or a dict); a bad one raises
OptionError naming the parameter.

Runs are listed newest first by (created_at desc, id desc), the `run_env_created` index;
cursors are run ids and a page is found by comparing that key, never by OFFSET, so a run
created meanwhile neither shifts nor repeats a page, and no COUNT is ever taken.

Differences from the real server, on purpose:
* no default time window: without from/to/period every run of the environment is listed;
* `filter[version]` and `filter[bulkAction]` are accepted, but Runyard has no deployed
  versions or bulk actions: a non-empty value matches nothing;
* legacy statuses are accepted; those with no Runyard state (INTERRUPTED) match nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from runs import registry
from runs.keyset import Cursor, Keyset
from runs.models import Environment, Run, RunQuerySet
from runs.options import OptionError, parse_duration
from runs.states import RunStatus

Params = Mapping[str, str]

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
# Statuses of older SDKs and the real server's database, in Runyard's terms.
LEGACY_STATUSES: dict[str, list[str]] = {
    "WAITING_FOR_DEPLOY": [RunStatus.PENDING_VERSION],
    "REATTEMPTING": [RunStatus.QUEUED],  # a failed attempt waits out its backoff in the queue
    "FROZEN": [RunStatus.WAITING],
    "INTERRUPTED": [],
}
# Filters on things Runyard does not have yet: any value but "" matches no run.
UNSUPPORTED_FILTERS = ("filter[version]", "filter[bulkAction]")
RUNS = Keyset("created_at")  # cursors here are run ids, looked up (_cursor), never decoded


@dataclass(frozen=True)
class Page:
    runs: list[Run]
    next: str | None
    previous: str | None


def list_page(environment: Environment, params: Params, now: datetime) -> Page:
    """One page of the environment's runs matching `params`. Raises OptionError."""
    return paginate(filtered(Run.objects.filter(environment=environment), params, now), environment, params)


# --- filters ------------------------------------------------------------------------------


def filtered(runs: RunQuerySet, params: Params, now: datetime) -> RunQuerySet:
    """`runs` narrowed by every `filter[...]` parameter."""
    for name in UNSUPPORTED_FILTERS:
        if _values(params, name):
            return runs.none()
    if (statuses := _values(params, "filter[status]")) is not None:
        runs = runs.filter(status__in=_statuses(statuses))
    columns = {
        "filter[taskIdentifier]": "task_identifier",
        "filter[batch]": "batch_id",
        "filter[schedule]": "schedule_id",  # the runs a schedule fired (the run_env_schedule index)
        "filter[queue]": "queue",  # task queues are stored as "task/<name>", as the SDK sends them
        "filter[region]": "region",
    }
    for name, column in columns.items():
        if (values := _values(params, name)) is not None:
            runs = runs.filter(**{f"{column}__in": values})
    if (tags := _values(params, "filter[tag]")) is not None:
        runs = runs.filter(tags__overlap=tags)  # any of them, as the real server
    if (machines := _values(params, "filter[machine]")) is not None:
        if unknown := [machine for machine in machines if machine not in registry.MACHINES]:
            raise OptionError("filter[machine]", f"Invalid machine values: {', '.join(unknown)}")
        runs = runs.filter(machine__in=machines)
    if (is_test := params.get("filter[isTest]")) is not None:
        if is_test not in ("true", "false"):
            raise OptionError("filter[isTest]", f"Invalid filter[isTest]: {is_test!r} is neither true nor false")
        runs = runs.filter(is_test=is_test == "true")
    return _created(runs, params, now)


def _created(runs: RunQuerySet, params: Params, now: datetime) -> RunQuerySet:
    if (start := _epoch_ms(params, "filter[createdAt][from]")) is not None:
        runs = runs.filter(created_at__gte=start)
    if (end := _epoch_ms(params, "filter[createdAt][to]")) is not None:
        runs = runs.filter(created_at__lte=end)
    if period := params.get("filter[createdAt][period]"):
        seconds = parse_duration(period)
        if seconds is None:
            raise OptionError(
                "filter[createdAt][period]",
                f'Invalid filter[createdAt][period]: {period!r} is not a duration like "1d"',
            )
        runs = runs.filter(created_at__gte=now - timedelta(seconds=seconds))
    return runs


def _values(params: Params, name: str) -> list[str] | None:
    """A comma list parameter's values; None when absent or empty (no filter)."""
    text = params.get(name)
    if not text:
        return None
    return [value.strip() for value in text.split(",") if value.strip()] or None


def _statuses(given: list[str]) -> list[str]:
    unknown = [status for status in given if status not in RunStatus.values and status not in LEGACY_STATUSES]
    if unknown:
        raise OptionError("filter[status]", f"Invalid status values: {', '.join(unknown)}")
    return [mapped for status in given for mapped in LEGACY_STATUSES.get(status, [status])]


def _epoch_ms(params: Params, name: str) -> datetime | None:
    text = params.get(name)
    if not text:
        return None
    try:
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise OptionError(name, f"Invalid {name}: {text!r} is not a time in epoch milliseconds") from exc


# --- pagination ---------------------------------------------------------------------------


def paginate(runs: RunQuerySet, environment: Environment, params: Params) -> Page:
    """One page of `runs` after `page[after]` or before `page[before]` (which wins: the
    SDK's getPreviousPage keeps the old `page[after]` and adds `page[before]`).

    An empty page (its cursor was the last run) carries no cursors.
    """
    size = _page_size(params)
    before = _cursor(environment, params, "page[before]")
    after = None if before else _cursor(environment, params, "page[after]")
    page = RUNS.page(runs, size=size, after=after, before=before)
    # The wire's cursors are the ids of the page's last and first runs.
    older, newer = (page.rows[-1].id, page.rows[0].id) if page.rows else (None, None)
    return Page(page.rows, older if page.has_older else None, newer if page.has_newer else None)


def _page_size(params: Params) -> int:
    text = params.get("page[size]")
    if not text:
        return DEFAULT_PAGE_SIZE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_SIZE:
        raise OptionError("page[size]", f"Invalid page[size]: {text!r} is not a number from 1 to {MAX_PAGE_SIZE}")
    return int(text)


def _cursor(environment: Environment, params: Params, name: str) -> Cursor | None:
    """The key of the run `name` names; OptionError naming it for a run not in the environment."""
    run_id = params.get(name)
    if not run_id:
        return None
    run = Run.objects.filter(pk=run_id, environment=environment).only("id", "created_at").first()
    if run is None:
        raise OptionError(name, f"Invalid cursor: {run_id}")
    return RUNS.key(run)
