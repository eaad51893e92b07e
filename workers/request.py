"""The worker's side of a sub-job message: its envelope checked before anything acts on
it (:func:`sub_job_strategy`), and the words of its hard time limit (prefork parent).

Celery follows a message's callbacks, errbacks, chain, chord and group fields on its own
(it publishes to the queues they name and writes the keys they name, even for a task
that fails or is revoked), and whoever can write to Redis can put anything there.  So
every sub-job message is checked whole (:func:`jobset.protocol.check_envelope`) before a
request is even made of it: one that carries more than the producer sends is stored as
failed with a :class:`~jobset.errors.SecurityError`, acknowledged and logged once, and
nothing else sees it.  This is the task's own strategy (``Task.Strategy``, a public
hook), wrapping Celery's: the request class cannot do it, because Celery subclasses it
per pool with its own ``execute_using_pool``, and the pool child decodes the message body
again from the raw bytes.

Time limits:

A set's ``timeout_s`` reaches Celery as a soft limit and, a little later, a hard one.  Aer
holds the GIL while it simulates (measured on qiskit-aer 0.18: another Python thread and a
signal handler both wait for the simulation to end), so the soft limit's
``SoftTimeLimitExceeded`` can only land in the Python parts of a sub-job (decoding,
encoding, storing), where the task turns it into a
:class:`~jobset.errors.SubJobTimeoutError`.  A simulation past the limit is stopped by the
hard limit: billiard SIGKILLs the pool child, starts a fresh one, and Celery stores
``TimeLimitExceeded(seconds)``, which this request replaces with the same clear message,
both where Celery stores it on the timeout and where it stores it again when the pool
reports the killed job (whichever comes last wins, so both must say the same).

For the same reason a cancelled request is stopped with SIGKILL.  Celery cancels the
running requests on a cold shutdown (SIGQUIT, or SIGTERM under ``REMAP_SIGTERM=SIGQUIT``
as Slurm workers run: ``scancel``, preemption, the time limit's ``--signal``); with the
catchable default the shutdown would wait for the simulation to end, and Slurm would kill
the worker before it gave the message back, leaving the sub-job to wait out its lease.
Killed, the sub-job's message, never acknowledged, goes back to its queue at once.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from celery.exceptions import TimeLimitExceeded
from celery.worker.request import Request
from celery.worker.strategy import default as default_strategy

from jobset.errors import JobSetError, SecurityError, SubJobTimeoutError, timeout_message
from jobset.executors.celery import evidence, tally
from jobset.protocol import SubJobRef, check_envelope, ended_field, runs_key

logger = logging.getLogger(__name__)


def sub_job_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery's strategy for ``task``, behind a check of each message's whole envelope."""
    handle = default_strategy(task, app, consumer, **kwargs)

    def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any) -> Any:
        try:
            if body is not None:  # a protocol 1 message: the producer sends protocol 2
                raise SecurityError("refused a sub-job message of Celery's protocol 1")
            check_envelope(message.headers, message.payload)
        except SecurityError as e:
            _refuse(task, message.headers, e)
            ack(logger, consumer.connection_errors)
            return None
        return handle(message, body, ack, reject, callbacks)

    return on_message


def _refuse(task: Any, headers: Any, error: SecurityError) -> None:
    """Store the refusal as the message's outcome (where its id can name a record) without
    following anything it carries, and log it once."""
    tid = headers.get("id") if isinstance(headers, dict) else None
    if not (isinstance(tid, str) and 0 < len(tid) <= 64 and tid.isprintable()):
        logger.error("sub-job message: %s", error)
        return
    logger.error("sub-job message %s: %s", tid, error)
    try:
        task.backend.mark_as_failure(tid, error, request=None, call_errbacks=False)
    except Exception:  # the refusal stands: nothing of the message is followed
        logger.warning("could not store the refusal of %s", tid, exc_info=True)


class SubJobRequest(Request):
    """Stores a sub-job stopped by its hard time limit as a :class:`SubJobTimeoutError`."""

    def _timeout_error(self, timeout: object) -> SubJobTimeoutError:
        soft_s = (self.time_limits or (None, None))[1] or timeout
        try:  # the words only: the message was validated before the sub-job ran
            ref = SubJobRef.from_kwargs(self.kwargs or {})
        except JobSetError:
            return SubJobTimeoutError(timeout_message(None, None, soft_s))
        return SubJobTimeoutError(timeout_message(ref.index, ref.jobset_id, soft_s))

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, TimeLimitExceeded):
            try:
                raise self._timeout_error(exc.args[0] if exc.args else None) from exc
            except SubJobTimeoutError:
                exc_info = ExceptionInfo()
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        if isinstance(exc, TimeLimitExceeded):
            self._tally_failed()

    def cancel(self, pool: Any, signal: Any = None, emit_retry: bool = True) -> None:
        """Stop the running sub-job now (SIGKILL unless told otherwise): see the module doc.

        The stopped run is recorded as ended, so that giving a sub-job back (its worker's
        job ended, not its worker died of it) never counts against
        ``JOBSET_MAX_WORKER_LOSSES``: a sub-job may be given back by any number of
        preemptions or time limits.
        """
        running = bool(self.time_start)
        super().cancel(pool, signal=signal or "SIGKILL", emit_retry=emit_retry)
        ref = tally.ref_of(self.id, self.kwargs)
        if running and ref is not None:
            try:
                self.task.backend.client.hincrby(runs_key(ref.jobset_id), ended_field(ref.index), 1)
            except Exception:  # then it counts as one loss, conservatively
                logger.warning("could not record the end of cancelled %s", self.id)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if soft:
            return
        error = self._timeout_error(timeout)
        try:
            self.task.backend.mark_as_failure(self.id, error, request=self._context)
        except Exception:  # the broker may be away; TimeLimitExceeded is stored already
            logger.warning("could not word the time limit of %s", self.id, exc_info=True)
        self._tally_failed()

    def _tally_failed(self) -> None:
        """The pool child was killed: only the parent can record the failure in the tally."""
        ref = tally.ref_of(self.id, self.kwargs)
        if ref is not None:
            settings = self.task.app.conf.jobset_settings
            evidence.record_move(self.task.backend.client, settings, ref, tally.FAILED)
