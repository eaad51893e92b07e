"""``SubJob``: one sub-job of a set as a ``JobV1`` (from ``worker_job`` and ``as_completed``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qiskit.circuit import QuantumCircuit
from qiskit.providers import JobStatus, JobV1
from qiskit.result import Result

from .errors import JobSetStateError
from .status import FINAL

if TYPE_CHECKING:
    from .jobset import AerJobSet


class SubJob(JobV1):
    """One sub-job of a set, as a ``JobV1``; its ``job_id()`` is its Celery task id."""

    version = 1

    def __init__(self, jobset: AerJobSet, index: int) -> None:
        super().__init__(jobset.backend(), jobset._require_submitted().task_ids[index])
        self._jobset = jobset
        self.index = index

    def submit(self) -> None:
        raise JobSetStateError("a sub-job is submitted by its job set")

    def executor(self) -> Any:
        """The executor the sub-job runs on: its set's, as for qiskit-aer 0.14's sub-jobs."""
        return self._jobset.executor()

    def circuits(self) -> list[QuantumCircuit]:
        """The circuits of this sub-job (none for a set retrieved by id: they stay in Redis)."""
        return list(self._jobset._sub_batches[self.index].circuits)

    def status(self) -> JobStatus:
        return self._jobset.status(self.index)

    def result(self, timeout: float | None = None) -> Result:
        return self._jobset.worker_results(self.index, timeout)

    def cancel(self) -> bool:
        if self.status() in FINAL:
            return False
        self._jobset._require_submitted().cancel([self.index])
        return True
