"""Pure: the memory a circuit's simulation needs, to refuse what no worker could hold.

Aer stores the whole state: a statevector is ``2**n`` complex amplitudes, a density
matrix or a unitary ``2**(2n)``, a superoperator ``2**(4n)``; 16 bytes each in double
precision, 8 in single.  ``n`` counts the qubits the circuit uses: Aer drops the others
(``enable_truncation``, on by default).  Stabilizer, extended stabilizer and matrix product
state simulations grow polynomially and are not estimated.  For ``automatic``, Aer picks a
stabilizer simulation for Clifford circuits (not estimated) and a statevector otherwise,
the figure used here (with a noise model it may choose a density matrix, which needs
more: the estimate is then a lower bound and Aer's own check has the last word).
"""

from __future__ import annotations

from dataclasses import dataclass

from qiskit.circuit import QuantumCircuit

BYTES_PER_AMPLITUDE = {"double": 16, "single": 8}
# Exponent of 2 per qubit: how the state grows with the number of qubits.
STATE_GROWTH = {"statevector": 1, "automatic": 1, "tensor_network": 1}
STATE_GROWTH |= {"density_matrix": 2, "unitary": 2, "superop": 4}
CLIFFORD_NAMES = frozenset(
    {"x", "y", "z", "h", "s", "sdg", "sx", "sxdg", "cx", "cy", "cz", "swap", "id", "ecr"}
    | {"pauli", "measure", "reset", "barrier", "delay"}
)


@dataclass(frozen=True)
class MemoryEstimate:
    """What one circuit's state takes: the figure, and how it was reached (for messages)."""

    bytes: int
    qubits: int
    method: str
    precision: str

    def explain(self) -> str:
        per = BYTES_PER_AMPLITUDE.get(self.precision, 16)
        power = STATE_GROWTH[self.method] * self.qubits
        return (
            f"{human_bytes(self.bytes)} ({per} B x 2^{power}: {self.qubits} qubits, "
            f"method {self.method}, {self.precision} precision)"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class CircuitScan:
    """What the estimates read from a circuit, gathered in one pass over its instructions.

    Reading ``circuit.data`` is the costly part (each instruction is built for Python on
    access), so memory and cost estimates share one pass instead of one each.
    """

    names: frozenset[str]  # every instruction's name, inside control-flow blocks too
    used_qubits: int  # qubits some instruction other than a barrier acts on
    num_qubits: int
    ops: int  # instructions other than barriers and measurements
    gate_after_measure: bool  # an instruction acts on a qubit after it was measured

    def qubits(self, *, truncation: bool = True) -> int:
        return self.used_qubits if truncation else self.num_qubits


def scan(circuit: QuantumCircuit) -> CircuitScan:
    names: set[str] = set()
    used: set[object] = set()
    measured: set[object] = set()
    ops = 0
    after_measure = False
    for inst in circuit.data:
        operation = inst.operation
        name = operation.name
        names.add(name)
        for block in getattr(operation, "blocks", ()):
            names |= instruction_names(block)
        if name == "barrier":
            continue
        qubits = inst.qubits
        used.update(qubits)
        if name == "measure":
            measured.update(qubits)
            continue
        ops += 1
        if measured and not after_measure and not measured.isdisjoint(qubits):
            after_measure = True
    return CircuitScan(frozenset(names), len(used), circuit.num_qubits, ops, after_measure)


def used_qubits(circuit: QuantumCircuit, *, truncation: bool = True) -> int:
    """Qubits Aer simulates: those some instruction (other than a barrier) acts on."""
    if not truncation:
        return circuit.num_qubits
    return scan(circuit).used_qubits


def instruction_names(circuit: QuantumCircuit) -> set[str]:
    """Names of every instruction, inside control-flow blocks too."""
    names = set()
    for inst in circuit.data:
        names.add(inst.operation.name)
        for block in getattr(inst.operation, "blocks", ()):
            names |= instruction_names(block)
    return names


def estimate_memory(
    circuit: QuantumCircuit | CircuitScan,
    *,
    method: str = "automatic",
    precision: str = "double",
    truncation: bool = True,
) -> MemoryEstimate | None:
    """The memory ``circuit``'s state needs, or None where it does not grow exponentially."""
    if method not in STATE_GROWTH:
        return None
    seen = circuit if isinstance(circuit, CircuitScan) else scan(circuit)
    if method == "automatic" and seen.names <= CLIFFORD_NAMES:
        return None
    qubits = seen.qubits(truncation=truncation)
    per = BYTES_PER_AMPLITUDE.get(precision, 16)
    return MemoryEstimate(per * 2 ** (STATE_GROWTH[method] * qubits), qubits, method, precision)
