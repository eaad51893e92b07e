"""The project's Redis clients, all built by :func:`redis_client` from a URL and the settings.

A plain URL (``redis://``, ``rediss://``, ``unix://``, ``valkey://``) gives a client of that
server.  A Sentinel URL (:mod:`jobset.urls`) gives a client of whichever server the
sentinels call the primary of ``settings.sentinel_master``: each new connection asks them,
and a connection to a server that was demoted (it answers READONLY) is dropped and asked
again, so a retrying client follows a failover.  Celery's transport and result backend get
the same sentinels, master name and password through :func:`celery_sentinel_options`.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from ... import urls
from ...deadline import Deadline, poll
from ...settings import Settings

# How long a write that must outlive a failover waits for a replica to confirm it.  The
# primary replicates asynchronously: without the wait, a result it acknowledged in its last
# moment is gone after the failover while the producer may already have read "done".
REPLICA_WAIT_MS = 1000
NO_REPLICA_RECHECK_S = 2.0
# Per process: until when not to wait, after a WAIT found no replica.
_replica_missing_until = [0.0]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def redis_client(
    url: str,
    settings: Settings,
    *,
    retry: Retry | None = None,
    socket_timeout: float | None = None,
    health_check_interval: int = 0,
) -> redis.Redis:
    """A client of the server ``url`` names, directly or through its sentinels.

    ``retry`` (with ``retry_on_error`` for connection and timeout errors) is how long a
    call rides out a lost server; None keeps redis-py's default.  Connecting is bounded by
    ``settings.connect_timeout_s``.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout_s,
        "socket_timeout": socket_timeout,
        "health_check_interval": health_check_interval,
    }
    if retry is not None:
        options.update(retry=retry, retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    if not urls.is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    parsed = urls.parse_sentinel(url)
    sentinel = Sentinel(
        list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs(settings, parsed, socket_timeout)
    )
    return sentinel.master_for(
        settings.sentinel_master or "",
        redis_class=_PrimaryClient,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **tls_options(parsed.tls),
        **options,
    )


# How long a producer's call retries a Redis that does not answer, and how long it may take
# in all, in units of JOBSET_CONNECT_TIMEOUT_S (C): each try (a connect, or one reply)
# gives up after C; tries are retried with back-off while the window lasts; a try started
# just before the window ends may take C more.  README and docs/reliability.md state these.
RETRY_WINDOW_TIMEOUTS = 2
CALL_BOUND_TIMEOUTS = RETRY_WINDOW_TIMEOUTS + 1
# A wait rides out one call that failed and gives up at the next failed one in a row; its
# subscription may have spent one window first.  Plus its pauses (at most a second each).
WAIT_BOUND_TIMEOUTS = 3 * CALL_BOUND_TIMEOUTS
WAIT_BOUND_PAUSES_S = 2.0


def retry_window_s(settings: Settings) -> float:
    """How long a producer's Redis call retries tries that failed: ``2 x C``."""
    return float(RETRY_WINDOW_TIMEOUTS * settings.connect_timeout_s)


def call_bound_s(settings: Settings) -> float:
    """The longest a producer's call takes to fail on a Redis gone or frozen: ``3 x C``."""
    return float(CALL_BOUND_TIMEOUTS * settings.connect_timeout_s)


def wait_bound_s(settings: Settings) -> float:
    """The longest a wait (``result()``, ``wait_for_final_state()``) takes to fail once
    Redis is gone or frozen, unless its own deadline comes first: ``9 x C + 2`` s."""
    return WAIT_BOUND_TIMEOUTS * settings.connect_timeout_s + WAIT_BOUND_PAUSES_S


# The window of the call this thread is in: redis-py nests retries (a command's retry
# reconnects, and connecting retries too), and nested ones must share one window, or a
# silent server would cost the product of their tries.
_window = threading.local()


class WindowRetry(Retry):
    """redis-py's ``Retry`` bounded by time rather than by a count of tries.

    A failed try (connection refused or reset, no reply within the socket timeout) is
    tried again after 0.1 s, 0.2 s, 0.4 s, 0.8 s, then every second, as long as the next
    try starts within ``window_s`` of the call's first one; then the last error is raised.
    Refused connections fail fast, so a restart or failover of up to ``window_s`` is
    ridden out; a server that accepts and never answers (frozen, partitioned) costs one
    socket timeout a try, so the call ends within ``window_s`` plus one try.
    """

    def __init__(self, window_s: float) -> None:
        # The count is unused (-1: "not bounded by a count"): the window bounds the tries.
        super().__init__(ExponentialBackoff(cap=1.0, base=0.05), -1)
        self.window_s = window_s

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, WindowRetry)
            and other.window_s == self.window_s
            and super().__eq__(other) is True
        )

    __hash__ = Retry.__hash__

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        outermost = getattr(_window, "deadline", None) is None
        if outermost:
            _window.deadline = Deadline(self.window_s)
        window: Deadline = _window.deadline
        failures = 0
        last: list[Exception] = []

        def attempt() -> tuple[T] | None:
            nonlocal failures
            try:
                return (do(),)  # a tuple: None is a reply too (GET of a missing key)
            except self._supported_errors as error:
                if is_retryable is not None and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if self._is_retryable is not None and not self._is_retryable(error):
                    raise
                if self._backoff.compute(failures) >= (window.remaining() or 0.0):
                    raise  # the next try would start after the window
                last[:] = [error]
                return None

        def back_off(remaining: float | None) -> None:
            time.sleep(min(self._backoff.compute(failures), remaining or 0.0))

        def closed() -> NoReturn:
            raise last[0]

        try:
            return poll(attempt, window, closed, pause=back_off)[0]
        finally:
            if outermost:
                _window.deadline = None


def window_retry(settings: Settings) -> WindowRetry:
    """The retry of a producer's Redis clients: :func:`retry_window_s` of ``settings``."""
    return WindowRetry(retry_window_s(settings))


class _PrimaryClient(redis.Redis):
    """A client of the sentinels' primary whose ``close()`` also closes its connections to
    the sentinels (each client has a ``Sentinel`` of its own)."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None:
            manager.close()


def replicated(settings: Settings) -> bool:
    """Whether the project's keys live on a replicated Redis (behind sentinels)."""
    return urls.is_sentinel(settings.backend_url)


def execute_replicated(pipe: Any, settings: Settings) -> list[Any]:
    """Execute ``pipe`` and, on a replicated Redis, return once a replica has its writes.

    The pipeline ends with a WAIT for one replica (its writes share one connection, which
    is what WAIT is about), bounded by :data:`REPLICA_WAIT_MS` (and by half of
    ``connect_timeout_s``, the producer's socket timeout).  A WAIT that no replica
    answered (the replica was promoted and no other is online yet) is logged, and for
    :data:`NO_REPLICA_RECHECK_S` this process writes without waiting.  Returns the replies
    of the caller's commands.
    """
    waits = replicated(settings) and time.monotonic() >= _replica_missing_until[0]
    if waits:
        # Within half a try: a WAIT as long as the socket timeout would read as a dead server.
        pipe.wait(1, min(REPLICA_WAIT_MS, 500 * settings.connect_timeout_s))
    replies: list[Any] = pipe.execute()
    if not waits:
        return replies
    if replies[-1] < 1:
        _replica_missing_until[0] = time.monotonic() + NO_REPLICA_RECHECK_S
        logger.warning(
            "no replica confirmed a write within %d ms; not waiting for one for %.0f s",
            REPLICA_WAIT_MS,
            NO_REPLICA_RECHECK_S,
        )
    return replies[:-1]


def sentinel_kwargs(
    settings: Settings, parsed: urls.SentinelUrl, socket_timeout: float | None = None
) -> dict[str, Any]:
    """How to talk to the sentinels themselves: their password, timeouts, TLS."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout_s,
        # A sentinel that stopped answering must not hold a client past its deadline.
        "socket_timeout": socket_timeout or settings.connect_timeout_s,
        **tls_options(parsed.tls),
    }
    if settings.sentinel_password:
        kwargs["credential_provider"] = SentinelCredentials(settings.sentinel_password)
    return kwargs


class SentinelCredentials(redis.CredentialProvider):
    """The sentinels' password, handed to redis-py as a credential provider rather than
    as a ``password`` option: these options travel in Celery's transport options, which
    ``inspect stats``, ``inspect conf`` and ``celery report`` echo to whoever may ask
    (Celery hides only a top-level ``password``).  Its repr and JSON form hide it."""

    def __init__(self, password: str) -> None:
        self._password = password

    def get_credentials(self) -> tuple[str]:
        return (self._password,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"

    def __json__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SentinelCredentials) and other._password == self._password

    def __hash__(self) -> int:
        return hash((type(self), self._password))


def tls_options(tls: dict[str, str]) -> dict[str, Any]:
    """redis-py's TLS options from a URL's ``ssl_*`` query options (none: no TLS)."""
    if not tls:
        return {}
    options: dict[str, Any] = {"ssl": True, **tls}
    if "ssl_cert_reqs" in tls:
        options["ssl_cert_reqs"] = _CERT_REQS.get(tls["ssl_cert_reqs"].lower(), ssl.CERT_REQUIRED)
    return options


def celery_sentinel_options(url: str, settings: Settings) -> dict[str, Any]:
    """Transport options that point kombu or Celery's ``SentinelBackend`` at the sentinels
    of ``url``; empty for a plain URL."""
    if not urls.is_sentinel(url):
        return {}
    parsed = urls.parse_sentinel(url)
    return {
        "master_name": settings.sentinel_master,
        "sentinel_kwargs": sentinel_kwargs(settings, parsed),
    }


def celery_ssl_options(url: str) -> dict[str, Any] | None:
    """Celery's ``broker_use_ssl`` / ``redis_backend_use_ssl`` for a Sentinel URL with TLS."""
    if not urls.is_sentinel(url):
        return None
    tls = urls.parse_sentinel(url).tls
    if not tls:
        return None
    options = tls_options(tls)
    options.pop("ssl")
    return options
