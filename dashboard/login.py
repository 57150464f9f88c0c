"""The login page, with failed attempts limited per username and client address.

After MAX_FAILURES failed logins for one username from one address within WINDOW seconds,
further attempts are refused with 429 ("Too many attempts, try again in N minutes") without
checking the password, until the window that began with the first failure is over. A
successful login clears the count. Counts live in Redis (one small hash per username and
address, expiring with its window); time comes from our clock, as in runs.ratelimit.

If Redis cannot be reached, logins are not limited (and a warning is logged): an outage of
Redis must not lock every operator out of the dashboard.
"""

from __future__ import annotations

import hashlib
import logging
import math
from functools import cache
from typing import Any

import redis
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from redis.commands.core import Script

from runs.ratelimit import redis_client

log = logging.getLogger(__name__)

MAX_FAILURES = 5
WINDOW = 300  # seconds
KEY_PREFIX = "runyard:login-failures"

# KEYS[1] the counter; ARGV now ms, window ms. Starts a new window when the last is over.
_FAIL = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'count', 'since')
local count, since = tonumber(state[1]), tonumber(state[2])
if count == nil or since == nil or now - since >= window then
  count, since = 0, now
end
count = count + 1
redis.call('HSET', KEYS[1], 'count', count, 'since', since)
redis.call('PEXPIRE', KEYS[1], math.max(since + window - now, 1))
return count
"""


class RateLimitedLoginView(LoginView):
    """Django's LoginView, refusing attempts once a username and address failed too often."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = seconds_locked(request)
        if not wait:
            return super().post(request, *args, **kwargs)
        minutes = math.ceil(wait / 60)
        # An unbound form: the password is not checked, so a locked-out guess learns nothing.
        form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
        message = f"Too many attempts, try again in {minutes} minute{'s' if minutes != 1 else ''}."
        response = self.render_to_response(self.get_context_data(form=form, locked_out=message), status=429)
        response["Retry-After"] = str(math.ceil(wait))
        return response

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        record_failure(self.request)
        return super().form_invalid(form)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        clear_failures(self.request)
        return super().form_valid(form)


def _key(request: HttpRequest) -> str:
    username = request.POST.get("username", "").strip().lower()
    address = request.META.get("REMOTE_ADDR", "")
    # Hashed: usernames typed at a login form (sometimes passwords) do not belong in Redis.
    digest = hashlib.sha256(f"{username}\x00{address}".encode()).hexdigest()
    return f"{KEY_PREFIX}:{digest}"


def _now_ms() -> int:
    return int(timezone.now().timestamp() * 1000)


def seconds_locked(request: HttpRequest) -> float:
    """Seconds until this username and address may try again; 0 if they may now."""
    try:
        count, since = redis_client().hmget(_key(request), ["count", "since"])
    except redis.RedisError:
        log.warning("login rate limit unavailable: Redis did not answer", exc_info=True)
        return 0
    if count is None or since is None or int(count) < MAX_FAILURES:
        return 0
    left_ms = int(since) + WINDOW * 1000 - _now_ms()
    return max(left_ms / 1000, 0)


def record_failure(request: HttpRequest) -> None:
    try:
        _fail_script(redis_client())(keys=[_key(request)], args=[_now_ms(), WINDOW * 1000])
    except redis.RedisError:
        log.warning("login rate limit unavailable: Redis did not answer", exc_info=True)


def clear_failures(request: HttpRequest) -> None:
    try:
        redis_client().delete(_key(request))
    except redis.RedisError:
        log.warning("login rate limit unavailable: Redis did not answer", exc_info=True)


@cache
def _fail_script(client: redis.Redis) -> Script:
    return client.register_script(_FAIL)
