"""Celery's configuration for reliability: lease sweeps and renewals, bounded tries, time limits."""

from __future__ import annotations

from jobset.executors.celery.config import celery_config, restore_interval_s
from jobset.executors.celery.publish import time_limits
from jobset.settings import Settings

KEY = "s3cret-signing-key-of-32-bytes-at-least"


def test_the_sweep_for_expired_leases_runs_often_enough_for_the_visibility_timeout():
    assert restore_interval_s(3) == 1
    assert restore_interval_s(20) == 5
    assert restore_interval_s(300) == 10
    transport = celery_config(Settings(secret_key=KEY, visibility_timeout_s=8))[
        "broker_transport_options"
    ]
    assert transport["visibility_timeout"] == 8
    assert transport["unacked_restore_interval"] == 2
    assert transport["unacked_restore_throttle"] == 1  # kombu's default 10 would add 10x


def test_publishing_and_connecting_give_up_after_bounded_tries():
    config = celery_config(Settings(secret_key=KEY, connect_timeout_s=2))
    policy = config["task_publish_retry_policy"]
    assert policy["max_retries"] * policy["interval_max"] <= 5
    assert config["broker_connection_timeout"] == 2
    assert config["broker_transport_options"]["socket_connect_timeout"] == 2


def test_a_lease_is_renewed_three_times_per_visibility_timeout_at_least():
    from workers.lifecycle import lease_renewal_s

    assert lease_renewal_s(3) == 1
    assert lease_renewal_s(300) == 10
    assert lease_renewal_s(0.6) == 0.5


def test_a_worker_whose_pool_cannot_renew_leases_is_told_so_and_a_prefork_one_is_not():
    from celery.concurrency import get_implementation

    from workers.lifecycle import renewal_caveat

    assert renewal_caveat(get_implementation("prefork"), 60) is None
    for pool in ("solo", "threads"):
        caveat = renewal_caveat(get_implementation(pool), 60)
        assert caveat is not None and "JOBSET_VISIBILITY_TIMEOUT_S=60 s" in caveat, pool


def test_with_the_defaults_a_dead_workers_sub_job_is_swept_back_within_a_minute_and_a_half():
    from workers.lifecycle import lease_renewal_s

    timeout_s = Settings(secret_key=KEY).visibility_timeout_s
    # Live leases are renewed six times per timeout: a busy event loop has 50 s of slack.
    assert lease_renewal_s(timeout_s) <= 10
    # An expired lease waits at most one sweep; the last renewal was before the death.
    assert restore_interval_s(timeout_s) <= 10
    assert timeout_s + restore_interval_s(timeout_s) < 90


def test_a_time_limit_becomes_a_soft_and_a_slightly_later_hard_limit():
    assert time_limits(None) == {}
    assert time_limits(2) == {"soft_time_limit": 2, "time_limit": 3.0}
    assert time_limits(1000) == {"soft_time_limit": 1000, "time_limit": 1050.0}
