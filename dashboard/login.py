"""Login throttling, for the dashboard's login page and Django admin's alike.

Failed logins are counted in Redis in three fixed windows of WINDOW seconds, each starting
with its first failure:

- per username and client address: MAX_FAILURES (5). Counted per address so that nobody
  can lock a user out from elsewhere; a successful login clears it;
- per client address, any username: RUNYARD_LOGIN_ADDRESS_MAX_FAILURES, against a spray
  of usernames from one address;
- all logins: RUNYARD_LOGIN_GLOBAL_MAX_FAILURES, against a spray from many addresses.
  While it holds, nobody can log in: the price of slowing a distributed guesser.

Once a count reaches its limit, the attempts it covers are refused with 429 and Retry-After
without checking the password, until its window is over. Failures and successes are seen
through Django's auth signals, so every form that calls authenticate() with the request
(ours, the admin's) is counted; `throttled` wraps the login views to refuse before that.

The client address is REMOTE_ADDR. X-Forwarded-For counts only when REMOTE_ADDR is one of
RUNYARD_TRUSTED_PROXIES: otherwise anyone could name any address (a victim's, to lock them
out, or a new one for every guess).

If Redis cannot be reached, logins are not limited (and a warning is logged): an outage of
Redis must not lock every operator out of the dashboard.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
from collections.abc import Callable
from functools import cache, wraps
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, UsernameField
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.auth.views import LoginView
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from redis.commands.core import Script

from runs.redis_client import redis_client

log = logging.getLogger(__name__)

MAX_FAILURES = 5  # per username and address
WINDOW = 300  # seconds
KEY_PREFIX = "runyard:login-failures"

# KEYS the counters; ARGV now ms, window ms. Each starts a new window when its last is over.
_FAIL = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'count', 'since')
  local count, since = tonumber(state[1]), tonumber(state[2])
  if count == nil or since == nil or now - since >= window then
    count, since = 0, now
  end
  redis.call('HSET', key, 'count', count + 1, 'since', since)
  redis.call('PEXPIRE', key, math.max(since + window - now, 1))
end
return 1
"""

View = Callable[..., HttpResponseBase]


def throttled(view: View) -> View:
    """A login view that answers 429 while the attempt's username, address or site is locked."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        wait = seconds_locked(request, _posted_username(request)) if request.method == "POST" else 0
        return locked_out(request, wait) if wait else view(request, *args, **kwargs)

    return wrapper


login_view = throttled(LoginView.as_view())


def locked_out(request: HttpRequest, wait: float) -> HttpResponse:
    minutes = math.ceil(wait / 60)
    # An unbound form: the password is not checked, so a locked-out guess learns nothing.
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    message = f"Too many attempts, try again in {minutes} minute{'s' if minutes != 1 else ''}."
    context = {"form": form, "locked_out": message, "next": request.POST.get("next", "")}
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(math.ceil(wait))
    add_never_cache_headers(response)
    return response


@receiver(user_login_failed, dispatch_uid="runyard-login-failed")
def _count_failure(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kw: Any) -> None:
    if request is not None:
        record_failure(request, normalize_username(str(credentials.get("username", ""))))


@receiver(user_logged_in, dispatch_uid="runyard-logged-in")
def _clear_on_login(sender: Any, request: HttpRequest | None, user: Any, **kw: Any) -> None:
    # Only this username's count: a valid account must not wipe its address's count.
    if request is not None and request.method == "POST":
        clear_failures(request, normalize_username(user.get_username()))


def normalize_username(username: str) -> str:
    """The username as the login form hands it to authenticate(): stripped, NFKC.

    Also case-folded: the lookup is case-sensitive, so "ROOT" may be another account, but
    counting both together only makes guesses from one address stop sooner.
    """
    try:
        cleaned = UsernameField().to_python(username)
    except ValidationError:
        cleaned = username
    return str(cleaned or "").casefold()


def _posted_username(request: HttpRequest) -> str:
    return normalize_username(request.POST.get("username", ""))


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or past trusted proxies the right-most untrusted hop.

    Every proxy appends the address it was connected from, so only the entries added by our
    own proxies can be believed; what lies left of them is the client's to write.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()] + [remote]
    while len(hops) > 1 and _trusted(hops[-1]):
        hops.pop()
    return hops[-1]


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _trusted_networks(tuple(settings.RUNYARD_TRUSTED_PROXIES)))


@cache
def _trusted_networks(entries: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(entry, strict=False) for entry in entries]
    except ValueError as exc:
        raise ImproperlyConfigured(f"RUNYARD_TRUSTED_PROXIES: {exc}") from exc


def _keys(request: HttpRequest, username: str) -> list[tuple[str, int]]:
    """Each counter that covers this attempt, with its limit (0: no limit)."""
    address = client_address(request)
    return [
        (_key("user", f"{username}\x00{address}"), MAX_FAILURES),
        (_key("address", address), settings.RUNYARD_LOGIN_ADDRESS_MAX_FAILURES),
        (_key("global", ""), settings.RUNYARD_LOGIN_GLOBAL_MAX_FAILURES),
    ]


def _key(scope: str, value: str) -> str:
    # Hashed: usernames typed at a login form (sometimes passwords) do not belong in Redis.
    return f"{KEY_PREFIX}:{scope}:{hashlib.sha256(value.encode()).hexdigest()}"


def _now_ms() -> int:
    return int(timezone.now().timestamp() * 1000)


def seconds_locked(request: HttpRequest, username: str) -> float:
    """Seconds until this username and address may try again; 0 if they may now."""
    keys = [(key, limit) for key, limit in _keys(request, username) if limit > 0]
    try:
        pipeline = redis_client().pipeline(transaction=False)
        for key, _ in keys:
            pipeline.hmget(key, ["count", "since"])
        states = pipeline.execute()
    except redis.RedisError:
        log.warning("login rate limit unavailable: Redis did not answer", exc_info=True)
        return 0
    now, waits = _now_ms(), [0.0]
    for (_, limit), (count, since) in zip(keys, states, strict=True):
        if count is not None and since is not None and int(count) >= limit:
            waits.append((int(since) + WINDOW * 1000 - now) / 1000)
    return max(waits)


def record_failure(request: HttpRequest, username: str) -> None:
    keys = [key for key, _ in _keys(request, username)]
    try:
        _fail_script(redis_client())(keys=keys, args=[_now_ms(), WINDOW * 1000])
    except redis.RedisError:
        log.warning("login rate limit unavailable: Redis did not answer", exc_info=True)


def clear_failures(request: HttpRequest, username: str) -> None:
    try:
        redis_client().delete(_keys(request, username)[0][0])
    except redis.RedisError:
        log.warning("login rate limit unavailable: Redis did not answer", exc_info=True)


@cache
def _fail_script(client: redis.Redis) -> Script:
    return client.register_script(_FAIL)
