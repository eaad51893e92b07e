"""Distributed Qiskit Aer job sets over Celery and Redis.

::

    from qiskit_aer import AerSimulator
    from jobset import CeleryExecutor, run

    job = run(AerSimulator(), circuits, executor=CeleryExecutor(), max_job_size=10,
              shots=4000, seed_simulator=7)
    job.status(); job.result(); job.cancel()
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from .errors import (
    AdmissionError,
    AdmissionWarning,
    BrokerError,
    BrokerUnavailableError,
    ConfigurationError,
    DecodeError,
    EvictionPolicyWarning,
    InvalidInputError,
    JobSetCancelledError,
    JobSetError,
    JobSetFailedError,
    JobSetNotFoundError,
    JobSetStateError,
    JobSetTimeoutError,
    PerformanceWarning,
    PrimitiveJobFailedError,
    PrimitiveJobNotFoundError,
    RedeliveryLimitError,
    ResultTooLargeError,
    SecurityError,
    SimulationFailedError,
    SubJobError,
    SubJobFailure,
    SubJobsLostError,
    SubJobTimeoutError,
    VersionMismatchError,
    VersionSkewWarning,
)
from .executors.celery.executor import CeleryExecutor
from .executors.stored import JobSetInfo
from .jobset import AerJobSet
from .settings import Settings
from .simulator import DistributedAerSimulator, run
from .subjob import SubJob

try:
    __version__ = _version("qiskit-aer-jobset")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AdmissionError",
    "AdmissionWarning",
    "AerJobSet",
    "BrokerError",
    "BrokerUnavailableError",
    "CeleryExecutor",
    "ConfigurationError",
    "DecodeError",
    "DistributedAerSimulator",
    "EvictionPolicyWarning",
    "InvalidInputError",
    "JobSetCancelledError",
    "JobSetError",
    "JobSetFailedError",
    "JobSetInfo",
    "JobSetNotFoundError",
    "JobSetStateError",
    "JobSetTimeoutError",
    "PerformanceWarning",
    "PrimitiveJobFailedError",
    "PrimitiveJobNotFoundError",
    "RedeliveryLimitError",
    "ResultTooLargeError",
    "SecurityError",
    "Settings",
    "SimulationFailedError",
    "SubJob",
    "SubJobError",
    "SubJobFailure",
    "SubJobTimeoutError",
    "SubJobsLostError",
    "VersionMismatchError",
    "VersionSkewWarning",
    "run",
]
