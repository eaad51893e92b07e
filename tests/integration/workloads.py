"""Circuits and comparisons shared by the integration tests."""

from __future__ import annotations

from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit.circuit.library import quantum_volume
from qiskit.result import Result
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, depolarizing_error, thermal_relaxation_error


def qv_circuits(n: int, qubits: int = 5, name: str = "qv") -> list[QuantumCircuit]:
    """High-entropy circuits: every seed offset error shows up in the memory."""
    sim = AerSimulator()
    out = []
    for seed in range(n):
        qc = quantum_volume(qubits, seed=seed)
        qc.measure_all()
        qc.name = f"{name}{seed}"
        out.append(transpile(qc, sim, optimization_level=0))
    return out


def parametric_circuit(name: str = "ansatz") -> tuple[QuantumCircuit, Parameter, Parameter]:
    theta, phi = Parameter("theta"), Parameter("phi")
    qc = QuantumCircuit(4, name=name)
    for q in range(4):
        qc.rx(theta * (q + 1), q)
    for q in range(3):
        qc.cx(q, q + 1)
    for q in range(4):
        qc.ry(phi + q, q)
    qc.measure_all()
    return qc, theta, phi


def kraus_noise_model() -> NoiseModel:
    """Depolarizing plus thermal relaxation (a Kraus error): lossy through NoiseModel.to_dict."""
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.02, 1), ["sx", "x", "rz", "u"])
    noise.add_all_qubit_quantum_error(depolarizing_error(0.05, 2), ["cx"])
    noise.add_all_qubit_quantum_error(thermal_relaxation_error(50e3, 70e3, 500), ["id", "rx"])
    return noise


def assert_same_counts_and_memory(got: Result, want: Result) -> None:
    assert len(got.results) == len(want.results)
    for i, (g, w) in enumerate(zip(got.results, want.results, strict=True)):
        assert g.success and w.success, (i, g.status, w.status)
        assert g.header["name"] == w.header["name"], i
        assert got.get_counts(i) == want.get_counts(i), f"experiment {i} counts differ"
        assert got.get_memory(i) == want.get_memory(i), f"experiment {i} memory differs"
        assert g.seed_simulator == w.seed_simulator, i


def coins(n: int, name: str = "coin-") -> list[QuantumCircuit]:
    """One-qubit circuits (H, measure): the cheapest sub-jobs, for sets about the queue."""
    out = []
    for i in range(n):
        qc = QuantumCircuit(1, name=f"{name}{i}")
        qc.h(0)
        qc.measure_all()
        out.append(qc)
    return out


def wide(qubits: int) -> QuantumCircuit:
    """H and RZ on every qubit: a state of 16 B x 2**qubits, simulated in no time."""
    circuit = QuantumCircuit(qubits, name=f"wide{qubits}")
    circuit.h(range(qubits))
    circuit.rz(0.3, range(qubits))
    circuit.measure_all()
    return circuit
