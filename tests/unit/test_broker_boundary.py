"""The Celery executor's boundary: third-party errors become the project's, and how long a
call on a Redis that does not answer may take (the bounds README and docs/reliability.md
state for ``JOBSET_CONNECT_TIMEOUT_S``).

No server here: the mapping is exercised with the errors redis-py, kombu and Celery raise,
and the retry window with a function that fails the way a lost connection does.
"""

from __future__ import annotations

import time

import kombu.exceptions
import pytest
import redis
from celery.exceptions import BackendStoreError

from jobset.errors import (
    BrokerError,
    BrokerUnavailableError,
    ConfigurationError,
    JobSetError,
    JobSetNotFoundError,
)
from jobset.executors.celery.boundary import mapped_errors, where
from jobset.executors.celery.config import celery_config, producer_config
from jobset.executors.celery.connect import (
    CALL_BOUND_TIMEOUTS,
    WAIT_BOUND_PAUSES_S,
    WAIT_BOUND_TIMEOUTS,
    WindowRetry,
    call_bound_s,
    retry_window_s,
    wait_bound_s,
)
from jobset.settings import ENV_CONNECT_TIMEOUT_S, Settings, variables

KEY = "u" * 32
URL = "redis://:hunter2-secret@10.1.2.3:6390/0"
SETTINGS = Settings(broker_url=URL, secret_key=KEY, connect_timeout_s=2)


@pytest.mark.parametrize(
    "raised",
    [
        redis.ConnectionError("Error 111 connecting to 10.1.2.3:6390. Connection refused."),
        redis.TimeoutError("Timeout reading from 10.1.2.3:6390"),
        kombu.exceptions.OperationalError("Error 111 connecting to 10.1.2.3:6390."),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_unreachable_redis_is_broker_unavailable_chained_and_named_without_its_password(
    raised,
):
    with pytest.raises(BrokerUnavailableError) as caught, mapped_errors(SETTINGS):
        raise raised
    error = caught.value
    assert error.__cause__ is raised
    assert isinstance(error, BrokerError) and isinstance(error, JobSetError)
    message = str(error)
    assert message.startswith("cannot reach Redis at redis://:***@10.1.2.3:6390/0: ")
    assert type(raised).__name__ in message  # the cause, by name and text
    assert "JOBSET_CONNECT_TIMEOUT_S=2 s" in message
    assert "hunter2" not in message + repr(error) + error.url


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (redis.AuthenticationError("invalid username-password pair"), ConfigurationError),
        (redis.exceptions.NoPermissionError("NOPERM no rights"), ConfigurationError),
        (redis.ResponseError("OOM command not allowed"), BrokerError),
        (redis.exceptions.ReadOnlyError("READONLY replica"), BrokerError),
        (kombu.exceptions.ChannelError("no such exchange"), BrokerError),
        (BackendStoreError("failed to store"), BrokerError),
    ],
    ids=lambda x: getattr(x, "__name__", type(x).__name__),
)
def test_other_redis_kombu_and_celery_errors_become_the_projects(raised, expected):
    with pytest.raises(expected) as caught, mapped_errors(SETTINGS):
        raise raised
    assert type(caught.value) is expected and caught.value.__cause__ is raised
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("raised", [JobSetNotFoundError("x"), ValueError("bad"), KeyError("k")])
def test_errors_that_are_not_third_party_pass_through_as_they_are(raised):
    with pytest.raises(type(raised)) as caught, mapped_errors(SETTINGS):
        raise raised
    assert caught.value is raised


def test_a_broker_apart_from_the_results_is_named_too():
    two = Settings(
        broker_url="redis://:a-secret@q.example:6379/0",
        result_backend="redis://:b-secret@r.example:6379/1",
        secret_key=KEY,
    )
    text = where(two)
    assert "q.example" in text and "r.example" in text
    assert "secret" not in text


# ---------------------------------------------------------------- the window of retries


def _failing(error: Exception, calls: list[float]):
    def do():
        calls.append(time.monotonic())
        raise error

    return do


def test_tries_that_fail_are_retried_with_back_off_until_the_window_closes():
    calls: list[float] = []
    retry = WindowRetry(window_s=1.0)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        retry.call_with_retry(_failing(redis.ConnectionError("refused"), calls), lambda _: None)
    elapsed = time.monotonic() - started
    # 0.1, 0.2, 0.4 s of back-off fit in 1 s; the next pause (0.8 s) would not.
    assert len(calls) == 4
    assert 0.6 < elapsed < 1.0


def test_a_try_that_succeeds_within_the_window_returns_its_reply_even_none():
    replies = iter([redis.ConnectionError("reset"), redis.TimeoutError("slow"), None])

    def do():
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    failures: list[int] = []
    value = WindowRetry(window_s=5.0).call_with_retry(
        do, lambda _e, n: failures.append(n), with_failure_count=True
    )
    assert value is None and failures == [1, 2]


def test_an_error_that_is_not_a_lost_connection_is_raised_at_once():
    calls: list[float] = []
    with pytest.raises(redis.ResponseError):
        WindowRetry(window_s=5.0).call_with_retry(
            _failing(redis.ResponseError("WRONGTYPE"), calls), lambda _: None
        )
    assert len(calls) == 1


def test_nested_retries_share_the_window_of_the_outermost_call():
    """redis-py retries a command, and the reconnect inside it retries too: one window."""
    retry = WindowRetry(window_s=1.0)
    inner_calls: list[float] = []

    def command():
        return retry.call_with_retry(
            _failing(redis.ConnectionError("refused"), inner_calls), lambda _: None
        )

    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        retry.call_with_retry(command, lambda _: None)
    assert time.monotonic() - started < 1.0 + 0.5
    # The window is free again for the next call.
    again: list[float] = []
    with pytest.raises(redis.ConnectionError):
        retry.call_with_retry(_failing(redis.ConnectionError("refused"), again), lambda _: None)
    assert len(again) == 4


# ---------------------------------------------------------------- the documented bounds


def test_the_bounds_are_those_the_variable_documents():
    assert retry_window_s(SETTINGS) == 4
    assert call_bound_s(SETTINGS) == 6
    assert wait_bound_s(SETTINGS) == 20
    doc = next(v.doc for _, v in variables(Settings) if v.env == ENV_CONNECT_TIMEOUT_S)
    assert f"within {CALL_BOUND_TIMEOUTS} x this" in doc
    assert f"within {WAIT_BOUND_TIMEOUTS} x this + {WAIT_BOUND_PAUSES_S:g} s" in doc
    assert "retries for twice this" in doc


def test_every_client_of_a_producer_gives_up_a_try_after_the_connect_timeout():
    config = producer_config(SETTINGS)
    assert config["broker_transport_options"]["socket_timeout"] == 2
    assert config["broker_transport_options"]["socket_connect_timeout"] == 2
    assert config["redis_socket_timeout"] == 2
    assert config["redis_socket_connect_timeout"] == 2
    assert config["result_backend_transport_options"]["retry_policy"]["timeout"] == 4
    assert config["result_backend_always_retry"] is False
    # Workers keep theirs: a result store must outlive a failover.
    workers = celery_config(SETTINGS)
    assert "socket_timeout" not in workers["broker_transport_options"]
    assert workers["result_backend_always_retry"] is True
