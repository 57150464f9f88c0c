"""The batch rate limit: a token bucket per environment, kept in Redis.

Every batch item costs one token, charged for the whole batch when it is created (reference
engine notes 2.12). The bucket holds at most RUNYARD_BATCH_RATE_LIMIT_MAX tokens and gains
RUNYARD_BATCH_RATE_LIMIT_REFILL of them at the end of every RUNYARD_BATCH_RATE_LIMIT_INTERVAL,
counted from the last refill. A charge larger than what is available fails and takes
nothing, so the bucket never goes negative (the reference server's bug, PR #2837).

The check and the take are one Lua script: concurrent API processes cannot both spend the
same tokens. Time comes from the caller (epoch milliseconds), never from the Redis clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from redis.commands.core import Script

from runs.options import parse_duration
from runs.redis_client import redis_client

KEY_PREFIX = "runyard:batch-rate"

# KEYS[1] the bucket; ARGV max tokens, refill tokens, interval ms, now ms, cost.
# Returns {allowed (0/1), tokens left, reset ms}: for a refused charge, reset is when the
# bucket will hold `cost` tokens; for an accepted one, when the next refill comes.
_TAKE = """
local max_tokens = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'refilled_at')
local tokens = tonumber(state[1])
local refilled_at = tonumber(state[2])
if tokens == nil or refilled_at == nil then
  tokens, refilled_at = max_tokens, now
elseif now > refilled_at then
  local steps = math.floor((now - refilled_at) / interval)
  tokens = tokens + steps * refill
  refilled_at = refilled_at + steps * interval
end
if tokens >= max_tokens then
  -- A full bucket gains nothing while it waits: its next refill counts from now.
  tokens, refilled_at = max_tokens, now
end
if cost > tokens then
  return {0, tokens, refilled_at + math.ceil((cost - tokens) / refill) * interval}
end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', tokens, 'refilled_at', refilled_at)
-- Once full again the bucket is the same as no bucket: let Redis forget it.
redis.call('PEXPIRE', KEYS[1], (math.ceil((max_tokens - tokens) / refill) + 1) * interval)
return {1, tokens, refilled_at + interval}
"""


@dataclass(frozen=True)
class Bucket:
    """The size and refill rate of every environment's bucket."""

    max_tokens: int
    refill_tokens: int
    interval_ms: int

    @classmethod
    def from_settings(cls) -> Bucket:
        """The configured bucket. Raises ImproperlyConfigured for values it cannot work with."""
        interval = settings.RUNYARD_BATCH_RATE_LIMIT_INTERVAL
        seconds = parse_duration(interval) if isinstance(interval, str) else None
        bucket = cls(
            max_tokens=settings.RUNYARD_BATCH_RATE_LIMIT_MAX,
            refill_tokens=settings.RUNYARD_BATCH_RATE_LIMIT_REFILL,
            interval_ms=(seconds or 0) * 1000,
        )
        if bucket.max_tokens < 1 or bucket.refill_tokens < 1 or bucket.interval_ms < 1:
            raise ImproperlyConfigured(
                "RUNYARD_BATCH_RATE_LIMIT_MAX and _REFILL must be at least 1 and _INTERVAL a duration "
                f'like "10s" (got {bucket.max_tokens}, {bucket.refill_tokens}, {interval!r})'
            )
        return bucket


@dataclass(frozen=True)
class Decision:
    """The outcome of one charge, with what a 429 response or error needs to tell."""

    allowed: bool
    limit: int  # the bucket's size
    remaining: int  # tokens left after this charge (refused: available now)
    reset_ms: int  # epoch ms; refused: when this same charge would succeed
    now_ms: int

    @property
    def retry_after_ms(self) -> int:
        return max(self.reset_ms - self.now_ms, 0)

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds to wait, rounded up and at least 1 (the Retry-After header)."""
        return max(math.ceil(self.retry_after_ms / 1000), 1)


class ChargeTooLarge(ValueError):
    """A charge the bucket can never pay for, however long the caller waits."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"A batch of {count:,} items can never pass the batch rate limit of {limit:,} items: "
            f"send at most {limit:,} items per batch"
        )
        self.count, self.limit = count, limit


def charge_batch_items(*, environment_id: int, count: int, now: datetime | None = None) -> Decision:
    """Take `count` tokens from the environment's bucket, or none if it holds fewer.

    Raises ChargeTooLarge when `count` exceeds the bucket's size.
    """
    bucket = Bucket.from_settings()
    if count > bucket.max_tokens:
        raise ChargeTooLarge(count, bucket.max_tokens)
    now_ms = int((now or timezone.now()).timestamp() * 1000)
    return take(f"{KEY_PREFIX}:{environment_id}", count, bucket=bucket, now_ms=now_ms)


def take(key: str, cost: int, *, bucket: Bucket, now_ms: int) -> Decision:
    """Run the bucket script for one charge of `cost` tokens at `now_ms`."""
    script = _script(redis_client())
    args = [bucket.max_tokens, bucket.refill_tokens, bucket.interval_ms, now_ms, cost]
    allowed, remaining, reset_ms = script(keys=[key], args=args)
    return Decision(bool(allowed), bucket.max_tokens, max(int(remaining), 0), int(reset_ms), now_ms)


@cache
def _script(client: redis.Redis) -> Script:
    # Sent by its SHA after the first call (EVALSHA, falling back to EVAL).
    return client.register_script(_TAKE)
