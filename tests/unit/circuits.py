"""Small circuit builders shared by the unit tests."""

from __future__ import annotations

from qiskit import QuantumCircuit


def bell(name: str = "bell") -> QuantumCircuit:
    qc = QuantumCircuit(2, name=name)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    return qc
