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


def test_task_events_are_on_unless_turned_off_and_an_unknown_choice_is_refused():
    import pytest

    from jobset.errors import ConfigurationError

    for choice, on in (("batched", True), ("each", True), ("off", False)):
        config = celery_config(Settings(secret_key=KEY, task_events=choice))
        assert config["worker_send_task_events"] is on, choice
    assert Settings(secret_key=KEY).task_events == "batched"
    env = {"JOBSET_SECRET_KEY": KEY, "JOBSET_TASK_EVENTS": "off"}
    assert Settings.from_env(env).task_events == "off"
    with pytest.raises(ConfigurationError, match="JOBSET_TASK_EVENTS must be one of"):
        Settings.from_env({"JOBSET_SECRET_KEY": KEY, "JOBSET_TASK_EVENTS": "some"})
    with pytest.raises(ConfigurationError, match="JOBSET_TASK_EVENTS"):
        Settings(secret_key=KEY, task_events="every")


class _Timer:
    def __init__(self) -> None:
        self.calls: list[tuple[float, object]] = []

    def call_after(self, delay: float, fn: object) -> object:
        self.calls.append((delay, fn))

        class Entry:
            def cancel(self) -> None:
                pass

        return Entry()


def test_batched_task_events_go_out_as_one_message_per_batch_and_at_shutdown():
    from celery.events.dispatcher import EventDispatcher

    from workers.events import EVENT_BATCH_LIMIT, EVENT_BATCH_S, BatchedEvents

    published: list[tuple[object, str]] = []

    class Dispatcher(EventDispatcher):
        def _publish(self, event: object, producer: object, routing_key: str, **_: object) -> None:
            published.append((event, routing_key))

    dispatcher = Dispatcher(connection=None, hostname="w@h", enabled=False, buffer_group=["task"])
    dispatcher.enabled, dispatcher.producer = True, object()

    class Consumer:
        event_dispatcher = dispatcher
        hub = object()
        timer = _Timer()

    consumer = Consumer()
    step = BatchedEvents.__new__(BatchedEvents)
    step.consumer, step.tref = consumer, None
    step.start(consumer)
    assert dispatcher.buffer_limit == EVENT_BATCH_LIMIT
    for kind in ("task-received", "task-started", "task-succeeded"):
        dispatcher.send(kind, uuid="t1")
    # One timer for the batch, nothing sent before it fires.
    assert [delay for delay, _ in consumer.timer.calls] == [EVENT_BATCH_S]
    assert published == []
    _, fire = consumer.timer.calls[0]
    fire()  # type: ignore[operator]
    ((batch, routing_key),) = published
    assert routing_key == "task.multi"
    assert [e["type"] for e in batch] == ["task-received", "task-started", "task-succeeded"]
    dispatcher.send("task-received", uuid="t2")
    step.stop(consumer)  # what is buffered goes out when the consumer stops
    assert [e["uuid"] for e in published[-1][0]] == ["t2"]
