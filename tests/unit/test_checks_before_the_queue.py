"""What a producer can know fails at submit, before anything is queued, in Aer's words."""

from __future__ import annotations

import concurrent.futures as cf

import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit_aer import AerSimulator

from jobset import InvalidInputError, run
from jobset.cost import ExperimentCost, WorkerCapacity
from jobset.executors.admission import shortfall


class _NeverRuns(cf.Executor):
    """An executor that fails the test if anything reaches it."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a sub-job was submitted")


def _rotations() -> tuple[QuantumCircuit, Parameter, Parameter]:
    a, b = Parameter("a"), Parameter("b")
    circuit = QuantumCircuit(1, name="rot")
    circuit.rx(a, 0)
    circuit.ry(b, 0)
    circuit.measure_all()
    return circuit, a, b


def test_unbound_parameters_without_parameter_binds_are_refused_at_submit():
    circuit, a, _ = _rotations()
    with pytest.raises(
        InvalidInputError, match=r"circuit 0 \('rot'\) has unbound parameters \(a, b\)"
    ):
        run(AerSimulator(), [circuit], executor=_NeverRuns())
    with pytest.raises(InvalidInputError, match=r"parameter_binds\[0\] leaves .* unbound: b"):
        run(AerSimulator(), [circuit], executor=_NeverRuns(), parameter_binds=[{a: [0.1]}])


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (
            {"method": "stabiliser"},
            "invalid simulation method 'stabiliser' (did you mean 'stabilizer'?)",
        ),
        ({"precision": "duble"}, "invalid simulation precision 'duble' (did you mean 'double'?)"),
        ({"max_parallel_threads": "x"}, "invalid option type: name=max_parallel_threads"),
    ],
)
def test_option_values_aer_would_refuse_are_refused_at_submit(options, said):
    circuit = QuantumCircuit(1)
    circuit.h(0)
    circuit.measure_all()
    with pytest.raises(InvalidInputError) as caught:
        run(AerSimulator(), [circuit], executor=_NeverRuns(), **options)
    assert said in str(caught.value)


def test_a_method_set_on_the_backend_itself_is_checked_too():
    circuit = QuantumCircuit(1)
    circuit.measure_all()
    backend = AerSimulator()
    backend.options.method = "stabiliser"  # bypasses set_options, as a pickled copy might
    with pytest.raises(InvalidInputError, match="did you mean 'stabilizer'"):
        run(backend, [circuit], executor=_NeverRuns())


def test_a_gpu_device_is_left_to_the_workers():
    circuit = QuantumCircuit(1)
    circuit.measure_all()
    with pytest.raises(AssertionError, match="a sub-job was submitted"):
        run(AerSimulator(), [circuit], executor=_NeverRuns(), device="GPU")


def test_the_memory_shortfall_names_the_circuit_and_the_largest_worker():
    costs = [
        ExperimentCost(memory_bytes=2**20, work=1.0),
        ExperimentCost(memory_bytes=2**30, work=1.0),
    ]
    workers = [
        WorkerCapacity(
            hostname="w1", memory_bytes=2**28, queues=(), concurrency=1, cores=1, gpu=False
        ),
        WorkerCapacity(
            hostname="w2", memory_bytes=2**29, queues=(), concurrency=1, cores=1, gpu=False
        ),
    ]
    short = shortfall(costs, workers, queue="jobset.cpu")
    assert short is not None and short.circuit == 1 and short.hostname == "w2"
    assert "circuit 1 needs 1.0 GiB" in short.message() and "w2, has 512.0 MiB" in short.message()
    assert shortfall(costs[:1], workers, queue="jobset.cpu") is None
