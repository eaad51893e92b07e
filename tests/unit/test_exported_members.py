"""The public API is a short, pinned list; the layering rules of the package hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import jobset

PACKAGE = Path(jobset.__file__).parent


def test_public_names_are_exactly_the_pinned_list():
    assert sorted(jobset.__all__) == [
        "AdmissionError",
        "AdmissionWarning",
        "AerJobSet",
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


PURE = {"plan", "merge", "status", "codec", "protocol", "errors", "deadline"}
PURE |= {"memory", "cost", "compat"}  # estimates and version rules
PURE |= {"view", "timeline"}  # how a set shows itself: markup and the runs it recorded


def _imports(path: Path) -> set[str]:
    """Top-level names a module imports; relative imports as ``.name``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add("." + (node.module or "").split(".")[0])
            else:
                names.add((node.module or "").split(".")[0])
    return names


def test_the_producer_never_imports_the_worker_code():
    for path in PACKAGE.rglob("*.py"):
        assert "workers" not in _imports(path), path.name


def test_only_the_local_cluster_package_starts_processes_and_nothing_else_imports_it():
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name != "local":
            imported = _imports(path)
            assert ".local" not in imported and "..local" not in imported, path.name
    local = PACKAGE / "local"
    for path in local.glob("*.py"):
        siblings = {name for name in _imports(path) if name.startswith(".")}
        assert not {".jobset", ".executors", ".simulator", ".cli"} & siblings, path.name


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_import_neither_celery_nor_redis_nor_io_modules(module):
    imported = _imports(PACKAGE / f"{module}.py")
    assert not {"celery", "redis", "kombu"} & imported
    siblings = {name[1:] for name in imported if name.startswith(".")}
    assert siblings <= PURE, siblings - PURE


@pytest.mark.parametrize("module", ["layout", "merge"])
def test_the_primitives_planning_and_merging_is_pure_too(module):
    imported = _imports(PACKAGE / "primitives" / f"{module}.py")
    assert not {"celery", "redis", "kombu"} & imported
    siblings = {name[1:] for name in imported if name.startswith(".")}
    assert siblings <= PURE | {"layout"}, siblings - PURE


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


# They talk to executors through jobset.executors only: no module names an implementation.
INTERFACE_USERS = [
    "jobset.py",
    "simulator.py",
    "subjob.py",
    "primitives/base.py",
    "primitives/job.py",
    "primitives/sampler.py",
    "primitives/estimator.py",
]
EXECUTOR_KINDS = {"CeleryExecutor", "CeleryRun", "FuturesExecutor", "FuturesRun", "Executor"}


@pytest.mark.parametrize("module", INTERFACE_USERS)
def test_job_sets_and_primitives_know_executors_only_by_their_interface(module):
    imported = _imports(PACKAGE / module)
    assert not {".celery_executor", ".celery_run", "celery", "redis", "kombu"} & imported


def test_the_executor_interface_does_no_io_and_names_no_implementation():
    imported = _imports(PACKAGE / "executors.py")
    assert not {"celery", "redis", "kombu", ".celery_executor", ".celery_run", ".pools"} & imported


def test_only_as_executor_tells_executors_apart():
    """An ``isinstance`` on an executor type is written once, in ``jobset.pools``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                named = {getattr(n, "id", getattr(n, "attr", None)) for n in ast.walk(node.args[1])}
                if named & EXECUTOR_KINDS:
                    found.append(path.relative_to(PACKAGE).as_posix())
    assert set(found) == {"pools.py"}, found
