"""The batch rate limit's token bucket: refills in steps, refuses without taking, never negative."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ImproperlyConfigured

from runs import ratelimit
from runs.ratelimit import Bucket, ChargeTooLarge

BUCKET = Bucket(max_tokens=1200, refill_tokens=100, interval_ms=10_000)
T0 = 1_800_000_000_000  # epoch ms


@pytest.fixture
def key():
    name = f"{ratelimit.KEY_PREFIX}:test:{uuid.uuid4().hex}"
    yield name
    ratelimit.redis_client().delete(name)


def take(key: str, cost: int, at_ms: int, bucket: Bucket = BUCKET) -> ratelimit.Decision:
    return ratelimit.take(key, cost, bucket=bucket, now_ms=at_ms)


def test_a_new_bucket_is_full(key):
    decision = take(key, 1200, T0)
    assert decision.allowed and decision.remaining == 0 and decision.limit == 1200


def test_a_charge_larger_than_what_is_left_fails_and_takes_nothing(key):
    assert take(key, 1000, T0).remaining == 200
    refused = take(key, 201, T0 + 1)
    assert not refused.allowed and refused.remaining == 200
    assert take(key, 200, T0 + 2).allowed
    assert take(key, 1, T0 + 3).allowed is False


def test_reset_is_when_enough_tokens_for_this_charge_are_back(key):
    take(key, 1150, T0)
    refused = take(key, 300, T0 + 4_000)  # needs 250 more: three refills of 100
    assert not refused.allowed
    assert refused.reset_ms == T0 + 30_000
    assert refused.retry_after_ms == 26_000 and refused.retry_after_seconds == 26
    assert not take(key, 300, T0 + 29_999).allowed
    assert take(key, 300, T0 + 30_000).allowed


def test_tokens_come_back_in_steps_of_the_refill_every_interval(key):
    take(key, 1200, T0)
    assert take(key, 1, T0 + 9_999).allowed is False
    assert take(key, 100, T0 + 10_000).allowed
    assert take(key, 1, T0 + 19_999).allowed is False
    later = take(key, 301, T0 + 45_000)  # three more refills since T0 + 10 s
    assert not later.allowed and later.remaining == 300


def test_refills_stop_at_the_bucket_size(key):
    take(key, 1200, T0)
    assert not take(key, 1201, T0 + 3_600_000).allowed
    assert take(key, 1200, T0 + 3_600_000).remaining == 0


def test_a_full_bucket_counts_its_next_refill_from_the_first_charge(key):
    take(key, 1, T0)  # creates the bucket full, anchored at T0
    take(key, 1199, T0 + 25_000)  # full again by then: the anchor moves to T0 + 25 s
    assert take(key, 100, T0 + 30_000).allowed is False
    assert take(key, 100, T0 + 35_000).allowed


def test_a_clock_that_goes_back_mints_no_tokens(key):
    take(key, 1200, T0)
    assert take(key, 1, T0 - 60_000).allowed is False
    assert take(key, 100, T0 + 10_000).allowed


def test_an_accepted_charge_is_forgotten_once_the_bucket_would_be_full(key):
    take(key, 250, T0)
    ttl = ratelimit.redis_client().pttl(key)
    assert 0 < ttl <= (3 + 1) * 10_000


def test_concurrent_charges_never_spend_the_same_tokens(key):
    with ThreadPoolExecutor(max_workers=8) as pool:
        decisions = list(pool.map(lambda _: take(key, 100, T0), range(20)))
    assert sum(d.allowed for d in decisions) == 12
    assert take(key, 1, T0).allowed is False


def test_retry_after_is_at_least_one_second():
    decision = ratelimit.Decision(allowed=False, limit=1, remaining=0, reset_ms=T0 + 1, now_ms=T0)
    assert decision.retry_after_seconds == 1
    assert ratelimit.Decision(False, 1, 0, T0 + 1_001, T0).retry_after_seconds == 2


def test_the_bucket_comes_from_settings(settings):
    settings.RUNYARD_BATCH_RATE_LIMIT_MAX = 50
    settings.RUNYARD_BATCH_RATE_LIMIT_REFILL = 5
    settings.RUNYARD_BATCH_RATE_LIMIT_INTERVAL = "1m30s"
    assert Bucket.from_settings() == Bucket(max_tokens=50, refill_tokens=5, interval_ms=90_000)


@pytest.mark.parametrize(("name", "value"), [("INTERVAL", "often"), ("REFILL", 0), ("MAX", 0)])
def test_unusable_settings_are_refused(settings, name, value):
    setattr(settings, f"RUNYARD_BATCH_RATE_LIMIT_{name}", value)
    with pytest.raises(ImproperlyConfigured, match="RUNYARD_BATCH_RATE_LIMIT"):
        Bucket.from_settings()


def test_a_charge_larger_than_the_bucket_can_never_pass(settings):
    settings.RUNYARD_BATCH_RATE_LIMIT_MAX = 500
    with pytest.raises(ChargeTooLarge, match="limit of 500 items") as caught:
        ratelimit.charge_batch_items(environment_id=-1, count=501)
    assert caught.value.limit == 500 and caught.value.count == 501


def test_each_environment_has_its_own_bucket():
    now = datetime(2027, 1, 1, tzinfo=UTC)
    base = uuid.uuid4().int % 10**9  # ids no real environment has
    first, second = -base - 1, -base - 2
    try:
        assert ratelimit.charge_batch_items(environment_id=first, count=1200, now=now).allowed
        assert not ratelimit.charge_batch_items(environment_id=first, count=1, now=now).allowed
        assert ratelimit.charge_batch_items(environment_id=second, count=1200, now=now).allowed
    finally:
        ratelimit.redis_client().delete(f"{ratelimit.KEY_PREFIX}:{first}", f"{ratelimit.KEY_PREFIX}:{second}")
