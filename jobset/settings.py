"""Settings, built once at the edge and passed to library code as a parameter.

Only ``from_env`` reads the environment; every other module takes a ``Settings``.
Durations carry their unit in the name.

Every variable the project reads is one row of this module: a dataclass field declared
with :func:`setting`, which names its variable, how to parse it, who reads it and how the
README describes it.  ``from_env``, ``to_env``, the ``repr`` (secrets hidden, URLs
redacted) and the README's variable table (:func:`variables_table`, kept in step by a
test) are all built from those rows, so adding a setting is adding one field.
:class:`Settings` holds what producers and workers share; :class:`MetricsSettings` what
each worker serves its metrics with (per worker: a port and a directory of its own).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

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
ENV_WORKER_CONTROL = "JOBSET_WORKER_CONTROL"
ENV_TASK_EVENTS = "JOBSET_TASK_EVENTS"
ENV_CONNECT_TIMEOUT_S = "JOBSET_CONNECT_TIMEOUT_S"
ENV_MAX_WORKER_LOSSES = "JOBSET_MAX_WORKER_LOSSES"
ENV_MAX_RESULT_BYTES = "JOBSET_MAX_RESULT_BYTES"
ENV_MAX_MEMORY_MB = "JOBSET_MAX_MEMORY_MB"
ENV_WORKER_MEMORY_MB = "JOBSET_WORKER_MEMORY_MB"
ENV_LARGE_MEMORY_MB = "JOBSET_LARGE_MEMORY_MB"
ENV_SENTINEL_MASTER = "JOBSET_SENTINEL_MASTER"
ENV_SENTINEL_PASSWORD = "JOBSET_SENTINEL_PASSWORD"
ENV_METRICS_PORT = "JOBSET_METRICS_PORT"
ENV_METRICS_ADDR = "JOBSET_METRICS_ADDR"
ENV_METRICS_SET_TTL_S = "JOBSET_METRICS_SET_TTL_S"
ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable

# VAR_FILE names a file that holds VAR's value (the Docker and Kubernetes secrets convention).
FILE_SUFFIX = "_FILE"
# A secret file that anyone but its owner may open is refused, as ssh refuses a private key.
_OTHERS_ACCESS = 0o077

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

_T = TypeVar("_T")
_S = TypeVar("_S", bound="EnvSettings")
Side = Literal["producers", "workers", "both"]


@dataclass(frozen=True)
class Parser:
    """Text of a variable to a value; ``expects`` completes "``VAR`` must be ..."."""

    expects: str
    parse: Callable[[str], object]


TEXT = Parser("text", str)
INTEGER = Parser("an integer", int)
# How workers send Celery's task events (workers.events).
TASK_EVENTS_BATCHED = "batched"
TASK_EVENTS_EACH = "each"
TASK_EVENTS_OFF = "off"
TASK_EVENTS_CHOICES = (TASK_EVENTS_BATCHED, TASK_EVENTS_EACH, TASK_EVENTS_OFF)


def _task_events(text: str) -> str:
    if text not in TASK_EVENTS_CHOICES:
        raise ValueError(text)
    return text


TASK_EVENTS = Parser("one of " + ", ".join(f"`{c}`" for c in TASK_EVENTS_CHOICES), _task_events)
KEYS = Parser(
    "comma-separated keys", lambda text: tuple(k.strip() for k in text.split(",") if k.strip())
)


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, its parser, who reads it, its README row.

    ``default_doc`` is the README's default column; ``{}`` in it stands for the default
    value in backticks, and without it the column is that value alone.
    """

    env: str
    doc: str
    parse: Parser = TEXT
    side: Side = "both"
    secret: bool = False
    url: bool = False
    default_doc: str = "{}"
    minimum: int | None = None  # bounds of a number, checked by EnvSettings.check_bounds
    maximum: int | None = None

    @property
    def file_env(self) -> str | None:
        """The ``_FILE`` variable that may name a file holding the value (secrets and URLs,
        which carry passwords), as Docker and Kubernetes secrets are mounted."""
        return f"{self.env}{FILE_SUFFIX}" if self.secret or self.url else None


_VARIABLE = "jobset.variable"


def setting(
    env: str,
    default: _T,
    doc: str,
    *,
    parse: Parser = TEXT,
    side: Side = "both",
    secret: bool = False,
    url: bool = False,
    default_doc: str = "{}",
    minimum: int | None = None,
    maximum: int | None = None,
) -> _T:
    """A dataclass field read from ``env`` (an empty value counts as unset); a number
    outside ``minimum``..``maximum`` is refused however the settings are built."""
    variable = Variable(env, doc, parse, side, secret, url, default_doc, minimum, maximum)
    return dataclasses.field(default=default, metadata={_VARIABLE: variable})


def variables(cls: type[EnvSettings]) -> Iterator[tuple[dataclasses.Field[Any], Variable]]:
    """The fields of a settings class that are read from the environment, in order."""
    for f in dataclasses.fields(cast(Any, cls)):
        if _VARIABLE in f.metadata:
            yield f, f.metadata[_VARIABLE]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def _value_text(var: Variable, env: Mapping[str, str]) -> str:
    """The text of ``var``: from its variable, or from the file its ``_FILE`` variable names."""
    text = env.get(var.env, "")
    path = env.get(var.file_env, "") if var.file_env else ""
    if not path:
        return text
    if text:
        raise ConfigurationError(f"set {var.env} or {var.file_env}, not both")
    return read_secret_file(path, variable=cast(str, var.file_env))


def read_secret_file(path: str, *, variable: str) -> str:
    """The text of a secret file without its trailing newline; only its owner may read it.

    A file that group or others can access is refused (``chmod 600``), like a missing,
    empty or non-regular one, with a :class:`ConfigurationError` naming ``variable``.
    """
    try:
        # Followed links are fine (Kubernetes mounts secrets as links): the mode checked is
        # that of the file opened.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block
    except OSError as e:
        raise ConfigurationError(f"{variable}: cannot open {path}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigurationError(f"{variable}: {path} is not a regular file")
        if mode & _OTHERS_ACCESS:
            raise ConfigurationError(
                f"{variable}: {path} has mode {stat.S_IMODE(mode):04o}, so group or others "
                f"can access it; a secret file must be its owner's alone: chmod 600 {path}"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    finally:
        os.close(fd)
    try:
        text = data.decode().rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{variable}: {path} is not UTF-8 text") from None
    if not text:
        raise ConfigurationError(f"{variable}: {path} is empty")
    return text


class EnvSettings:
    """``from_env``, ``to_env``, bounds and a redacted ``repr``, built from the fields' rows."""

    def check_bounds(self) -> None:
        """Refuse a number outside its field's declared bounds (None is "unset": allowed)."""
        for f, var in variables(type(self)):
            value = getattr(self, f.name)
            if value is None or (var.minimum is None and var.maximum is None):
                continue
            low = var.minimum if var.minimum is not None else value
            high = var.maximum if var.maximum is not None else value
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                if var.maximum is None:
                    wanted = f"at least {var.minimum}"
                elif var.minimum is None:
                    wanted = f"at most {var.maximum}"
                else:
                    wanted = f"from {var.minimum} to {var.maximum}"
                raise ConfigurationError(f"{var.env} ({f.name}) must be {wanted}, got {value!r}")

    @classmethod
    def from_env(
        cls: type[_S], environ: Mapping[str, str] | None = None, **overrides: object
    ) -> _S:
        """Build settings from their variables; keyword overrides win when not None."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f, var in variables(cls):
            text = _value_text(var, env)
            if not text:
                continue
            try:
                values[f.name] = var.parse.parse(text)
            except ValueError as e:
                raise ConfigurationError(
                    f"{var.env} must be {var.parse.expects}, got {text!r}"
                ) from e
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The variables that rebuild these settings in another process (unset ones left out)."""
        env = {}
        for f, var in variables(type(self)):
            value = getattr(self, f.name)
            if value is not None and value != ():
                env[var.env] = _text(value)
        return env

    def __repr__(self) -> str:
        shown = []
        for f, var in variables(type(self)):
            value = getattr(self, f.name)
            if var.secret and value:
                text = "***"
            elif var.url and value is not None:
                text = repr(redact_url(value))
            else:
                text = repr(value)
            shown.append(f"{f.name}={text}")
        return f"{type(self).__name__}({', '.join(shown)})"


@dataclass(frozen=True, repr=False)
class Settings(EnvSettings):
    """Where the broker and results live, the signing key, and how long things are kept.

    ``secret_key`` signs every payload that crosses Redis; producers and workers must share
    it (at least 32 bytes).  ``previous_secret_keys`` still verify, but never sign: rotate
    by adding the new key as a previous key everywhere, then making it the signing key
    everywhere, then dropping the old one.  Each field's variable says the rest.
    """

    broker_url: str = setting(
        ENV_BROKER_URL,
        DEFAULT_BROKER_URL,
        "Celery broker, a Redis URL (`rediss://` and passwords work), or Celery's "
        "`sentinel://[USER:PASSWORD@]HOST:PORT;sentinel://HOST:PORT/DB` for a primary behind "
        "Redis Sentinel",
        url=True,
    )
    result_backend: str | None = setting(
        ENV_RESULT_BACKEND, None, "where results go", url=True, default_doc="the broker URL"
    )
    secret_key: bytes = setting(
        ENV_SECRET_KEY,
        b"",
        "shared secret (at least 32 bytes) that signs every payload between producers and workers",
        secret=True,
        default_doc="none: refuse to start without it (the local cluster makes one)",
    )
    previous_secret_keys: tuple[bytes, ...] = setting(
        ENV_PREVIOUS_SECRET_KEYS,
        (),
        "comma-separated keys that still verify, never sign: for rotating "
        "`JOBSET_SECRET_KEY` without downtime",
        parse=KEYS,
        secret=True,
        default_doc="none",
    )
    result_ttl_s: int = setting(
        ENV_RESULT_TTL_S,
        7 * 24 * 3600,
        "lifetime of payloads and results in Redis, seconds",
        parse=INTEGER,
        minimum=1,
        default_doc="{} (7 days)",
    )
    visibility_timeout_s: int = setting(
        ENV_VISIBILITY_TIMEOUT_S,
        DEFAULT_VISIBILITY_TIMEOUT_S,
        "a sub-job held by a worker that died runs elsewhere after this (live workers renew "
        "their leases, so it need not exceed the longest sub-job)",
        parse=INTEGER,
        minimum=1,
        default_doc="{} (a dead worker's sub-job runs again within about 70 s)",
    )
    aer_threads: int | None = setting(
        ENV_AER_THREADS,
        None,
        "Aer OpenMP threads per task",
        parse=INTEGER,
        minimum=1,
        side="workers",
        default_doc="cores / worker concurrency (cores: the CPU affinity, capped by a "
        "container's CPU quota)",
    )
    worker_control: str = setting(
        ENV_WORKER_CONTROL,
        "",
        "control commands that steer a worker which it obeys, comma-separated (e.g. "
        "`shutdown,pool_grow`; the others are ignored: see docs/security.md)",
        side="workers",
        default_doc="none",
    )
    task_events: str = setting(
        ENV_TASK_EVENTS,
        TASK_EVENTS_BATCHED,
        "Celery task events, which Flower shows: `batched` (sent together at most every "
        "0.5 s: no round trip per sub-job), `each` (Celery's own: three messages a "
        "sub-job), `off`",
        parse=TASK_EVENTS,
        side="workers",
    )
    connect_timeout_s: int = setting(
        ENV_CONNECT_TIMEOUT_S,
        5,
        "one try to reach Redis (a connect, or a reply) gives up after this; a producer "
        "retries for twice this (a restart or failover is ridden out), so on a Redis that is "
        "gone or frozen every call raises `BrokerUnavailableError` within 3 x this and a wait "
        "(`result()`, `wait_for_final_state()`) within 9 x this + 2 s "
        "([reliability](docs/reliability.md#when-redis-is-gone-or-frozen))",
        parse=INTEGER,
        minimum=1,
        default_doc="{} (calls fail within 15 s, waits within 47 s)",
    )
    max_worker_losses: int = setting(
        ENV_MAX_WORKER_LOSSES,
        3,
        "a sub-job whose worker died this many times ends in ERROR (`RedeliveryLimitError`)",
        parse=INTEGER,
        minimum=1,
        side="workers",
    )
    max_result_bytes: int = setting(
        ENV_MAX_RESULT_BYTES,
        DEFAULT_MAX_RESULT_BYTES,
        "largest signed result a sub-job may store; over it the sub-job fails with the size",
        parse=INTEGER,
        minimum=1,
        side="workers",
        default_doc="{} (256 MiB)",
    )
    max_memory_mb: int | None = setting(
        ENV_MAX_MEMORY_MB,
        None,
        "refuse at submit a circuit whose state needs more memory (statevector 16 B x 2^n, "
        "density matrix 16 B x 4^n, half in single precision)",
        parse=INTEGER,
        minimum=1,
        side="producers",
        default_doc="none",
    )
    worker_memory_mb: int | None = setting(
        ENV_WORKER_MEMORY_MB,
        None,
        "the memory (MiB) a worker advertises for one sub-job's state, checked by admission "
        "control (`admit=`)",
        parse=INTEGER,
        minimum=1,
        side="workers",
        default_doc="the machine's (or cgroup's) memory",
    )
    large_memory_mb: int = setting(
        ENV_LARGE_MEMORY_MB,
        1024,
        "a sub-job whose state needs at least this many MiB goes to the large queue "
        "`jobset.cpu.large`, when a live worker consumes it",
        parse=INTEGER,
        minimum=1,
        side="producers",
    )
    sentinel_master: str | None = setting(
        ENV_SENTINEL_MASTER,
        None,
        "with `sentinel://` URLs (required then): the name the sentinels know the primary by",
        default_doc="none",
    )
    sentinel_password: str | None = setting(
        ENV_SENTINEL_PASSWORD,
        None,
        "with `sentinel://` URLs: the sentinels' own password (the server's is in the URL)",
        secret=True,
        default_doc="none",
    )

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
        if self.task_events not in TASK_EVENTS_CHOICES:
            raise ConfigurationError(
                f"{ENV_TASK_EVENTS} must be {TASK_EVENTS.expects}, got {self.task_events!r}"
            )
        self.check_bounds()

    @property
    def backend_url(self) -> str:
        return self.result_backend or self.broker_url

    @property
    def verify_keys(self) -> tuple[bytes, ...]:
        """Every key a signature may be made with: the signing key first."""
        return (self.secret_key, *self.previous_secret_keys)

    def to_env(self) -> dict[str, str]:
        env = super().to_env()
        # Written out even when it is the broker, so that these variables laid over an
        # environment that names another backend still mean these settings.
        env[ENV_RESULT_BACKEND] = self.backend_url
        return env


@dataclass(frozen=True, repr=False)
class MetricsSettings(EnvSettings):
    """Where one worker serves its Prometheus metrics; ``port=None`` turns metrics off."""

    port: int | None = setting(
        ENV_METRICS_PORT,
        None,
        "serve Prometheus metrics on this port from the main process (see "
        "[Metrics](docs/deployment.md#metrics))",
        parse=INTEGER,
        minimum=1,
        maximum=65535,
        side="workers",
        default_doc="none: no metrics (compose sets `9808`)",
    )
    addr: str = setting(
        ENV_METRICS_ADDR,
        "127.0.0.1",
        "address the metrics server binds (compose: every interface of the container)",
        side="workers",
    )
    set_ttl_s: int = setting(
        ENV_METRICS_SET_TTL_S,
        3600,
        "a job set's series are exported until this long after its last sub-job started or "
        "ended on the worker, seconds",
        parse=INTEGER,
        minimum=1,
        side="workers",
    )
    multiproc_dir: str | None = setting(
        ENV_MULTIPROC_DIR,
        None,
        "where the pool processes keep their metric files; one directory per worker, emptied "
        "of metric files at start",
        side="workers",
        default_doc="a private temporary directory",
    )

    def __post_init__(self) -> None:
        self.check_bounds()


SETTINGS_CLASSES: tuple[type[EnvSettings], ...] = (Settings, MetricsSettings)


def variables_table() -> str:
    """The README's table of every variable the project reads, one row per field."""
    lines = ["| variable | meaning | default |", "|---|---|---|"]
    for cls in SETTINGS_CLASSES:
        for f, var in variables(cls):
            meaning = var.doc if var.side == "both" else f"{var.side}: {var.doc}"
            default = var.default_doc.format(f"`{_text(f.default)}`")
            lines.append(f"| `{var.env}` | {meaning} | {default} |")
    return "\n".join(lines) + "\n"


def redact_url(url: str) -> str:
    """The URL with any password replaced (each part of a Sentinel URL), fit for logs."""
    return urls.redact(url)
