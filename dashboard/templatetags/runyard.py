"""Template filters and tags for the dashboard: status labels, durations, packets as JSON."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import template
from django.urls import reverse
from django.utils import timezone

from dashboard.permissions import can_operate
from runs import packets
from runs.holds import Hold, held_count
from runs.metadata import progress
from runs.models import BatchStatus, Environment, Run
from runs.options import format_duration as format_option_duration
from runs.states import COLOURS, DESCRIPTIONS, LABELS, is_final

register = template.Library()

# Bigger packets are cut for display: the page stays usable and the websocket push small.
MAX_JSON_CHARS = 100_000


@register.filter
def status_label(status: str) -> str:
    return LABELS.get(status, status)


@register.filter
def status_colour(status: str) -> str:
    return COLOURS.get(status, "grey")


@register.filter
def status_description(status: str) -> str:
    return DESCRIPTIONS.get(status, "")


BATCH_COLOURS: dict[str, str] = {
    BatchStatus.PENDING: "grey",
    BatchStatus.PROCESSING: "blue",
    BatchStatus.COMPLETED: "green",
    BatchStatus.PARTIAL_FAILED: "amber",
    BatchStatus.ABORTED: "red",
}


@register.filter
def batch_status_colour(status: str) -> str:
    return BATCH_COLOURS.get(status, "grey")


# A batch's status says how far its runs were created, not how they did: say so.
BATCH_STATUS_TEXT: dict[str, str] = {
    BatchStatus.PENDING: "Receiving items",
    BatchStatus.PROCESSING: "Creating runs",
    BatchStatus.COMPLETED: "All runs created",
    BatchStatus.PARTIAL_FAILED: "Some items failed",
    BatchStatus.ABORTED: "Aborted: no runs created",
}


@register.filter
def batch_status_text(status: str) -> str:
    return BATCH_STATUS_TEXT.get(status, status)


@register.filter
def finished(status: str) -> bool:
    return is_final(status)


@register.filter
def duration(run: Run) -> str:
    """finished - started, or how long it has been running, or "—" if it never started."""
    if run.started_at is None:
        return "—"
    end = run.finished_at or timezone.now()
    return format_duration(end - run.started_at)


@register.filter
def elapsed(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    return format_duration(end - start)


def format_duration(delta: timedelta) -> str:
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


@register.filter
def seconds(value: int | None) -> str:
    """An option given in seconds, the way options are written: 5400 -> "1h30m"; None -> "—"."""
    if value is None:
        return "—"
    return format_option_duration(int(value)) or "0s"


@register.filter
def milliseconds_as_seconds(value: int) -> str:
    """priority_ms as the seconds it was given in: 1500 -> "1.5 s"."""
    return f"{value / 1000:g} s"


@register.filter
def packet_json(data: str | None, content_type: str) -> str:
    """A stored payload or output as indented JSON (or as stored, if it does not decode)."""
    try:
        value = packets.decode(data, content_type)
    except packets.PacketTooDeep:
        return cannot_display(RecursionError())
    except packets.PacketError:
        return _shown(data or "")
    except (RecursionError, ValueError) as exc:
        return cannot_display(exc)
    return pretty_json(value)


@register.filter
def progress_percent(metadata: Any) -> int | None:
    """The metadata's `progress` (runs.metadata.progress) as a whole percent, or None."""
    value = progress(metadata)
    return None if value is None else round(value * 100)


@register.filter
def pretty_json(value: Any) -> str:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    except (RecursionError, ValueError) as exc:
        return cannot_display(exc)
    return _shown(text)


def cannot_display(exc: BaseException) -> str:
    """What a page shows instead of a value it cannot render; the rest of the page renders."""
    why = "it is nested too deeply" if isinstance(exc, RecursionError) else f"it cannot be decoded ({exc})"
    return f"This cannot be displayed here: {why}. The API returns it as stored."


def _shown(text: str) -> str:
    # A JSON escape of a lone surrogate decodes to text no UTF-8 page can carry.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "This cannot be displayed here: it holds text that is not valid Unicode (a lone surrogate)."
    return _cut(text)


@register.filter
def without(mapping: Any, key: str) -> Any:
    """A dict minus one key (options as given, less what a role may not see); anything else as is."""
    return {k: v for k, v in mapping.items() if k != key} if isinstance(mapping, dict) else mapping


def _cut(text: str) -> str:
    if len(text) <= MAX_JSON_CHARS:
        return text
    return text[:MAX_JSON_CHARS] + f"\n… ({len(text) - MAX_JSON_CHARS:,} more characters not shown)"


# The switcher keeps the page when it exists in every environment (with the filters that mean
# the same everywhere); a run, a batch or a bulk action belongs to one environment, so from
# there it goes to the other environment's runs list.
SWITCH_KEEPS: dict[str, tuple[str, ...]] = {
    "runs": ("status", "task", "tag", "from", "to", "period", "queue", "machine", "region", "root"),
    "tasks": (),
    "task": (),
    "queues": (),
    "workers": (),
    "schedules": (),
    "schedule_new": (),
    "audit": ("user", "action", "target"),
    "api_keys": (),
    "environments": (),
}


@register.inclusion_tag("dashboard/partials/environment_switcher.html", takes_context=True)
def environment_switcher(context: template.Context) -> dict[str, Any]:
    """A link per environment to the same page in it (see SWITCH_KEEPS); the current one is marked."""
    request = context.get("request")
    current = context.get("environment")
    if current is None:
        slug = request.session.get("env") if request is not None else None
        current = Environment.objects.filter(slug=slug or "dev").first()
    match = getattr(request, "resolver_match", None)
    name = match.url_name if match is not None else None
    if request is not None and name in SWITCH_KEEPS:
        path = request.path
        kept = [(key, value) for key in SWITCH_KEEPS[name] for value in request.GET.getlist(key)]
    else:
        path, kept = reverse("runs"), []
    links = [
        {"env": env, "href": f"{path}?{urlencode([('env', env.slug), *kept])}"}
        for env in Environment.objects.order_by("id")
    ]
    return {"links": links, "current": current}


@register.inclusion_tag("dashboard/partials/environment_paused.html", takes_context=True)
def environment_paused_banner(context: template.Context) -> dict[str, Any]:
    """The banner of a paused environment (the page's, else the session's), with its resume form
    for operators; nothing when it is not paused. One query more on a paused environment's pages."""
    request = context.get("request")
    environment = context.get("environment")
    if not isinstance(environment, Environment):
        slug = request.session.get("env") if request is not None else None
        environment = Environment.objects.filter(slug=slug or "dev").first()
    now = timezone.now()
    if environment is None or not environment.paused_as_of(now):
        return {"hold": None}
    hold = Hold.of("environment", environment.slug, environment)
    user = getattr(request, "user", None)
    return {
        "hold": hold,
        "environment": environment,
        "held": held_count(environment.pk, hold),
        "can_operate": can_operate(user),
        "next": request.get_full_path() if request is not None else "",
        "csrf_token": context.get("csrf_token"),
    }
