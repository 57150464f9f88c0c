"""Cron expressions and time zones of schedules: parsing, fire times, words.

Pure: no database, nothing from the engine. Fire times come from cronsim, which follows
what cron does across daylight saving changes: a time skipped by the spring change fires at
the first minute after it, a time repeated by the autumn change fires once.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cron_descriptor import Options, get_description
from cronsim import CronSim, CronSimError

# The names cron itself takes for the common expressions.
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_LENGTH = 128
UPCOMING = 5  # fire times a schedule shows and a scheduled payload carries
# No expression is due further out than a leap day on a given weekday (28 years); past this a
# search gives up rather than loop.
_HORIZON = timedelta(days=366 * 30)


class CronError(ValueError):
    """A bad expression or time zone; `field` names which ("cron" or "timezone")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def clean(expression: object) -> str:
    """A cron expression or nickname as written (spaces collapsed), checked. Raises CronError."""
    text = " ".join(expression.split()) if isinstance(expression, str) else ""
    parse(text)
    return text


def parse(expression: object) -> str:
    """The five-field form of a cron expression or nickname, checked. Raises CronError."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("cron", "cron must be a non-empty string")
    text = " ".join(expression.split())
    if len(text) > MAX_LENGTH:
        raise CronError("cron", f"cron must be at most {MAX_LENGTH} characters")
    if text.startswith("@"):
        if text.lower() not in NICKNAMES:
            raise CronError("cron", f"cron nickname must be one of {', '.join(NICKNAMES)}")
        return NICKNAMES[text.lower()]
    if len(text.split(" ")) != 5:
        raise CronError("cron", "cron must have 5 fields: minute hour day-of-month month day-of-week")
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError) as exc:
        raise CronError("cron", f"cron is not a valid expression: {exc}") from None
    return text


def parse_timezone(name: object) -> str:
    """An IANA time zone name, checked. Raises CronError."""
    if not isinstance(name, str) or not name:
        raise CronError("timezone", "timezone must be an IANA time zone name such as Europe/Paris")
    if name not in timezones():
        raise CronError("timezone", f"timezone {name[:64]!r} is not an IANA time zone name")
    return name


@functools.cache
def timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def next_times(expression: str, tz: str, after: datetime, count: int = 1) -> list[datetime]:
    """The next `count` fire times strictly after `after`, in UTC (fewer if the expression
    never fires again, as "0 0 30 2 *" never does)."""
    start = after.astimezone(ZoneInfo(tz))
    times: list[datetime] = []
    for moment in CronSim(parse(expression), start):
        if moment - start > _HORIZON or len(times) == count:
            break
        times.append(moment.astimezone(UTC))
    return times


def next_time(expression: str, tz: str, after: datetime) -> datetime | None:
    times = next_times(expression, tz, after, 1)
    return times[0] if times else None


def describe(expression: str) -> str:
    """The expression in words ("Every 5 minutes"), or the expression itself if that fails."""
    try:
        return str(get_description(parse(expression), Options()))
    except Exception:  # noqa: BLE001 - words are a nicety; the expression is checked elsewhere
        return expression


MAX_COUNTED = 1000  # due ticks counted one by one; past this a count says "more than"


def due_times(expression: str, tz: str, first: datetime, now: datetime) -> tuple[int, datetime, datetime | None]:
    """The fire times from `first` (itself one) through `now`: (how many, capped at
    MAX_COUNTED + 1; the latest; the one before it, None if there is none)."""
    zone = ZoneInfo(tz)
    count, latest, before = 1, first, None
    for moment in CronSim(parse(expression), first.astimezone(zone)):
        if moment.astimezone(UTC) > now:
            return count, latest, before
        if count > MAX_COUNTED:
            # Years of minutes missed: the latest two from the end rather than walking there.
            back = CronSim(parse(expression), (now + timedelta(microseconds=1)).astimezone(zone), reverse=True)
            latest, before = next(back).astimezone(UTC), next(back).astimezone(UTC)
            return count, latest, before
        count, latest, before = count + 1, moment.astimezone(UTC), latest
    return count, latest, before
