"""The one executor interface: where a job set's sub-jobs run, and how the set is read back.

A job set talks to an :class:`Executor` (refuse what it cannot do, how many sub-jobs run
at once, submit a planned set) and to the :class:`Submission` it hands back (states,
results, a wait with a deadline, cancel).  There are two implementations, chosen once by
:func:`jobset.executors.pools.as_executor`:

- :class:`~jobset.executors.celery.executor.CeleryExecutor`: Redis and Celery workers, any number
  of machines; sets are stored, so they can be retrieved by id from any process;
- :class:`~jobset.executors.pools.FuturesExecutor`: an adapter over any ``concurrent.futures``
  executor (threads or processes here), which is also where a ``dask.distributed.Client``
  fits, as qiskit-aer 0.14 took one.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, TypeVar

from qiskit.providers import JobStatus
from qiskit.result import Result

from ..deadline import Deadline, Pause, growing_sleep, poll
from ..errors import (
    BrokerUnavailableError,
    InvalidInputError,
    JobSetStateError,
    JobSetTimeoutError,
    SubJobFailure,
)
from ..plan import Plan, SubBatch
from ..protocol import Kind
from ..status import FINAL, aggregate_status
from . import admission
from .admission import PlanCosts
from .stored import JobSetRecord

logger = logging.getLogger(__name__)
T = TypeVar("T")
# What a sub-job that Celery reports done, but whose result Redis no longer has, reads as.
RESULT_GONE = (
    "its result is gone from Redis (expired, evicted or deleted); run it again with "
    "retry_failed() from the process that submitted the set"
)


class SubJobState(NamedTuple):
    """One sub-job as last seen: its status and, when it failed, the worker's message and
    the name of the error it raised (``"SubJobTimeoutError"``, ...)."""

    status: JobStatus
    message: str = ""
    error_type: str = ""


@dataclass(frozen=True)
class SubmitOptions:
    """How a set is submitted beyond its plan, checked once for ``run()`` and the primitives.

    ``tags`` go into the set's record; ``timeout_s`` limits each sub-job's run;
    ``admit``, ``owner``, ``priority`` and ``cache_ttl_s`` act on the queues and the
    workers that consume them (see :func:`jobset.run`).
    """

    tags: tuple[str, ...] = ()
    timeout_s: float | None = None
    admit: str | None = None
    owner: str | None = None
    priority: str = "normal"
    cache_ttl_s: int | None = None

    @classmethod
    def check(
        cls,
        *,
        tags: str | Sequence[str] = (),
        timeout_s: Any = None,
        admit: Any = None,
        owner: Any = None,
        priority: Any = "normal",
        cache_ttl_s: Any = None,
    ) -> SubmitOptions:
        """The options, or :class:`~jobset.errors.InvalidInputError` naming the bad one."""
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0
        ):
            raise InvalidInputError(
                f"timeout_s must be a positive number of seconds, got {timeout_s!r}"
            )
        if cache_ttl_s is not None and (
            isinstance(cache_ttl_s, bool) or not isinstance(cache_ttl_s, int) or cache_ttl_s < 1
        ):
            raise InvalidInputError(f"cache_ttl_s must be a positive integer, got {cache_ttl_s!r}")
        return cls(
            tags=(tags,) if isinstance(tags, str) else tuple(tags),
            timeout_s=timeout_s,
            admit=admission.check_admit_mode(admit),
            owner=admission.check_owner(owner),
            priority=admission.check_priority(priority),
            cache_ttl_s=cache_ttl_s,
        )

    def queue_options(self) -> list[str]:
        """The names of the options given that act on queues and the workers behind them."""
        given = {
            "admit": self.admit is not None,
            "owner": self.owner is not None,
            "priority": self.priority != "normal",
            "cache_ttl_s": self.cache_ttl_s is not None,
        }
        return [name for name, is_given in given.items() if is_given]

    def refuse_queue_options(self, needs: str = "a CeleryExecutor") -> None:
        """:class:`~jobset.errors.InvalidInputError` naming the queue options given, if any."""
        named = self.queue_options()
        if named:
            raise InvalidInputError(f"the option(s) {', '.join(named)} need {needs}")


@dataclass(frozen=True)
class SetRequest:
    """A planned set, ready for :meth:`Executor.submit`.

    ``fn(sub_batch)`` is what a local executor runs (Celery workers run their own task);
    ``costs`` (when the circuits were estimated) drive admission and size-class routing;
    ``records`` are signed values stored before the first sub-job is published, where
    the executor stores sets (a primitive job's layout).
    """

    jobset_id: str
    backend: Any
    plan: Plan
    fn: Callable[[SubBatch], Result] | None = None
    options: SubmitOptions = SubmitOptions()
    costs: PlanCosts | None = None
    records: tuple[tuple[Kind, Any], ...] = ()
    # The W3C traceparent of the set's trace (:mod:`jobset.observe.tracing`), when tracing is on.
    trace_parent: str | None = None


class Submission(abc.ABC):
    """A set of sub-jobs handed to an executor."""

    task_ids: tuple[str, ...]
    # Whether cancel() writes its mark even on a set that reads final: where that reading
    # rests on what others can write (Redis), a mark too many is the safe side.
    cancel_when_final = False

    @property
    @abc.abstractmethod
    def cancelled(self) -> bool:
        """True once the whole set was cancelled."""

    @abc.abstractmethod
    def states(self, indices: Sequence[int] | None = None) -> list[SubJobState]:
        """Sub-jobs' states in index order (all, or ``indices``), in one round trip."""

    def finished_at(self) -> float | None:
        """Unix time the last sub-job finished, where the executor records it."""
        return None

    @abc.abstractmethod
    def results(self, indices: Iterable[int]) -> dict[int, Result]:
        """The stored results of those sub-jobs that have one."""

    @abc.abstractmethod
    def cancel(self, indices: Sequence[int] | None = None) -> None:
        """Cancel the whole set (``None``) or the given sub-jobs."""

    def lost(self) -> list[int]:
        """Sub-jobs that will never run: neither queued, nor running, nor finished."""
        return []

    def without_result(self, indices: Sequence[int]) -> list[int]:
        """Those of ``indices`` that have no stored result."""
        found = self.results(indices)
        return [i for i in indices if i not in found]

    def timeline_entries(self) -> list[Any]:
        """The raw entries of the set's timeline, where recorded."""
        return []

    def trace_parent(self) -> str | None:
        """The traceparent the set was published under, where the executor keeps it."""
        return None

    def note_merged(self, at: float) -> None:
        """Record in the set's timeline that its result was merged at ``at`` (Unix time);
        an executor that records no timeline does nothing."""
        return None

    def finished_count(self) -> int | None:
        """How many sub-jobs are final, where that is cheaper than their states (else None)."""
        return None

    def newly_final(self, pending: Collection[int], cursor: Any) -> tuple[list[int], Any]:
        """Those of ``pending`` that are final now, and the ``cursor`` for the next call
        (None the first time); ``as_completed`` polls this.  The base reads every state."""
        indices = list(pending)
        states = self.states(indices)
        return [k for k, s in zip(indices, states, strict=True) if s.status in FINAL], cursor

    def aggregate(self) -> JobStatus:
        """The set's status (the rule of :func:`jobset.status.aggregate_status`)."""
        return aggregate_status((s.status for s in self.states()), cancelled=self.cancelled)

    def progress(self) -> dict[str, int]:
        """How many sub-jobs are in each state, by ``JobStatus`` name."""
        return dict(Counter(s.status.name for s in self.states()))

    @abc.abstractmethod
    def rerun(self, indices: Sequence[int], batches: Sequence[SubBatch], *, backend: Any) -> None:
        """Run sub-jobs ``indices`` again from the start (their old outcome is dropped)."""

    def failures(
        self, states: Sequence[SubJobState], results: Mapping[int, Result] | None = None
    ) -> list[SubJobFailure]:
        """Every sub-job that did not end DONE, and (given ``results``) every DONE one whose
        result is missing: a failure, never a quiet gap."""
        found = [
            SubJobFailure(i, self.task_ids[i], s.status.name, s.message, s.error_type)
            for i, s in enumerate(states)
            if s.status is not JobStatus.DONE
        ]
        if results is not None:
            found += [
                SubJobFailure(i, self.task_ids[i], JobStatus.ERROR.name, RESULT_GONE, "ResultGone")
                for i, s in enumerate(states)
                if s.status is JobStatus.DONE and i not in results
            ]
        return sorted(found, key=lambda f: f.index)

    def delete(self) -> None:
        """Remove what the executor stored of the set (Celery: its keys in Redis)."""
        raise JobSetStateError("only a set on a CeleryExecutor is stored in Redis")

    def _watch(self, states: Sequence[SubJobState]) -> None:  # noqa: B027 (a hook)
        """Called on every poll of a wait; may raise instead of waiting forever."""

    @contextlib.contextmanager
    def pauses(self, *, reachable: Callable[[], bool] | None = None) -> Iterator[Pause]:
        """What a wait does between two status reads: sleep, a little longer each time.

        Yields ``pause(remaining)``, which returns within ``remaining`` seconds (None: no
        bound); :meth:`AerJobSet.wait_for_final_state` and ``as_completed`` use it too.
        ``reachable()`` says whether the wait's last read got through (an executor that
        wakes waits by a subscription renews one that an outage broke once it did).
        """
        del reachable
        yield growing_sleep()

    def wait(self, indices: Sequence[int], deadline: Deadline) -> list[SubJobState]:
        """Block until the given sub-jobs are final; raise once ``deadline`` has passed."""
        states: list[SubJobState] = []

        def ready() -> list[SubJobState] | None:
            nonlocal states
            states = self.states()
            self._watch(states)
            return states if all(states[i].status in FINAL for i in indices) else None

        def timed_out() -> NoReturn:
            raise not_final_error([i for i in indices if states[i].status not in FINAL])

        with self.pauses() as pause:
            return poll(ready, deadline, timed_out, pause=pause)


class Outage:
    """How a wait rides out a broker that went away: one failed read in a row.

    Each read already retried for its client's window (a Redis restart or a failover of
    a few seconds never gets here), so one :class:`~jobset.errors.BrokerUnavailableError`
    is logged and waited through (a slower failover, a restart from a large AOF); the next
    one in a row is raised, so a wait on a Redis that is gone or frozen ends within two
    reads' bounds instead of at its deadline, or never.
    """

    def __init__(self, jobset_id: str) -> None:
        self.jobset_id = jobset_id
        self.failing = False  # the last read failed

    def read(self, fn: Callable[[], T]) -> T | None:
        """``fn()``, or None when it failed and the read before it did not."""
        try:
            value = fn()
        except BrokerUnavailableError as e:
            if self.failing:
                raise
            self.failing = True
            logger.warning(
                "Redis unreachable while waiting for %s; trying once more: %s", self.jobset_id, e
            )
            return None
        self.failing = False
        return value


def not_final_error(pending: Sequence[int]) -> JobSetTimeoutError:
    return JobSetTimeoutError(
        f"timed out with {len(pending)} sub-job(s) not final (first: {list(pending[:5])})"
    )


@dataclass(frozen=True)
class StoredSet:
    """A set found by id where the executor stores sets: its record, backend, submission."""

    record: JobSetRecord
    backend: Any
    submission: Submission


class Executor(abc.ABC):
    """Where a job set's sub-jobs run: the one interface of ``run()``, the primitives and
    :class:`~jobset.AerJobSet`.

    Only :meth:`slots` and :meth:`submit` are required.  The rest says what an executor
    cannot do (:meth:`check_options` refuses such options before anything is planned)
    and gives what only a stored set has (retrieve by id, the set list, signed records).
    """

    @property
    def given(self) -> Any:
        """What the user passed as the executor (``AerJobSet.executor()`` returns it): this
        executor itself, or the pool or client an adapter wraps."""
        return self

    def check_options(self, options: SubmitOptions) -> None:
        """Refuse, without any I/O, the options this executor cannot honour."""
        del options

    def check_reachable(self) -> None:  # noqa: B027 (nothing to reach by default)
        """Raise :class:`~jobset.errors.BrokerUnavailableError` if it cannot be reached."""

    @abc.abstractmethod
    def slots(self) -> int:
        """How many sub-jobs run at once: the automatic split spreads a set over them."""

    def max_memory_mb(self) -> int | None:
        """The state memory (MiB) above which a circuit is refused at submit; None: no cap."""
        return None

    def version_skew(self) -> str | None:
        """Why no live worker would run this producer's sub-jobs; None if one would."""
        return None

    def memory_shortfall(self, backend: Any, costs: Any) -> str | None:
        """Why the largest live worker could not hold a circuit of ``costs`` (a
        :class:`~.admission.PlanCosts`); None if it could, or if this executor cannot
        know."""
        del backend, costs
        return None

    @abc.abstractmethod
    def submit(self, request: SetRequest) -> Submission:
        """Start every sub-job of ``request.plan`` and return the submission."""

    # ---- stored sets: what an executor without storage refuses
    def stored_set(self, job_id: str) -> StoredSet:
        """The set ``job_id`` as stored (:class:`~jobset.errors.JobSetNotFoundError` if not)."""
        raise self._not_stored("retrieve")

    def stored_ids(self) -> list[str]:
        """The ids of every stored set, in no order (``list_sets`` orders by the records)."""
        raise self._not_stored("list_sets")

    def find(self, kind: Kind, ref: Any) -> Any:
        """A signed value stored with a set (None when absent)."""
        raise self._not_stored("retrieve")

    def _not_stored(self, what: str) -> InvalidInputError:
        return InvalidInputError(
            f"{what} needs a CeleryExecutor: a set on {type(self).__name__} lives only in "
            "the process that submitted it"
        )
