"""Pure: what one experiment costs (memory, work) and what a worker offers.

Memory is the state Aer stores (:func:`estimate_memory`).  Work is a unitless count
meant to be proportional to Aer's run time:

* statevector-like methods (statevector, density matrix, unitary, superop; ``automatic``
  on a non-Clifford circuit): every instruction touches the whole state once, so one run
  costs ``(instructions + 1) x amplitudes``, with ``amplitudes = 2^(growth x qubits)``;
* Clifford circuits under ``automatic``, stabilizer and matrix product state runs grow
  polynomially: ``(instructions + 1) x qubits^2``;
* a circuit is run once and its shots sampled from the final state unless it must be
  re-run per shot (a noise model, a measurement or reset before the end, control flow):
  then the run cost is paid ``shots`` times, except on a density matrix, which carries
  the noise in one run (``automatic`` is resolved first, as Aer resolves it:
  :func:`resolved_method`);
* on statevectors of 14 qubits or more Aer fuses gates: an instruction counts 1 / FUSION_GAIN;
* every sampled shot adds ``SHOT_WORK``, and every experiment a fixed ``EXPERIMENT_WORK``.

Only ratios of work are used: the automatic split evens out the work of its sub-jobs
(:func:`balance_weights`), so no worker needs to measure its speed.  That work stays
proportional to measured run time across very different circuits is pinned by a test
(``tests/unit/test_cost.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qiskit.circuit import QuantumCircuit

# Memory: the memory a circuit's simulation needs, to refuse what no worker could hold.
#
# Aer stores the whole state: a statevector is ``2**n`` complex amplitudes, a density
# matrix or a unitary ``2**(2n)``, a superoperator ``2**(4n)``; 16 bytes each in double
# precision, 8 in single.  ``n`` counts the qubits the circuit uses: Aer drops the others
# (``enable_truncation``, on by default).  Stabilizer, extended stabilizer and matrix product
# state simulations grow polynomially and are not estimated.  For ``automatic``, Aer picks a
# stabilizer simulation for Clifford circuits (not estimated) and a statevector otherwise,
# the figure used here (with a noise model it may choose a density matrix, which needs
# more: the estimate is then a lower bound and Aer's own check has the last word).

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


# Work of one experiment besides its gates and shots (Aer's per-experiment setup and
# result), and of one sampled shot: fitted on 200 GHZ-5 circuits x 1000 shots.
EXPERIMENT_WORK = 180_000.0
SHOT_WORK = 260.0
# Aer fuses neighbouring gates on states of at least this many qubits (its
# ``fusion_threshold``), so each instruction costs about 1 / FUSION_GAIN of a pass there
# (fitted on quantum_volume 16 and 20 statevectors; density matrices gain less).
FUSION_THRESHOLD_QUBITS = 14
FUSION_GAIN = 6.0
DENSITY_FUSION_GAIN = 2.5  # fitted on an 8-qubit density matrix
# Instructions after which a measurement no longer lets Aer sample all shots from one run.
_PER_SHOT_NAMES = frozenset({"reset", "if_else", "while_loop", "for_loop", "switch_case"})
# What one sub-job costs in the queue, in work units: publishing, delivery, the worker's
# Redis steps, Celery's record and the result's trip back.  Measured with
# ``./scripts/bench throughput`` (docs/benchmarks.md): about 2-3 ms per sub-job against
# Aer's 0.26 ms for a two-qubit one-shot experiment (``EXPERIMENT_WORK`` + a shot, so about
# 1.4 ns per unit).
QUEUE_COST_WORK = 2.0e6
# The automatic split aims each sub-job at this much work (50 x the queue's cost, about
# 0.15 s of Aer), and cuts below it only to give every worker slot a sub-job of at least
# SPREAD_SUB_JOB_WORK (10 x the queue's cost) rather than let a slot idle.
TARGET_SUB_JOB_WORK = 50 * QUEUE_COST_WORK
SPREAD_SUB_JOB_WORK = 10 * QUEUE_COST_WORK
# The automatic split balances work only when experiments differ by more than this factor;
# below it the count rule (plan.auto_job_size) splits the set as it always did.
BALANCE_RATIO = 2.0

SIZE_SMALL = "small"
SIZE_LARGE = "large"


@dataclass(frozen=True)
class ExperimentCost:
    """One experiment's estimated needs: state memory (None: not exponential) and work."""

    memory_bytes: int | None
    work: float


def _needs_per_shot_runs(circuit: CircuitScan) -> bool:
    return bool(circuit.names & _PER_SHOT_NAMES) or circuit.gate_after_measure


def experiment_cost(
    circuit: QuantumCircuit,
    *,
    shots: int,
    method: str = "automatic",
    precision: str = "double",
    truncation: bool = True,
    noisy: bool = False,
) -> ExperimentCost:
    """The estimated memory and work of one run of ``circuit`` for ``shots`` shots."""
    seen = scan(circuit)
    method = resolved_method(seen, method, shots=shots, noisy=noisy, truncation=truncation)
    memory = estimate_memory(seen, method=method, precision=precision, truncation=truncation)
    qubits = max(1, seen.qubits(truncation=truncation))
    ops = seen.ops
    if memory is not None:
        state_qubits = STATE_GROWTH[memory.method] * qubits
        gain = FUSION_GAIN if STATE_GROWTH[memory.method] == 1 else DENSITY_FUSION_GAIN
        passes = ops / gain if state_qubits >= FUSION_THRESHOLD_QUBITS else float(ops)
        per_run = (passes + 1) * float(2**state_qubits)
    else:
        per_run = (ops + 1) * float(qubits * qubits)
    per_shot = noisy or _needs_per_shot_runs(seen)
    # A density matrix carries the noise in one run, whatever the shots.
    repeats = shots if per_shot and method != "density_matrix" else 1
    work = per_run * repeats + SHOT_WORK * shots + EXPERIMENT_WORK
    return ExperimentCost(None if memory is None else memory.bytes, work)


def resolved_method(
    circuit: CircuitScan, method: str, *, shots: int, noisy: bool, truncation: bool = True
) -> str:
    """The method Aer runs ``circuit`` with: ``method`` itself unless it is ``automatic``.

    Aer's automatic choice (measured on qiskit-aer 0.18.2): a noisy circuit with more shots
    than ``2^qubits`` runs on a density matrix (one run carries the noise for every shot),
    Clifford ones included; otherwise a Clifford circuit runs on the stabilizer method and
    anything else on a statevector.
    """
    if method != "automatic":
        return method
    qubits = circuit.qubits(truncation=truncation)
    if noisy and qubits < 64 and shots > 2**qubits:
        return "density_matrix"
    if circuit.names <= CLIFFORD_NAMES:
        return "stabilizer"
    return "statevector"


def circuit_costs(
    circuits: Sequence[QuantumCircuit],
    *,
    shots: int,
    options: Mapping[str, Any],
) -> list[ExperimentCost]:
    """Costs of ``circuits`` under a backend's merged options (``method``, ``noise_model``, ...)."""

    def option(name: str, default: Any) -> Any:
        value = options.get(name, default)
        return default if value is None else value

    noise = options.get("noise_model")
    noisy = noise is not None and not getattr(noise, "is_ideal", lambda: False)()
    return [
        experiment_cost(
            c,
            shots=shots,
            method=str(option("method", "automatic")),
            precision=str(option("precision", "double")),
            truncation=bool(option("enable_truncation", True)),
            noisy=noisy,
        )
        for c in circuits
    ]


def balance_weights(costs: Sequence[ExperimentCost]) -> list[float] | None:
    """Per-circuit weights for the automatic split, or None when the count rule suffices."""
    works = [c.work for c in costs]
    if not works or max(works) <= BALANCE_RATIO * min(works):
        return None
    return works


def sub_jobs_for_work(total_work: float, slots: int) -> int:
    """The most sub-jobs the automatic split makes of a set of ``total_work``.

    As many as hold :data:`TARGET_SUB_JOB_WORK` each; when that is fewer than the worker
    slots, as many slots as get :data:`SPREAD_SUB_JOB_WORK` each (an idle slot costs more
    than the queue then); never fewer than one.
    """
    by_target = int(total_work // TARGET_SUB_JOB_WORK)
    if by_target >= slots:
        return by_target
    spread = min(max(1, slots), int(total_work // SPREAD_SUB_JOB_WORK))
    return max(1, by_target, spread)


def job_size_for_work(experiment_work: float, experiments: int) -> int:
    """Experiments per sub-job that reach :data:`TARGET_SUB_JOB_WORK` (at most all)."""
    per = max(experiment_work, 1.0)
    return max(1, min(experiments, math.ceil(TARGET_SUB_JOB_WORK / per)))


def size_class(memory_bytes: int | None, *, large_memory_bytes: int) -> str:
    """``large`` for a state of at least ``large_memory_bytes``, else ``small``."""
    if memory_bytes is not None and memory_bytes >= large_memory_bytes:
        return SIZE_LARGE
    return SIZE_SMALL


@dataclass(frozen=True)
class WorkerCapacity:
    """What a live worker advertises in its heartbeat (``jobset:worker:{hostname}``)."""

    hostname: str
    memory_bytes: int | None
    cores: int
    concurrency: int
    queues: tuple[str, ...]
    gpu: bool | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> WorkerCapacity:
        """From a heartbeat; :class:`ValueError` or :class:`TypeError` for a bad field."""
        memory = record.get("memory_bytes")
        gpu = record.get("gpu")
        queues = record.get("queues") or ()
        if not isinstance(queues, (list, tuple)) or len(queues) > _MAX_QUEUES:
            raise ValueError(f"a heartbeat's queues must be a short list, got {queues!r:.80}")
        return cls(
            hostname=str(record.get("hostname", ""))[:_MAX_HOSTNAME],
            memory_bytes=_bounded(memory, 1, 2**62) if memory is not None else None,
            cores=_bounded(record.get("cores", 1) or 1, 1, _MAX_COUNT),
            concurrency=_bounded(record.get("concurrency", 1) or 1, 1, _MAX_COUNT),
            queues=tuple(str(q) for q in queues),
            gpu=gpu if isinstance(gpu, bool) else None,
        )


_MAX_COUNT = 100_000
_MAX_QUEUES = 1_000
_MAX_HOSTNAME = 255


def _bounded(value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r:.80}")
    if not low <= value <= high:
        raise ValueError(f"expected a number in [{low}, {high}], got {value!r}")
    return int(value)


def largest_memory(workers: Sequence[WorkerCapacity]) -> WorkerCapacity | None:
    """The live worker that offers the most memory (None when none advertises any)."""
    known = [w for w in workers if w.memory_bytes is not None]
    return max(known, key=lambda w: w.memory_bytes or 0) if known else None
