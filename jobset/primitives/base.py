"""What the distributed sampler and estimator share: where and how they split.

Without an executor a primitive is Aer's own (``qiskit_aer.primitives``), as
``DistributedAerSimulator`` without one is a plain ``AerSimulator``: ``run`` hands the PUBs
to Aer's primitive, built from this one's options and simulator, and returns its job.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from qiskit.primitives import PrimitiveJob, PrimitiveResult
from qiskit_aer import AerSimulator
from qiskit_aer.aererror import AerError

from ..errors import InvalidInputError
from ..executors.base import SubmitOptions
from ..executors.pools import as_executor
from ..plan import Plan
from ..validate import check_arguments, did_you_mean
from .job import DistributedPrimitiveJob, submit
from .layout import PrimitiveRecord, positive_or_none

P = TypeVar("P", bound="DistributedPrimitive")
_O = TypeVar("_O")


def empty_job() -> PrimitiveJob[PrimitiveResult[Any]]:
    """What Aer's primitives return for an empty list of PUBs: a job with an empty result.

    Nothing is queued for it, so it is no job set (and has no ``job_set``).
    """
    job: PrimitiveJob[PrimitiveResult[Any]] = PrimitiveJob(
        lambda: PrimitiveResult([], metadata={"version": 2})
    )
    job._submit()
    return job


def checked_options(where: str, cls: type[_O], options: dict[str, Any] | None) -> _O:
    """``cls(**options)``, an unknown key refused with the closest name (not a TypeError)."""
    if not options:
        return cls()
    fields = dataclasses.fields(cast(Any, cls))
    check_arguments(f"{where} options", options, (f.name for f in fields))
    return cls(**options)


def check_init_arguments(primitive: Any, unknown: dict[str, Any]) -> None:
    """Refuse keyword arguments ``__init__`` does not take, with the closest name."""
    if unknown:
        known = inspect.signature(type(primitive).__init__).parameters
        names = [n for n, p in known.items() if p.kind is p.KEYWORD_ONLY]
        check_arguments(type(primitive).__name__, unknown, names)


def simulator(where: str, backend_options: dict[str, Any]) -> AerSimulator:
    """``AerSimulator(**backend_options)``, an unknown option refused with the closest name."""
    try:
        return AerSimulator(**backend_options)
    except AerError as e:
        name = next((k for k in backend_options if e.message == f"Invalid option {k}"), None)
        if name is None:
            raise
        valid = dict(AerSimulator().options.items())
        raise InvalidInputError(
            f"{where} backend_options: unknown option {name!r}{did_you_mean(name, valid)}"
        ) from None


def option_fields(options: Any) -> dict[str, Any]:
    """An options dataclass as the dict Aer's primitives take, its values shared, not copied."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


class DistributedPrimitive:
    """The executor, the split sizes, the tags and the simulator the workers run."""

    def __init__(
        self,
        *,
        executor: Any,
        backend_options: dict[str, Any],
        max_job_size: int | None,
        max_shot_size: int | None,
        tags: Sequence[str],
        owner: str | None = None,
        priority: str = "normal",
        admit: str | None = None,
        cache_ttl_s: int | None = None,
    ) -> None:
        self._executor = executor
        self._target = None if executor is None else as_executor(executor)
        # Every option of run(), checked as run() checks them; the sharing ones need Celery.
        self._submit_options = SubmitOptions.check(
            tags=tags, owner=owner, priority=priority, admit=admit, cache_ttl_s=cache_ttl_s
        )
        if self._target is not None:
            self._target.check_options(self._submit_options)
        else:
            self._submit_options.refuse_queue_options("an executor (a CeleryExecutor)")
        self._max_job_size = positive_or_none("max_job_size", max_job_size)
        self._max_shot_size = positive_or_none("max_shot_size", max_shot_size)
        if self._executor is None and (max_job_size, max_shot_size) != (None, None):
            # Aer's primitive runs everything at once: a split size would change nothing.
            raise InvalidInputError("max_job_size and max_shot_size need an executor")
        self._tags = self._submit_options.tags
        self._backend: Any = simulator(type(self).__name__, backend_options)

    @classmethod
    def from_backend(cls: type[P], backend: Any, *, executor: Any = None, **kwargs: Any) -> P:
        """A primitive on ``backend`` (an ``AerSimulator``, or any backend Aer can mimic)."""
        primitive = cls(executor=executor, **kwargs)
        primitive._backend = (
            backend if isinstance(backend, AerSimulator) else AerSimulator.from_backend(backend)
        )
        return primitive

    @property
    def backend(self) -> Any:
        """The ``AerSimulator`` that the workers run (a copy of it)."""
        return self._backend

    @property
    def executor(self) -> Any:
        """Where the sub-jobs run; ``None``: this primitive is Aer's own."""
        return self._executor

    def _aer_primitive(self, aer_class: Any, **kwargs: Any) -> Any:
        """Aer's primitive with this one's current options, on this one's simulator."""
        return aer_class.from_backend(self._backend, **kwargs)

    def _slots(self) -> int:
        """Sub-jobs that run at once on the executor (reached first, as ``run()`` does)."""
        assert self._target is not None
        self._target.check_reachable()
        return self._target.slots()

    def _submit(self, plan: Plan, record: PrimitiveRecord) -> DistributedPrimitiveJob:
        """Submit a planned job on this primitive's executor and backend, with its options."""
        assert self._target is not None
        return submit(self._backend, plan, record, self._target, self._submit_options)
