"""The public API is a short, pinned list; every error is under one root."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobset
from jobset import errors
from jobset.errors import JobSetError

PACKAGE = Path(jobset.__file__).parent


def test_public_names_are_exactly_the_pinned_list():
    assert sorted(jobset.__all__) == [
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
    for name in jobset.__all__:
        assert getattr(jobset, name).__module__.startswith("jobset.")


def test_the_primitives_are_a_module_of_their_own_not_top_level_names():
    import jobset.primitives

    assert sorted(jobset.primitives.__all__) == [
        "DistributedPrimitiveJob",
        "EstimatorOptions",
        "EstimatorV2",
        "SamplerOptions",
        "SamplerV2",
    ]
    assert not set(jobset.primitives.__all__) & set(jobset.__all__)


def test_every_error_is_a_qiskit_job_error_under_one_root():
    from qiskit.providers import JobError, JobTimeoutError

    for name in jobset.__all__:
        obj = getattr(jobset, name)
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, UserWarning)
        elif isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, jobset.JobSetError) and issubclass(obj, JobError)
    assert issubclass(jobset.JobSetTimeoutError, JobTimeoutError)


def test_every_class_of_the_error_tree_is_exported():
    import inspect

    from jobset import errors

    classes = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and obj.__module__ == errors.__name__
    }
    assert classes <= set(jobset.__all__), classes - set(jobset.__all__)
    for name in classes - {"SubJobFailure"}:
        assert name in (errors.__doc__ or ""), f"{name} is not drawn in the tree"


def test_a_failure_carries_the_class_of_the_error_it_raised():
    failure = jobset.SubJobFailure(
        3, "t-3", "ERROR", "SubJobTimeoutError: ran past", "SubJobTimeoutError"
    )
    assert failure.error_class is jobset.SubJobTimeoutError
    assert issubclass(failure.error_class, jobset.SubJobError)
    assert jobset.SubJobFailure(0, "t", "CANCELLED", "cancelled").error_class is None
    assert jobset.SubJobFailure(0, "t", "ERROR", "x", "ValueError").error_class is None


@pytest.mark.parametrize(
    "name",
    [
        "BrokerUnavailableError",
        "SubJobsLostError",
        "SubJobError",
        "SimulationFailedError",
        "RedeliveryLimitError",
        "SubJobTimeoutError",
        "ResultTooLargeError",
        "VersionMismatchError",
    ],
)
def test_each_reliability_error_is_in_the_tree_and_says_when_it_is_raised(name):
    cls = getattr(errors, name)
    assert issubclass(cls, JobSetError)
    assert (cls.__doc__ or "").startswith("Raised when")
    assert name in (errors.__doc__ or "")


def test_a_lost_set_error_lists_the_sub_jobs_and_says_what_to_do():
    error = errors.SubJobsLostError("set-1", list(range(25)))
    assert error.indices == list(range(25)) and error.jobset_id == "set-1"
    assert "25 sub-job(s) lost (0, 1, 2" in str(error) and "and 5 more" in str(error)
    assert "resubmit_lost()" in str(error)
