"""The task that runs one sub-batch of a job set."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from jobset import codec
from jobset.errors import JobSetError
from jobset.execute import run_sub_batch
from jobset.protocol import (
    RUN_SUB_JOB_TASK,
    SubJobRef,
    backend_key,
    batch_key,
    cancel_key,
    result_key,
    sub_job_cancel_key,
)

from .app import app
from .lifecycle import runtime

logger = logging.getLogger(__name__)


class SimulationFailedError(JobSetError):
    """Raised when Aer reports an experiment of the sub-batch as failed."""


@app.task(name=RUN_SUB_JOB_TASK, bind=True)
def run_sub_job(self: Task, **kwargs: Any) -> dict[str, Any]:
    """Run sub-job ``index`` of set ``jobset_id`` and store its signed Result in Redis.

    Checks the set's durable cancel mark first (a revoke broadcast is lost when no worker
    is online).  Storing under the sub-job's own key makes a second run of the same
    sub-job (a redelivery) overwrite, never add: the merge counts it once.
    """
    ref = SubJobRef.from_kwargs(kwargs)
    settings = self.app.conf.jobset_settings
    redis = self.app.backend.client
    if redis.exists(cancel_key(ref.jobset_id), sub_job_cancel_key(ref.jobset_id, ref.index)):
        logger.info("sub-job %d of %s skipped: cancelled", ref.index, ref.jobset_id)
        self.backend.mark_as_revoked(self.request.id, "job set cancelled", request=self.request)
        raise Ignore()

    keys = (backend_key(ref.jobset_id), batch_key(ref.jobset_id, ref.index))
    backend_blob, batch_blob = redis.mget(keys)
    backend = codec.loads(backend_blob, key=settings.secret_key, context=keys[0])
    batch = codec.loads(batch_blob, key=settings.secret_key, context=keys[1])

    result = run_sub_batch(backend, batch, threads=runtime.aer_threads)
    rkey = result_key(ref.jobset_id, ref.index)
    blob = codec.dumps(result, key=settings.secret_key, context=rkey)
    redis.set(rkey, blob, ex=settings.result_ttl_s)

    if not result.success:
        failed = [
            f"experiment {batch.experiments[i]}: {exp.status}"
            for i, exp in enumerate(result.results)
            if not exp.success
        ]
        raise SimulationFailedError("; ".join(failed) or str(result.status))
    return {"experiments": len(result.results), "success": True}
