"""Where the Celery executor meets Redis, kombu and Celery's result backend: their errors
become the project's, in one place.

As httpx maps httpcore's exceptions in one context manager at its transport's edge, every
public method of :class:`~.executor.CeleryExecutor` and :class:`~.run.CeleryRun` that
reaches Redis runs inside :func:`mapped_errors` (the :func:`maps_errors` decorator), so a
caller of the job set, of the executor or of the command line sees only
:mod:`jobset.errors`, with the original chained as ``__cause__``:

- redis ``AuthenticationError`` and ``NoPermissionError`` (credentials, ACL rights):
  :class:`~jobset.errors.ConfigurationError`;
- redis ``ConnectionError`` and ``TimeoutError``, kombu ``OperationalError``, a socket's
  ``OSError`` (a server gone, refusing, or not answering):
  :class:`~jobset.errors.BrokerUnavailableError`;
- any other redis ``RedisError``, kombu's errors (and amqp's, which it re-exports),
  Celery's ``BackendError``: :class:`~jobset.errors.BrokerError`.

The messages name the server by its URL, password redacted, and say why.  How long a
call may take to fail is bounded by the clients' timeouts and retries (:mod:`.connect`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import kombu.exceptions
import redis
from celery.exceptions import BackendError

from ...errors import BrokerError, BrokerUnavailableError, ConfigurationError
from ...settings import Settings, redact_url
from .connect import retry_window_s

F = TypeVar("F", bound=Callable[..., Any])

# Errors that say the server could not be reached: kombu wraps the transport's connection
# errors in OperationalError; a socket error can surface raw from a TLS handshake.
_UNREACHABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    kombu.exceptions.OperationalError,
    OSError,
)
_REFUSED = (redis.AuthenticationError, redis.exceptions.NoPermissionError)
# kombu raises its own errors and, re-exported, amqp's (ChannelError, ConnectionError).
_FAILED = (
    redis.RedisError,
    kombu.exceptions.KombuError,
    kombu.exceptions.ChannelError,
    kombu.exceptions.ConnectionError,
    BackendError,
)


def where(settings: Settings) -> str:
    """The Redis server(s) a producer talks to, passwords redacted."""
    backend = redact_url(settings.backend_url)
    if settings.broker_url == settings.backend_url:
        return backend
    return f"{redact_url(settings.broker_url)} (queues) or {backend} (results)"


@contextlib.contextmanager
def mapped_errors(settings: Settings) -> Iterator[None]:
    """Raise Redis's, kombu's and Celery's errors inside the block as the project's."""
    try:
        yield
    except _REFUSED as e:
        raise ConfigurationError(
            f"Redis at {where(settings)} refused this producer's credentials or rights: {e}"
        ) from e
    except _UNREACHABLE as e:
        raise BrokerUnavailableError(
            f"cannot reach Redis at {where(settings)}: {_cause(e)} (each try gives up after "
            f"JOBSET_CONNECT_TIMEOUT_S={settings.connect_timeout_s} s, retried for "
            f"{retry_window_s(settings):g} s)",
            url=where(settings),
        ) from e
    except _FAILED as e:
        raise BrokerError(
            f"Redis at {where(settings)} failed a command: {_cause(e)}", url=where(settings)
        ) from e


def maps_errors(method: F) -> F:
    """Run ``method`` (of an object with ``clients``) inside :func:`mapped_errors`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with mapped_errors(self.clients.settings):
            return method(self, *args, **kwargs)

    return cast(F, wrapper)


def _cause(error: BaseException) -> str:
    """The error in one line: its type where its text does not say (``TimeoutError()``)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
