"""Names shared by producers and workers: tasks, queues, Redis keys, the message schema.

Both sides import this module and nothing else of each other, so a producer can publish
by task *name* without importing the worker code (arq's ``constants.py`` does the same).

A sub-job message carries only identifiers (``SubJobRef``); the payloads live in Redis
under the keys below, each signed (see :mod:`jobset.codec`) and each with a TTL:

``jobset:{id}:record``       the set's record: plan skeleton, task ids, tags (signed pickle)
``jobset:index``             a sorted set of known set ids, scored by creation time
``jobset:{id}:backend``      the simulator the set runs on (signed pickle), once per set
``jobset:{id}:batch:{k}``    sub-job ``k``'s circuits and run options (signed pickle)
``jobset:{id}:result:{k}``   sub-job ``k``'s ``qiskit.result.Result`` (signed pickle)
``jobset:{id}:cancelled``    the durable cancel mark, checked by workers before they run
                             (its value is a MAC: the evidence that the set's producer
                             cancelled it, see :mod:`jobset.executors.celery.evidence`)
``jobset:{id}:ends``         index -> letter and MAC: a worker's signed word that a sub-job
                             ended (:mod:`jobset.executors.celery.evidence`)
``jobset:{id}:cancelled:{k}`` the same for sub-job ``k`` alone
``jobset:{id}:primitive``    a primitive job's layout: PUB shapes, observables, seeds (signed
                             pickle; only for sets made by :mod:`jobset.primitives`)
``jobset:{id}:runs``         how often each sub-job started and ended (a hash; the
                             redelivery cap counts starts that never ended)
``jobset:worker:{hostname}`` a live worker's capacity and versions, refreshed by a heartbeat
``jobset:owner-queues``      a sorted set of per-owner queues, scored by last publish time;
                             workers add a consumer for those of the queues they serve
``jobset:cache:{digest}``    a cached sub-job result (signed pickle), for ``cache_ttl_s`` sets

Every key is built here from validated parts (:func:`check_jobset_id`,
:func:`check_index`, :func:`check_digest`), and every signed value is read and written
through :mod:`jobset.executors.celery.store`, which names its :class:`Kind`.

The broker's own keys (kombu's Redis transport) are read by the producer to tell a lost
sub-job from a queued one: the queue lists, and ``unacked`` / ``unacked_index``, where a
delivered message waits for its ack, scored by the time of its lease.
"""

from __future__ import annotations

import enum
import functools
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInputError, SecurityError, VersionMismatchError

# The message schema and the envelope (jobset.codec) both changed in version 2: a worker
# refuses messages of any other version.
PROTOCOL_VERSION = 2

RUN_SUB_JOB_TASK = "jobset.run_sub_job"
DEFAULT_QUEUE = "jobset.cpu"
GPU_QUEUE = "jobset.gpu"
# Sub-jobs whose state is at least Settings.large_memory_mb, when a worker consumes it.
LARGE_QUEUE = "jobset.cpu.large"
BASE_QUEUES = (DEFAULT_QUEUE, LARGE_QUEUE, GPU_QUEUE)
# A set with an owner goes to ``{base}{OWNER_SEP}{owner}``; kombu's Redis transport
# rotates over the queues a worker consumes, so owners take turns.
OWNER_SEP = ".owner."
OWNER_QUEUES_POLL_S = 1.0
# A set's priority -> the message priority kombu's Redis transport files it under.  Its
# lists are taken in ascending order across every queue a worker consumes; None publishes
# without one (the plain queue list, taken first), so the default is the highest.
PRIORITIES: dict[str, int | None] = {"normal": None, "low": 3, "lowest": 6}

KEY_PREFIX = "jobset"
WORKER_KEY_PREFIX = f"{KEY_PREFIX}:worker:"
WORKER_HEARTBEAT_S = 10.0
WORKER_TTL_S = 30
# Every live worker's name, scored by the time of its last heartbeat, so that reading the
# workers costs their number, not a SCAN of the whole keyspace (which grows with every
# stored set).  A name leaves at its worker's stop, or this long after its last beat (the
# heartbeat keys' own expiry says who is alive; the margin covers clocks that disagree);
# the index itself expires that long after the last beat of any worker.
WORKERS_INDEX_KEY = f"{KEY_PREFIX}:workers"
WORKER_INDEX_KEEP_S = 10 * WORKER_TTL_S
# A Celery node name (name@host): what a worker's name read back from the index must be
# before a key is built from it.
WORKER_NAME = re.compile(r"[A-Za-z0-9_.@:+=-]{1,255}")


INDEX_KEY = f"{KEY_PREFIX}:index"
OWNER_QUEUES_KEY = f"{KEY_PREFIX}:owner-queues"


def owner_queue(base: str, owner: str | None) -> str:
    """The queue of ``owner``'s sub-jobs of class ``base`` (``base`` itself for no owner)."""
    return f"{base}{OWNER_SEP}{check_owner_name(owner)}" if owner else base


def is_owner_queue(name: str, bases: set[str]) -> bool:
    """Whether ``name`` is an owner queue of one of ``bases`` with a valid owner name."""
    base, sep, owner = name.partition(OWNER_SEP)
    return bool(sep) and base in bases and _OWNER.fullmatch(owner) is not None


def base_queue(queue: str) -> str:
    """The size-class queue an owner queue belongs to (the queue itself otherwise)."""
    return queue.partition(OWNER_SEP)[0]


class Kind(enum.Enum):
    """What a signed value is; the envelope's MAC covers it (see :mod:`jobset.codec`)."""

    BACKEND = "backend"
    BATCH = "batch"
    RESULT = "result"
    RECORD = "record"
    PRIMITIVE = "primitive"
    CACHE = "cache"
    # Not envelopes: short MACs that prove a sub-job ended or a set was cancelled by a
    # holder of the key (see jobset.executors.celery.evidence).
    END = "end"
    CANCEL = "cancel"


# Bounds of every number a message or key may carry: generous for real sets, small
# enough that no field can carry a payload.
MAX_SUB_JOBS = 10_000_000
MAX_EXPERIMENTS = 10_000_000
_DIGEST = re.compile(r"[0-9a-f]{64}")
_OWNER = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_jobset_id(value: object) -> str:
    """``value`` if it is a canonical UUID string (what every set id is), else an error."""
    if isinstance(value, str) and len(value) == 36 and _canonical_uuid(value):
        return value
    raise InvalidInputError(f"a job set id is a canonical UUID, got {_short(value)}")


@functools.lru_cache(maxsize=256)
def _canonical_uuid(value: str) -> bool:
    # Cached: every key of a set is built from its id, thousands of times per submit.
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def check_index(value: object, *, limit: int = MAX_SUB_JOBS) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise InvalidInputError(f"expected an integer in [0, {limit}), got {_short(value)}")
    return value


def check_digest(value: object) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise InvalidInputError(f"a digest is 64 lowercase hex digits, got {_short(value)}")
    return value


def check_owner_name(value: object) -> str:
    if not isinstance(value, str) or not _OWNER.fullmatch(value):
        raise InvalidInputError(
            f"owner must be 1 to 64 letters, digits, '_' or '-', got {_short(value)}"
        )
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def cache_key(digest: str) -> str:
    return f"{KEY_PREFIX}:cache:{check_digest(digest)}"


def record_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:record"


def backend_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:backend"


def batch_key(jobset_id: str, index: int) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:batch:{check_index(index)}"


def result_key(jobset_id: str, index: int) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:result:{check_index(index)}"


def cancel_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:cancelled"


def sub_job_cancel_key(jobset_id: str, index: int) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:cancelled:{check_index(index)}"


def ends_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:ends"


def primitive_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:primitive"


def runs_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:runs"


# The tally (jobset.executors.celery.tally): sub-job states, their counts, the pending
# bitmap and the log of ended sub-jobs.
def states_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:states"


def counts_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:counts"


def pending_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:pending"


def ended_key(jobset_id: str) -> str:
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:ended"


def timeline_key(jobset_id: str) -> str:
    """The set's timeline: what its sub-jobs recorded of their steps."""
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:timeline"


def trace_key(jobset_id: str) -> str:
    """The set's trace context, for workers to continue its trace."""
    return f"{KEY_PREFIX}:{check_jobset_id(jobset_id)}:trace"


def set_keys_pattern(jobset_id: str) -> str:
    """A SCAN pattern for every key of set ``jobset_id`` (the id checked, then escaped)."""
    return f"{KEY_PREFIX}:{glob_escape(check_jobset_id(jobset_id))}:*"


def keys_ending_pattern(suffix: str) -> str:
    """A SCAN pattern for the keys of every set that end in ``suffix`` (``:record``)."""
    return f"{KEY_PREFIX}:*{glob_escape(suffix)}"


# A reference to a signed value: a set id, a (set id, sub-job index) pair, or a digest.
Ref = str | tuple[str, int]


def signed_key(kind: Kind, ref: Ref) -> str:
    """The Redis key of the signed value of ``kind`` named by ``ref``, from validated parts."""
    if kind in (Kind.BATCH, Kind.RESULT):
        if not isinstance(ref, tuple) or len(ref) != 2:
            raise InvalidInputError(f"a {kind.value} is named by (set id, index), got {ref!r}")
        return (batch_key if kind is Kind.BATCH else result_key)(*ref)
    if not isinstance(ref, str):
        raise InvalidInputError(f"a {kind.value} is named by one string, got {_short(ref)}")
    if kind is Kind.CACHE:
        return cache_key(ref)
    builders = {Kind.BACKEND: backend_key, Kind.RECORD: record_key, Kind.PRIMITIVE: primitive_key}
    if kind not in builders:
        raise InvalidInputError(f"a {kind.value} is not stored as a signed envelope")
    return builders[kind](ref)


def started_field(index: int) -> str:
    return f"started:{index}"


def ended_field(index: int) -> str:
    return f"ended:{index}"


# kombu's Redis transport: a delivered, unacknowledged message lives in UNACKED_KEY (tag ->
# [message, exchange, routing key]) and UNACKED_INDEX_KEY (tag -> delivery time); a sweep
# puts back in the queue every tag older than the visibility timeout.  Live workers renew
# the score of what they hold (their lease).  Queues with priorities are extra lists
# named queue + PRIORITY_SEP + step.
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def queue_lists(queue: str) -> list[str]:
    """Every Redis list that holds messages of ``queue``, one per priority step."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def queue_list(queue: str, priority: int | None) -> str:
    """The list of ``queue`` that kombu files a message of ``priority`` under (its step)."""
    step = max(s for s in PRIORITY_STEPS if s <= max(0, min(9, priority or 0)))
    return queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}"


def worker_key(hostname: str) -> str:
    return f"{WORKER_KEY_PREFIX}{hostname}"


def worker_names(raw: Iterable[object]) -> list[str]:
    """The well-formed worker names among ``raw`` (members of :data:`WORKERS_INDEX_KEY`)."""
    names = []
    for name in raw:
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        if isinstance(text, str) and WORKER_NAME.fullmatch(text):
            names.append(text)
    return names


def worker_keys_pattern(hostnames: str = "*") -> str:
    """A SCAN pattern for the heartbeats of the workers whose names match ``hostnames``."""
    return f"{WORKER_KEY_PREFIX}{hostnames}"


def glob_escape(text: str) -> str:
    """``text`` with Redis glob characters escaped, for SCAN and PSUBSCRIBE patterns."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True)
class Dispatch:
    """Where a set's sub-jobs are published: most to ``queue``, some elsewhere, at a priority.

    Kept in the set's record, so a sub-job published again (lost-sub-job recovery) goes
    where it went the first time.
    """

    queue: str = DEFAULT_QUEUE
    elsewhere: Mapping[int, str] = field(default_factory=dict)
    priority: str = "normal"

    @classmethod
    def from_routes(cls, routes: Mapping[int, str], *, queue: str, priority: str) -> Dispatch:
        """From each sub-job's queue; the commonest one is stored once."""
        if routes:
            queue = Counter(routes.values()).most_common(1)[0][0]
        return cls(queue, {i: q for i, q in routes.items() if q != queue}, priority)

    def queue_of(self, index: int) -> str:
        return self.elsewhere.get(index, self.queue)

    @property
    def queues(self) -> set[str]:
        return {self.queue, *self.elsewhere.values()}

    @property
    def broker_priority(self) -> int | None:
        return PRIORITIES[self.priority]


def task_id(jobset_id: str, index: int) -> str:
    """The Celery task id of sub-job ``index``: derived, so any process can find it."""
    return f"{jobset_id}-{index}"


MAX_VERSIONS = 16
MAX_VERSION_CHARS = 64
_MESSAGE_FIELDS = frozenset({"jobset_id", "index", "experiments", "version", "versions"})


@dataclass(frozen=True)
class SubJobRef:
    """What a sub-job message carries: short, no payload, no secret (Flower shows it).

    Every field of a message is input from whoever can write to Redis, so
    :meth:`from_kwargs` accepts only this schema: a canonical UUID, bounded integers, a
    small mapping of short strings, nothing else.  What the worker needs beyond this
    (circuits, options, whether to use the result cache) is read from signed values.
    """

    jobset_id: str
    index: int
    experiments: int
    version: int = PROTOCOL_VERSION
    # The producer's qiskit, qiskit-aer and project versions: a worker whose versions
    # would give other results refuses the sub-job (see jobset.executors.versions).
    versions: tuple[tuple[str, str], ...] = ()

    def to_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "jobset_id": self.jobset_id,
            "index": self.index,
            "experiments": self.experiments,
            "version": self.version,
        }
        if self.versions:
            kwargs["versions"] = dict(self.versions)
        return kwargs

    @property
    def task_id(self) -> str:
        return task_id(self.jobset_id, self.index)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> SubJobRef:
        """Validate a message's keyword arguments; :class:`SecurityError` for anything else.

        A message of another protocol version raises :class:`VersionMismatchError`.
        """
        if not isinstance(kwargs, Mapping):
            raise SecurityError("refused a sub-job message: its arguments are not a mapping")
        version = kwargs.get("version")
        if isinstance(version, bool) or version != PROTOCOL_VERSION:
            if isinstance(version, int) and not isinstance(version, bool) and 0 < version < 100:
                raise VersionMismatchError(
                    f"refused: the sub-job message is of protocol version {version}, this "
                    f"worker reads version {PROTOCOL_VERSION}; run producers and workers of "
                    "one version"
                )
            raise SecurityError(f"refused a sub-job message: bad version {_short(version)}")
        unknown = set(kwargs) - _MESSAGE_FIELDS
        if unknown:
            raise SecurityError(
                f"refused a sub-job message with unknown fields {_short(sorted(map(str, unknown)))}"
            )
        try:
            return cls(
                jobset_id=check_jobset_id(kwargs.get("jobset_id")),
                index=check_index(kwargs.get("index")),
                experiments=check_index(kwargs.get("experiments"), limit=MAX_EXPERIMENTS + 1),
                version=PROTOCOL_VERSION,
                versions=_check_versions(kwargs.get("versions", {})),
            )
        except InvalidInputError as e:
            raise SecurityError(f"refused a sub-job message: {e}") from None


def _check_versions(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping) or len(value) > MAX_VERSIONS:
        raise InvalidInputError(f"versions must be a mapping of at most {MAX_VERSIONS} entries")
    for k, v in value.items():
        for text in (k, v):
            if not isinstance(text, str) or not 0 < len(text) <= MAX_VERSION_CHARS:
                raise InvalidInputError(f"versions must be short strings, got {_short(text)}")
            if not text.isprintable():
                raise InvalidInputError(f"versions must be printable, got {_short(text)}")
    return tuple(sorted(value.items()))


# The headers of a sub-job message, as Celery's create_task_message writes them for the
# producer (and for a worker's own retry): a message with any other is refused.
_HEADER_FIELDS = frozenset(
    {
        "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
        "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin",
        "ignore_result", "replaced_task_nesting", "stamped_headers", "stamps",
        "redelivered",  # kombu's Redis transport, on a message it put back in its queue
    }
)  # fmt: skip
# Headers that would make a worker act beyond running the sub-job (join a group or
# chord, count a replacement, stamp, drop by expiry) and that the producer sends empty.
_EMPTY_HEADERS = ("shadow", "expires", "group", "group_index", "stamped_headers", "stamps")
# The body's third part: Celery's workflow fields, which make a worker publish to queues
# and write keys the message names.  The producer sends each as None.
_EMBED_FIELDS = frozenset({"callbacks", "errbacks", "chain", "chord"})
_MAX_ID_CHARS = 64
_MAX_REPR_CHARS = 4096
_MAX_RETRIES = 100


def _text_field(headers: Mapping[str, Any], name: str, limit: int, *, optional: bool) -> None:
    value = headers.get(name)
    if value is None and optional:
        return
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise SecurityError(f"refused a sub-job message: bad {name} header {_short(value)}")


def check_envelope(headers: object, body: object) -> None:
    """Refuse (:class:`SecurityError`) a sub-job message whose headers or body carry more
    than the producer sends: callbacks, errbacks, chains, chords, groups, a replacement
    count, positional arguments, or any field not in Celery's protocol 2 for this task.
    The keyword arguments are :meth:`SubJobRef.from_kwargs`'s to check."""
    if not isinstance(headers, Mapping):
        raise SecurityError("refused a sub-job message: its headers are not a mapping")
    unknown = set(headers) - _HEADER_FIELDS
    if unknown:
        raise SecurityError(
            f"refused a sub-job message with unknown headers {_short(sorted(map(str, unknown)))}"
        )
    if headers.get("task") != RUN_SUB_JOB_TASK or headers.get("lang", "py") != "py":
        raise SecurityError("refused a sub-job message: not a message of the sub-job task")
    carried = [name for name in _EMPTY_HEADERS if headers.get(name)]
    if headers.get("replaced_task_nesting"):
        carried.append("replaced_task_nesting")
    if not isinstance(headers.get("redelivered", False), bool):
        carried.append("redelivered")
    retries = headers.get("retries", 0)
    if (
        isinstance(retries, bool)
        or not isinstance(retries, int)
        or not 0 <= retries <= _MAX_RETRIES
    ):
        carried.append("retries")
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
        isinstance(timelimit, (list, tuple))
        and len(timelimit) == 2
        and all(
            t is None or (isinstance(t, (int, float)) and not isinstance(t, bool) and t >= 0)
            for t in timelimit
        )
    ):
        carried.append("timelimit")
    for name, limit, optional in (
        ("id", _MAX_ID_CHARS, False),
        ("root_id", _MAX_ID_CHARS, True),
        ("parent_id", _MAX_ID_CHARS, True),
        ("eta", _MAX_ID_CHARS, True),  # a retry's countdown
        ("origin", 4 * MAX_VERSION_CHARS, True),
        ("argsrepr", _MAX_REPR_CHARS, True),
        ("kwargsrepr", _MAX_REPR_CHARS, True),
    ):
        _text_field(headers, name, limit, optional=optional)
    if not isinstance(body, (list, tuple)) or len(body) != 3:
        raise SecurityError("refused a sub-job message: its body is not (args, kwargs, embed)")
    args, _, embed = body
    if args:
        raise SecurityError("refused a sub-job message with positional arguments")
    if embed is not None and not isinstance(embed, Mapping):
        raise SecurityError("refused a sub-job message: its embed is not a mapping")
    embed = embed or {}
    carried += sorted(str(k) for k in set(embed) - _EMBED_FIELDS)
    carried += sorted(k for k in _EMBED_FIELDS if embed.get(k))
    if carried:
        raise SecurityError(f"refused a sub-job message that carries {_short(carried)}")
