"""Stored sets as the executor interface shows them: the record, a listing of sets.

An executor that stores sets (:meth:`~jobset.executors.base.Executor.stored_set`) keeps a
:class:`JobSetRecord` per set: what rebuilding the set needs besides its payloads.  How
it is kept is the executor's (Redis for Celery: :mod:`~jobset.executors.celery.registry`);
listing the sets goes through the interface alone (:func:`list_sets`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qiskit.providers import JobStatus

from ..errors import BrokerUnavailableError, JobSetError, JobSetNotFoundError
from ..observe.view import ListingRow, listing_html, listing_text
from ..plan import Plan
from ..protocol import PROTOCOL_VERSION, Dispatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSetRecord:
    """What is known of a submitted set without its circuits."""

    jobset_id: str
    created_at: float
    tags: tuple[str, ...]
    backend_name: str
    task_ids: tuple[str, ...]
    plan: Plan
    version: int = PROTOCOL_VERSION
    timeout_s: float | None = None
    # Where the sub-jobs were published (None: the backend's class queue, no priority).
    dispatch: Dispatch | None = None
    # The set's estimated work (jobset.cost units; None: not estimated), which the scaler
    # reads to tell how long a queue's backlog would take to drain.
    work: float | None = None

    @property
    def experiments(self) -> int:
        return len(self.plan.experiments)


def skeleton(plan: Plan) -> Plan:
    """The plan without circuits or binds: enough to merge, status and look up by name."""
    batches = tuple(
        dataclasses.replace(b, circuits=(), parameter_binds=None) for b in plan.sub_batches
    )
    return dataclasses.replace(plan, sub_batches=batches)


def make_record(
    jobset_id: str,
    backend: Any,
    plan: Plan,
    task_ids: Sequence[str],
    tags: Sequence[str],
    *,
    timeout_s: float | None = None,
    dispatch: Dispatch | None = None,
    work: float | None = None,
) -> JobSetRecord:
    return JobSetRecord(
        jobset_id=jobset_id,
        created_at=time.time(),
        tags=tuple(tags),
        backend_name=str(getattr(backend, "name", type(backend).__name__)),
        task_ids=tuple(task_ids),
        plan=skeleton(plan),
        timeout_s=timeout_s,
        dispatch=dispatch,
        work=work,
    )


@dataclass(frozen=True)
class JobSetInfo:
    """One line of ``AerJobSet.list_sets``: a known set and its aggregate status."""

    job_id: str
    created_at: float
    tags: tuple[str, ...]
    backend_name: str
    sub_jobs: int
    experiments: int
    status: JobStatus


class JobSetListing(list[JobSetInfo]):
    """A list of :class:`JobSetInfo` that shows itself as a table (Jupyter, IPython)."""

    def rows(self) -> list[ListingRow]:
        return [
            ListingRow(
                job_id=i.job_id,
                created_at=i.created_at,
                status=i.status.name,
                sub_jobs=i.sub_jobs,
                experiments=i.experiments,
                backend_name=i.backend_name,
                tags=i.tags,
            )
            for i in self
        ]

    def _repr_html_(self) -> str:
        return listing_html(self.rows())

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(listing_text(self.rows()))


def list_sets(
    target: Any,
    *,
    on_skip: Callable[[str, JobSetError], None] | None = None,
    newest_first: bool = False,
    limit: int | None = None,
) -> JobSetListing:
    """Every set ``target`` (an executor that stores sets) knows of, oldest first.

    Oldest first (newest first with ``newest_first``) by the signed records' creation
    times; ``limit`` reads at most that many records, taken in the index's order.  A set
    that cannot be read (a record that fails verification, any Redis error on one of its
    keys) is skipped:
    ``on_skip(job_id, error)`` is called for each, and without it one warning is logged
    for all of them.
    """
    infos, skipped = JobSetListing(), []
    ids = target.stored_ids()
    if newest_first:
        ids.reverse()
    if limit is not None:
        ids = ids[: max(0, limit)]  # only these records are read
    for job_id in ids:
        try:
            stored = target.stored_set(job_id)
            record = stored.record
            info = JobSetInfo(
                job_id=job_id,
                created_at=record.created_at,
                tags=record.tags,
                backend_name=record.backend_name,
                sub_jobs=len(record.task_ids),
                experiments=record.experiments,
                status=stored.submission.aggregate(),
            )
        except JobSetNotFoundError:
            continue
        except BrokerUnavailableError:
            raise  # no set can be read: not one set to skip
        except JobSetError as e:
            skipped.append(job_id)
            if on_skip is not None:
                on_skip(job_id, e)
            continue
        infos.append(info)
    # Which records a limit reads follows the index; their order is the signed times'.
    infos.sort(key=lambda info: info.created_at, reverse=newest_first)
    if skipped and on_skip is None:
        logger.warning(
            "skipped %d job set(s) that could not be read or verified (written by another "
            "deployment's key, or altered): %s",
            len(skipped),
            ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""),
        )
    return infos
