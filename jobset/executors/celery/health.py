"""What is checked before a set is sent: Redis reachable, no eviction, a worker of our versions.

A producer pays these once (reachability on every submit, the eviction check once per
executor); each answers in a bounded time, so a set never waits on a Redis that is not there.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...errors import BrokerUnavailableError, ConfigurationError, EvictionPolicyWarning
from ...settings import Settings, redact_url
from .. import versions as version_rules
from ..versions import version_mismatch
from .connect import redis_client


def check_reachable(settings: Settings) -> None:
    """Ping the broker and the result backend once each, bounded by the connect timeout.

    redis-py 8 retries a refused connection with back-off by default, and kombu retries a
    publish: an unreachable Redis would take tens of seconds to surface.  One ping without
    retries says it at once, with the URL (password redacted) and the cause.
    """
    urls = [(settings.broker_url, "broker"), (settings.backend_url, "result backend")]
    if settings.broker_url == settings.backend_url:
        urls = [(settings.broker_url, "broker (and result backend)")]
    for url, what in urls:
        client = redis_client(
            url, settings, socket_timeout=settings.connect_timeout_s, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.ping()
        except redis.AuthenticationError as e:
            raise ConfigurationError(
                f"the {what} at {redact_url(url)} refused the credentials: {e}"
            ) from e
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise BrokerUnavailableError(
                f"cannot reach the {what} at {redact_url(url)} within "
                f"{settings.connect_timeout_s} s: {e}",
                url=redact_url(url),
            ) from e
        finally:
            client.close()


def warn_if_evicting(client: Any, url: str, *, stacklevel: int = 4) -> None:
    """Warn when Redis may evict keys: a result evicted reads as a failed sub-job then."""
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.RedisError:  # CONFIG refused (an ACL, a managed Redis): nothing to say
        return
    policy = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
    if isinstance(policy, bytes):
        policy = policy.decode(errors="replace")
    if policy and policy != "noeviction":
        warnings.warn(
            f"Redis at {redact_url(url)} has maxmemory-policy {policy!r}: under memory "
            "pressure it may evict payloads and results, and their sub-jobs then fail; "
            "set maxmemory-policy noeviction (config/redis.conf does)",
            EvictionPolicyWarning,
            stacklevel=stacklevel,
        )


def version_skew(heartbeats: Iterable[Mapping[str, Any]]) -> str | None:
    """Why no live worker could run this producer's sub-jobs; None if one can (or none is up).

    ``heartbeats`` are the live workers' records (:meth:`CeleryExecutor.heartbeats`).
    """
    mine = dict(version_rules.producer_versions())
    seen: list[str] = []
    for record in heartbeats:
        versions = record.get("versions")
        if not isinstance(versions, dict):
            versions = {}
        # A heartbeat is input from whoever can write to Redis: strings only.
        versions = {k: v for k, v in versions.items() if isinstance(k, str) and isinstance(v, str)}
        problem = version_mismatch(mine, versions)
        if problem is None:
            return None
        seen.append(f"{str(record.get('hostname', '?'))[:255]}: {problem}")
    if not seen:
        return None
    return (
        f"no live worker runs this producer's versions, so its sub-jobs will be refused "
        f"until one does ({'; '.join(seen[:5])})"
    )
