"""``SubJob``: one sub-job of a set as a ``JobV1`` (from ``worker_job`` and ``as_completed``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from qiskit.circuit import QuantumCircuit
from qiskit.providers import JobStatus, JobV1
from qiskit.result import Result

from .errors import JobSetStateError
from .status import FINAL


class SubJobSource(Protocol):
    """What a sub-job reads of its set: the public calls of ``AerJobSet``, by index."""

    def backend(self) -> Any: ...

    def executor(self) -> Any: ...

    def status(self, worker: int | Iterable[int] | None = None) -> Any: ...

    def worker_results(
        self, worker: int | Iterable[int] | None = None, timeout: float | None = None
    ) -> Result: ...


class SubJob(JobV1):
    """One sub-job of a set, as a ``JobV1``; its ``job_id()`` is its Celery task id.

    Made by its set, which hands it its task id, its circuits and how to cancel it.
    """

    version = 1

    def __init__(
        self,
        jobset: SubJobSource,
        index: int,
        *,
        task_id: str,
        circuits: Sequence[QuantumCircuit],
        cancel: Callable[[list[int]], Any],
    ) -> None:
        super().__init__(jobset.backend(), task_id)
        self._jobset = jobset
        self._circuits = circuits
        self._cancel = cancel
        self.index = index

    def submit(self) -> None:
        raise JobSetStateError("a sub-job is submitted by its job set")

    def executor(self) -> Any:
        """The executor the sub-job runs on: its set's, as for qiskit-aer 0.14's sub-jobs."""
        return self._jobset.executor()

    def circuits(self) -> list[QuantumCircuit]:
        """The circuits of this sub-job (none for a set retrieved by id: they stay in Redis)."""
        return list(self._circuits)

    def status(self) -> JobStatus:
        status: JobStatus = self._jobset.status(self.index)
        return status

    def result(self, timeout: float | None = None) -> Result:
        return self._jobset.worker_results(self.index, timeout)

    def cancel(self) -> bool:
        if self.status() in FINAL:
            return False
        self._cancel([self.index])
        return True
