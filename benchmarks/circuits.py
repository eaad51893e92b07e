"""Circuits the benchmark scripts share."""

from __future__ import annotations

from qiskit import QuantumCircuit


def ghz(n: int, name: str) -> QuantumCircuit:
    """An n-qubit GHZ state, measured: W1's circuit."""
    qc = QuantumCircuit(n, name=name)
    qc.h(0)
    for q in range(n - 1):
        qc.cx(q, q + 1)
    qc.measure_all()
    return qc
