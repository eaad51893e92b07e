"""What the distributed sampler and estimator share: where and how they split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from qiskit_aer import AerSimulator

from .. import admission
from ..executors import CeleryExecutor
from ..plan import Plan
from ..pools import check_executor
from .job import DistributedPrimitiveJob, submit
from .layout import PrimitiveRecord, positive_or_none

P = TypeVar("P", bound="DistributedPrimitive")


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
    ) -> None:
        self._executor = check_executor(executor)
        # Fair share as for run(): the owner's queue, the set's priority (Celery only).
        self._owner = admission.check_owner(owner)
        self._priority = admission.check_priority(priority)
        admission.require_celery(
            isinstance(self._executor, CeleryExecutor),
            owner=self._owner is not None,
            priority=self._priority != "normal",
        )
        self._max_job_size = positive_or_none("max_job_size", max_job_size)
        self._max_shot_size = positive_or_none("max_shot_size", max_shot_size)
        self._tags = (tags,) if isinstance(tags, str) else tuple(tags)
        self._backend: Any = AerSimulator(**backend_options)

    @classmethod
    def from_backend(cls: type[P], backend: Any, *, executor: Any, **kwargs: Any) -> P:
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
        return self._executor

    def _submit(self, plan: Plan, record: PrimitiveRecord) -> DistributedPrimitiveJob:
        """Submit a planned job on this primitive's executor, backend, tags and sharing."""
        return submit(
            self._backend,
            plan,
            record,
            executor=self._executor,
            tags=self._tags,
            owner=self._owner,
            priority=self._priority,
        )
