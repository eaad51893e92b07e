"""Settings, built once at the edge and passed to library code as a parameter.

Only :meth:`Settings.from_env` reads the environment; every other module takes a
``Settings``.  Durations carry their unit in the name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import urls
from .errors import ConfigurationError

DEFAULT_BROKER_URL = "redis://localhost:6379/0"

ENV_BROKER_URL = "JOBSET_BROKER_URL"
ENV_RESULT_BACKEND = "JOBSET_RESULT_BACKEND"
ENV_SECRET_KEY = "JOBSET_SECRET_KEY"
ENV_PREVIOUS_SECRET_KEYS = "JOBSET_PREVIOUS_SECRET_KEYS"
ENV_RESULT_TTL_S = "JOBSET_RESULT_TTL_S"
ENV_VISIBILITY_TIMEOUT_S = "JOBSET_VISIBILITY_TIMEOUT_S"
ENV_AER_THREADS = "JOBSET_AER_THREADS"
ENV_CONNECT_TIMEOUT_S = "JOBSET_CONNECT_TIMEOUT_S"
ENV_MAX_WORKER_LOSSES = "JOBSET_MAX_WORKER_LOSSES"
ENV_MAX_RESULT_BYTES = "JOBSET_MAX_RESULT_BYTES"
ENV_MAX_MEMORY_MB = "JOBSET_MAX_MEMORY_MB"
ENV_WORKER_MEMORY_MB = "JOBSET_WORKER_MEMORY_MB"
ENV_LARGE_MEMORY_MB = "JOBSET_LARGE_MEMORY_MB"
ENV_SENTINEL_MASTER = "JOBSET_SENTINEL_MASTER"
ENV_SENTINEL_PASSWORD = "JOBSET_SENTINEL_PASSWORD"

# HMAC-SHA256 keys shorter than its block of output add nothing to guess but the key.
MIN_SECRET_KEY_BYTES = 32
MAKE_KEY_HINT = 'make one with: python -c "import secrets; print(secrets.token_hex(32))"'

# Comfortably below Redis's 512 MB limit on one value: a 24-qubit statevector fits, a
# 25-qubit one (512 MiB) does not.
DEFAULT_MAX_RESULT_BYTES = 256 * 1024 * 1024

# Live workers renew their leases every 10 s at this timeout (workers.lifecycle) and kombu
# sweeps for expired ones every 10 s (celeryconf), so a dead worker's sub-job runs again
# 50 to 70 s after it died, while a long sub-job of a live worker is never delivered twice.
DEFAULT_VISIBILITY_TIMEOUT_S = 60


@dataclass(frozen=True, repr=False)
class Settings:
    """Where the broker and results live, the signing key, and how long things are kept.

    ``secret_key`` signs every payload that crosses Redis; producers and workers must share
    it (at least 32 bytes).  ``previous_secret_keys`` still verify, but never sign: rotate
    by adding the new key as a previous key everywhere, then making it the signing key
    everywhere, then dropping the old one.  ``result_ttl_s`` bounds the life of every key
    the project writes.
    ``visibility_timeout_s`` is how long a sub-job held by a worker that died stays
    invisible before Redis delivers it again (60 s: it runs elsewhere within about 70 s);
    live workers renew the lease of what they hold, so it need not exceed the longest
    sub-job.  ``aer_threads`` (workers only) is the
    OpenMP threads per task; ``None`` means cores divided by the worker's concurrency.

    Reliability limits: ``connect_timeout_s`` bounds each attempt to reach Redis, so an
    unreachable broker is an error within seconds; ``max_worker_losses`` is how many times
    a sub-job may take its worker down (killed, out of memory, crashed) before it ends in
    ERROR; ``max_result_bytes`` (workers) is the largest signed result a sub-job may store;
    ``max_memory_mb`` (producers) refuses at submit any circuit whose simulation would need
    more memory than that; ``None`` means no limit.

    Admission and routing: ``worker_memory_mb`` (workers) is the memory a worker
    advertises for one sub-job, ``None`` meaning the machine's (or its cgroup's) memory;
    ``large_memory_mb`` (producers) is the state size from which a sub-job counts as
    large and goes to the large queue, when a live worker consumes it.

    High availability: with ``sentinel://`` URLs (:mod:`jobset.urls`), ``sentinel_master``
    is the name the sentinels know the primary by, and ``sentinel_password`` the
    sentinels' own password (the server's is in the URL).
    """

    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str | None = None
    secret_key: bytes = field(default=b"", repr=False)
    previous_secret_keys: tuple[bytes, ...] = field(default=(), repr=False)
    result_ttl_s: int = 7 * 24 * 3600
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S
    aer_threads: int | None = None
    connect_timeout_s: int = 5
    max_worker_losses: int = 3
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    max_memory_mb: int | None = None
    worker_memory_mb: int | None = None
    large_memory_mb: int = 1024
    sentinel_master: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.secret_key, str):
            object.__setattr__(self, "secret_key", self.secret_key.encode())
        if not self.secret_key:
            raise ConfigurationError(
                f"no secret key: set {ENV_SECRET_KEY} (the same value for producers and "
                f"workers); {MAKE_KEY_HINT}"
            )
        previous = tuple(k.encode() if isinstance(k, str) else k for k in self.previous_secret_keys)
        object.__setattr__(self, "previous_secret_keys", previous)
        for name, key in (
            (ENV_SECRET_KEY, self.secret_key),
            *((ENV_PREVIOUS_SECRET_KEYS, k) for k in previous),
        ):
            if len(key) < MIN_SECRET_KEY_BYTES:
                raise ConfigurationError(
                    f"{name} is {len(key)} bytes; a signing key needs at least "
                    f"{MIN_SECRET_KEY_BYTES}: {MAKE_KEY_HINT}"
                )
        for name, url in (("broker_url", self.broker_url), ("result_backend", self.backend_url)):
            try:
                urls.check(url)
            except ValueError as e:
                raise ConfigurationError(
                    f"{name} must be a Redis URL, got {redact_url(url)!r}: {e}"
                ) from None
            if urls.is_sentinel(url) and not self.sentinel_master:
                raise ConfigurationError(
                    f"{name} is a Sentinel URL: set {ENV_SENTINEL_MASTER} to the primary's name"
                )
        if self.result_ttl_s < 1 or self.visibility_timeout_s < 1:
            raise ConfigurationError("result_ttl_s and visibility_timeout_s must be positive")
        if self.aer_threads is not None and self.aer_threads < 1:
            raise ConfigurationError("aer_threads must be at least 1")
        if self.connect_timeout_s < 1 or self.max_worker_losses < 1 or self.max_result_bytes < 1:
            raise ConfigurationError(
                "connect_timeout_s, max_worker_losses and max_result_bytes must be positive"
            )
        if self.max_memory_mb is not None and self.max_memory_mb < 1:
            raise ConfigurationError("max_memory_mb must be at least 1")
        if self.worker_memory_mb is not None and self.worker_memory_mb < 1:
            raise ConfigurationError("worker_memory_mb must be at least 1")
        if self.large_memory_mb < 1:
            raise ConfigurationError("large_memory_mb must be at least 1")

    def __repr__(self) -> str:
        return (
            f"Settings(broker_url={redact_url(self.broker_url)!r}, "
            f"result_backend={redact_url(self.backend_url)!r}, secret_key=***, "
            f"result_ttl_s={self.result_ttl_s}, visibility_timeout_s={self.visibility_timeout_s}, "
            f"aer_threads={self.aer_threads}, connect_timeout_s={self.connect_timeout_s}, "
            f"max_worker_losses={self.max_worker_losses}, "
            f"max_result_bytes={self.max_result_bytes}, max_memory_mb={self.max_memory_mb}, "
            f"worker_memory_mb={self.worker_memory_mb}, large_memory_mb={self.large_memory_mb}, "
            f"sentinel_master={self.sentinel_master!r}, "
            f"sentinel_password={'***' if self.sentinel_password else None})"
        )

    @property
    def backend_url(self) -> str:
        return self.result_backend or self.broker_url

    @property
    def verify_keys(self) -> tuple[bytes, ...]:
        """Every key a signature may be made with: the signing key first."""
        return (self.secret_key, *self.previous_secret_keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from the ``JOBSET_*`` variables; keyword overrides win when not None."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "broker_url": env.get(ENV_BROKER_URL) or DEFAULT_BROKER_URL,
            "result_backend": env.get(ENV_RESULT_BACKEND) or None,
            "secret_key": env.get(ENV_SECRET_KEY, ""),
            "previous_secret_keys": tuple(
                k.strip() for k in env.get(ENV_PREVIOUS_SECRET_KEYS, "").split(",") if k.strip()
            ),
            "sentinel_master": env.get(ENV_SENTINEL_MASTER) or None,
            "sentinel_password": env.get(ENV_SENTINEL_PASSWORD) or None,
        }
        for name, var in (
            ("result_ttl_s", ENV_RESULT_TTL_S),
            ("visibility_timeout_s", ENV_VISIBILITY_TIMEOUT_S),
            ("aer_threads", ENV_AER_THREADS),
            ("connect_timeout_s", ENV_CONNECT_TIMEOUT_S),
            ("max_worker_losses", ENV_MAX_WORKER_LOSSES),
            ("max_result_bytes", ENV_MAX_RESULT_BYTES),
            ("max_memory_mb", ENV_MAX_MEMORY_MB),
            ("worker_memory_mb", ENV_WORKER_MEMORY_MB),
            ("large_memory_mb", ENV_LARGE_MEMORY_MB),
        ):
            if env.get(var):
                try:
                    values[name] = int(env[var])
                except ValueError as e:
                    raise ConfigurationError(f"{var} must be an integer, got {env[var]!r}") from e
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The ``JOBSET_*`` variables that rebuild these settings in another process."""
        env = {
            ENV_BROKER_URL: self.broker_url,
            ENV_RESULT_BACKEND: self.backend_url,
            ENV_SECRET_KEY: self.secret_key.decode(),
            ENV_RESULT_TTL_S: str(self.result_ttl_s),
            ENV_VISIBILITY_TIMEOUT_S: str(self.visibility_timeout_s),
            ENV_CONNECT_TIMEOUT_S: str(self.connect_timeout_s),
            ENV_MAX_WORKER_LOSSES: str(self.max_worker_losses),
            ENV_MAX_RESULT_BYTES: str(self.max_result_bytes),
            ENV_LARGE_MEMORY_MB: str(self.large_memory_mb),
        }
        if self.previous_secret_keys:
            env[ENV_PREVIOUS_SECRET_KEYS] = ",".join(k.decode() for k in self.previous_secret_keys)
        if self.aer_threads is not None:
            env[ENV_AER_THREADS] = str(self.aer_threads)
        if self.max_memory_mb is not None:
            env[ENV_MAX_MEMORY_MB] = str(self.max_memory_mb)
        if self.worker_memory_mb is not None:
            env[ENV_WORKER_MEMORY_MB] = str(self.worker_memory_mb)
        if self.sentinel_master is not None:
            env[ENV_SENTINEL_MASTER] = self.sentinel_master
        if self.sentinel_password is not None:
            env[ENV_SENTINEL_PASSWORD] = self.sentinel_password
        return env


def redact_url(url: str) -> str:
    """The URL with any password replaced (each part of a Sentinel URL), fit for logs."""
    return urls.redact(url)
