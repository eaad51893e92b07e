"""Pure planning: circuits and shots -> sub-batches, with their seeds.

No I/O here.  An *experiment* is what Aer numbers: a circuit with ``k`` parameter binds
is ``k`` experiments, in input order.  Experiments are cut into blocks of
``max_job_size``; with ``max_shot_size`` each block is also cut into shot chunks (the
remainder kept as a last, smaller chunk).  One block x one chunk is one sub-batch.

Aer records counts for a circuit without classical bits when another circuit of the same
run has some (its run-wide ``memory_slots``).  A sub-batch of only such circuits in a set
that has measured ones carries ``pad_clbits``: the worker appends an empty circuit with
that many bits, last so no seed moves, and drops its result.

Seeds.  Aer gives experiment ``i`` of a run the seed ``seed_simulator + 2113 * i``.  A
sub-batch starting at experiment ``e0`` therefore runs with ``seed + 2113 * e0`` and gives
exactly what the unsplit run gives.  Shot chunk ``c`` of a split experiment runs with
``chunk_seed(seed, c) + 2113 * e``: derived from (seed, experiment, chunk), the same for
every ``max_job_size`` and worker count, and never shared between chunks.  With one chunk
the seed is the unsplit one.  Without ``seed_simulator`` a base seed is drawn at planning
time and recorded in the plan, so any run can be reproduced.

Aer takes any signed 64-bit seed, reads it as unsigned, and the ``+ 2113 * i`` wraps
modulo 2**64 (measured on qiskit-aer 0.18.2: seed -4 gives experiments 2**64 - 4, 2109,
4222); :func:`experiment_seed` does the same sum and hands back the signed form Aer's
binding takes, so every seed Aer accepts splits exactly too.

The automatic ``max_job_size`` (:func:`auto_job_size`) aims at ``SUB_JOBS_PER_SLOT`` sub-jobs
per worker slot: enough to spread the set over every slot and absorb stragglers, few
enough to keep per-message overhead small.  Given the circuits' estimated work, it also
makes no more sub-jobs than :func:`jobset.cost.sub_jobs_for_work` allows: each aims at
50 x the queue's own cost per sub-job, so a set of tiny circuits is not cut into
sub-jobs the queue costs more than.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit.circuit import ControlFlowOp, QuantumCircuit

from .cost import sub_jobs_for_work
from .errors import InvalidInputError

SEED_STRIDE = 2113
MIN_SEED = -(2**63)
MAX_SEED = 2**63 - 1
_SEED_MODULUS = 2**64
SUB_JOBS_PER_SLOT = 2
_DRAWN_SEED_BOUND = 2**31


@dataclass(frozen=True)
class ExperimentRef:
    """One Aer experiment of the set, in input order."""

    index: int
    circuit: int
    bind: int | None
    name: str


@dataclass(frozen=True)
class SubBatch:
    """One sub-job's work: what one ``AerSimulator.run`` call on a worker executes.

    ``experiments`` are the global indices of the experiments it produces, in the order
    Aer returns them; ``chunk`` is the shot chunk (0 when shots are not split).
    """

    index: int
    circuits: tuple[QuantumCircuit, ...]
    parameter_binds: tuple[dict[Any, list[Any]], ...] | None
    experiments: tuple[int, ...]
    chunk: int
    shots: int
    seed_simulator: int
    run_options: Mapping[str, Any] = field(default_factory=dict)
    base_seed: int = 0
    seed_drawn: bool = False
    pad_clbits: int = 0

    def experiment_counts(self) -> list[int]:
        """Experiments each circuit of this batch makes (its number of binds, else 1)."""
        if self.parameter_binds is None:
            return [1] * len(self.circuits)
        return [len(next(iter(b.values()), [None])) for b in self.parameter_binds]

    def experiment_names(self) -> list[str]:
        """Names of this batch's experiments, in the order Aer returns them."""
        return [
            c.name
            for c, n in zip(self.circuits, self.experiment_counts(), strict=True)
            for _ in range(n)
        ]

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AerSimulator.run(self.circuits, **kwargs)``."""
        kwargs = dict(self.run_options)
        kwargs["shots"] = self.shots
        kwargs["seed_simulator"] = self.seed_simulator
        if self.parameter_binds is not None:
            kwargs["parameter_binds"] = [dict(b) for b in self.parameter_binds]
        return kwargs


@dataclass(frozen=True)
class Plan:
    """The split of a set: its sub-batches and what to merge them back into."""

    sub_batches: tuple[SubBatch, ...]
    experiments: tuple[ExperimentRef, ...]
    chunk_shots: tuple[int, ...]
    shots: int
    seed_simulator: int
    seed_drawn: bool

    def experiment_sub_jobs(self) -> list[list[tuple[int, int]]]:
        """For each experiment, its ``(sub_job, index_inside_it)`` pairs in chunk order."""
        pairs: list[list[tuple[int, int]]] = [[] for _ in self.experiments]
        for batch in sorted(self.sub_batches, key=lambda b: b.chunk):
            for pos, exp in enumerate(batch.experiments):
                pairs[exp].append((batch.index, pos))
        return pairs

    def find_experiment(self, experiment: Any) -> int | None:
        """The index of an experiment given by index, by name, or by its circuit object."""
        if isinstance(experiment, int) and not isinstance(experiment, bool):
            return experiment if 0 <= experiment < len(self.experiments) else None
        if isinstance(experiment, QuantumCircuit):
            for batch in self.sub_batches:
                for pos, circuit in enumerate(batch.circuits):
                    if circuit is experiment:
                        return batch.experiments[sum(batch.experiment_counts()[:pos])]
            return self.find_experiment(experiment.name)
        if isinstance(experiment, str):
            return next((ref.index for ref in self.experiments if ref.name == experiment), None)
        return None


def auto_job_size(n_experiments: int, slots: int, n_chunks: int = 1) -> int:
    """Experiments per sub-job when the caller gave none.

    Rule: aim at ``SUB_JOBS_PER_SLOT * slots`` sub-jobs in all, counting shot chunks, so
    every worker slot gets work and no sub-job is much longer than another; never fewer
    experiments than one per sub-job.
    """
    target = max(1, SUB_JOBS_PER_SLOT * max(1, slots))
    blocks = max(1, math.ceil(target / max(1, n_chunks)))
    return max(1, math.ceil(n_experiments / blocks))


def balanced_starts(weights: Sequence[float], blocks: int) -> list[int]:
    """Start indices of at most ``blocks`` contiguous blocks of about equal total weight.

    Contiguous, so each block's seed stays ``seed + 2113 * start`` and a split run gives
    exactly the unsplit counts.  A block closes once it reaches the even share; an
    experiment heavier than the share is a block of its own.
    """
    total = sum(weights)
    blocks = max(1, min(blocks, len(weights)))
    share = total / blocks
    starts, acc = [0], 0.0
    for i, w in enumerate(weights):
        if acc > 0 and acc + w / 2 > share and len(starts) < blocks:
            starts.append(i)
            acc = 0.0
        acc += w
    return starts


def check_seed(seed: Any, name: str = "seed_simulator") -> int:
    """``seed`` as an int, if Aer takes it (a signed 64-bit integer); InvalidInputError if not."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {seed!r}")
    if not MIN_SEED <= seed <= MAX_SEED:
        raise InvalidInputError(f"{name} must be a signed 64-bit integer, as Aer takes, got {seed}")
    return int(seed)


def experiment_seed(seed: int, offset: int) -> int:
    """The seed Aer gives experiment ``offset`` of a run seeded ``seed``, in the signed
    64-bit form its binding takes (the sum wraps modulo 2**64, as Aer's does)."""
    wrapped = (seed + SEED_STRIDE * offset) % _SEED_MODULUS
    return wrapped - _SEED_MODULUS if wrapped > MAX_SEED else wrapped


def chunk_seed(seed: int, chunk: int, n_chunks: int) -> int:
    """Base seed of shot chunk ``chunk``: the set's seed when shots are not split."""
    if n_chunks == 1:
        return seed
    # Aer's unsigned reading of the seed: a negative one seeds as Aer would read it.
    entropy = seed % _SEED_MODULUS
    state = np.random.SeedSequence(entropy=entropy, spawn_key=(chunk,)).generate_state(2, np.uint32)
    # 62 bits leave room for + 2113 * experiment below Aer's signed 64-bit seed.
    return int((int(state[0]) << 32 | int(state[1])) >> 2)


def shot_chunks(shots: int, max_shot_size: int | None) -> tuple[int, ...]:
    """Shots per chunk, the remainder kept as a last smaller chunk."""
    if max_shot_size is None or max_shot_size >= shots:
        return (shots,)
    full, rest = divmod(shots, max_shot_size)
    return (max_shot_size,) * full + ((rest,) if rest else ())


def _positive_int(name: str, value: Any, *, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _as_circuits(circuits: Any) -> list[QuantumCircuit]:
    if isinstance(circuits, QuantumCircuit):
        return [circuits]
    if isinstance(circuits, (str, bytes)) or not isinstance(circuits, Iterable):
        raise InvalidInputError(
            f"circuits must be a QuantumCircuit or a list of them, got {type(circuits).__name__}"
        )
    out = list(circuits)
    if not out:
        raise InvalidInputError("circuits is empty: nothing to run")
    for i, c in enumerate(out):
        if not isinstance(c, QuantumCircuit):
            raise InvalidInputError(f"circuits[{i}] is a {type(c).__name__}, not a QuantumCircuit")
    return out


def check_parameters(
    circuits: Sequence[QuantumCircuit], binds: Sequence[Mapping[Any, Any]] | None
) -> None:
    """Refuse a circuit whose parameters would stay unbound (Aer refuses it on the worker:
    "circuits have parameters but parameter_binds is not specified")."""
    for i, circuit in enumerate(circuits):
        parameters = getattr(circuit, "parameters", ())
        if not parameters:
            continue
        bound = set(binds[i]) if binds is not None and i < len(binds) else set()
        missing = [p.name for p in parameters if p not in bound]
        if not missing:
            continue
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        if binds is None:
            raise InvalidInputError(
                f"circuit {i} ({circuit.name!r}) has unbound parameters ({shown}) and no "
                "parameter_binds: pass parameter_binds=[{parameter: [values, ...]}, ...] "
                "(one dict per circuit), or assign_parameters first"
            )
        raise InvalidInputError(
            f"parameter_binds[{i}] leaves parameters of circuit {i} ({circuit.name!r}) "
            f"unbound: {shown}"
        )


def _bind_counts(
    circuits: Sequence[QuantumCircuit], parameter_binds: Any
) -> tuple[list[dict[Any, list[Any]]] | None, list[int]]:
    if parameter_binds is None:
        return None, [1] * len(circuits)
    if isinstance(parameter_binds, Mapping):
        parameter_binds = [parameter_binds]
    binds = list(parameter_binds)
    if len(binds) != len(circuits):
        raise InvalidInputError(
            f"parameter_binds has {len(binds)} entries for {len(circuits)} circuits"
        )
    normalized: list[dict[Any, list[Any]]] = []
    counts = []
    for i, bind in enumerate(binds):
        if not isinstance(bind, Mapping):
            raise InvalidInputError(f"parameter_binds[{i}] must be a dict, got {bind!r}")
        try:
            values = {p: list(v) for p, v in bind.items()}
        except TypeError as e:
            raise InvalidInputError(
                f"parameter_binds[{i}] must map each parameter to a list of values"
            ) from e
        lengths = {len(v) for v in values.values()}
        if len(lengths) > 1:
            raise InvalidInputError(
                f"parameter_binds[{i}] binds parameters to value lists of different lengths"
            )
        n = lengths.pop() if lengths else 1
        if n < 1:
            raise InvalidInputError(f"parameter_binds[{i}] has no values")
        normalized.append(values)
        counts.append(n)
    return normalized, counts


def has_save_instructions(circuit: QuantumCircuit) -> bool:
    """True when the circuit holds an Aer save instruction (at any depth of control flow)."""
    from qiskit_aer.library.save_instructions.save_data import SaveData

    for inst in circuit.data:
        op = inst.operation
        if isinstance(op, SaveData):
            return True
        if isinstance(op, ControlFlowOp) and any(has_save_instructions(b) for b in op.blocks):
            return True
    return False


def make_plan(
    circuits: Any,
    *,
    shots: Any,
    max_job_size: Any = None,
    max_shot_size: Any = None,
    seed_simulator: Any = None,
    parameter_binds: Any = None,
    run_options: Mapping[str, Any] | None = None,
    slots: int = 1,
    circuit_weights: Sequence[float] | None = None,
    circuit_work: Sequence[float] | None = None,
) -> Plan:
    """Validate the input and split it into sub-batches; raises before anything is queued.

    ``circuit_weights`` (estimated work per circuit, :mod:`jobset.cost`) changes only the
    automatic split: the same number of sub-jobs, cut where the work evens out.
    ``circuit_work`` (estimated work per circuit, all shots) caps the automatic split's
    number of sub-jobs by :func:`~jobset.cost.sub_jobs_for_work`.
    """
    circs = _as_circuits(circuits)
    n_shots = _positive_int("shots", shots, optional=False)
    assert n_shots is not None
    job_size = _positive_int("max_job_size", max_job_size, optional=True)
    shot_size = _positive_int("max_shot_size", max_shot_size, optional=True)
    binds, counts = _bind_counts(circs, parameter_binds)
    check_parameters(circs, binds)

    experiments: list[ExperimentRef] = []
    for c, (circuit, k) in enumerate(zip(circs, counts, strict=True)):
        for b in range(k):
            bind = b if binds is not None else None
            experiments.append(ExperimentRef(len(experiments), c, bind, circuit.name))

    chunks = shot_chunks(n_shots, shot_size)
    if len(chunks) > 1:
        for i, circuit in enumerate(circs):
            if has_save_instructions(circuit):
                raise InvalidInputError(
                    f"circuit {i} ({circuit.name!r}) has Aer save instructions; their results "
                    "do not add up over shot chunks, so it cannot be split by max_shot_size"
                )

    if seed_simulator is None:
        seed, drawn = secrets.randbelow(_DRAWN_SEED_BOUND), True
    else:
        seed, drawn = check_seed(seed_simulator), False

    size = job_size or auto_job_size(len(experiments), slots, len(chunks))
    if job_size is None and circuit_work is not None:
        # Sized by work, not count: never more sub-jobs than the work pays the queue for.
        total = sum(float(circuit_work[e.circuit]) for e in experiments)
        blocks = max(1, sub_jobs_for_work(total, slots) // len(chunks))
        size = max(size, math.ceil(len(experiments) / blocks))
    if job_size is None and circuit_weights is not None:
        if len(circuit_weights) != len(circs):
            raise InvalidInputError("circuit_weights needs one weight per circuit")
        weights = [float(circuit_weights[e.circuit]) for e in experiments]
        starts = balanced_starts(weights, math.ceil(len(experiments) / size))
    else:
        starts = list(range(0, len(experiments), size))
    set_clbits = max(c.num_clbits for c in circs)
    options = dict(run_options or {})
    batches: list[SubBatch] = []
    for start, end in zip(starts, [*starts[1:], len(experiments)], strict=True):
        block = experiments[start:end]
        block_circuits, block_binds = _block_payload(circs, binds, block)
        for c, chunk_n in enumerate(chunks):
            batches.append(
                SubBatch(
                    index=len(batches),
                    circuits=block_circuits,
                    parameter_binds=block_binds,
                    experiments=tuple(e.index for e in block),
                    chunk=c,
                    shots=chunk_n,
                    seed_simulator=experiment_seed(chunk_seed(seed, c, len(chunks)), start),
                    run_options=options,
                    base_seed=seed,
                    seed_drawn=drawn,
                    pad_clbits=0 if any(c.num_clbits for c in block_circuits) else set_clbits,
                )
            )
    return Plan(tuple(batches), tuple(experiments), chunks, n_shots, seed, drawn)


def _block_payload(
    circuits: Sequence[QuantumCircuit],
    binds: Sequence[dict[Any, list[Any]]] | None,
    block: Sequence[ExperimentRef],
) -> tuple[tuple[QuantumCircuit, ...], tuple[dict[Any, list[Any]], ...] | None]:
    """The circuits (and the slice of each one's binds) that produce ``block``."""
    if binds is None:
        return tuple(circuits[e.circuit] for e in block), None
    out_circuits: list[QuantumCircuit] = []
    out_binds: list[dict[Any, list[Any]]] = []
    last_circuit = -1
    for e in block:
        assert e.bind is not None
        if e.circuit == last_circuit:
            for p in out_binds[-1]:
                out_binds[-1][p].append(binds[e.circuit][p][e.bind])
            continue
        last_circuit = e.circuit
        out_circuits.append(circuits[e.circuit])
        out_binds.append({p: [v[e.bind]] for p, v in binds[e.circuit].items()})
    return tuple(out_circuits), tuple(out_binds)


def plan_from_sub_batches(batches: Sequence[SubBatch]) -> Plan:
    """Rebuild the plan of a set from its sub-batches (``AerJobSet``'s historic constructor)."""
    if not batches:
        raise InvalidInputError("a job set needs at least one sub-batch")
    names: dict[int, str] = {}
    chunk_shots: dict[int, int] = {}
    for batch in batches:
        names.update(zip(batch.experiments, batch.experiment_names(), strict=True))
        chunk_shots[batch.chunk] = batch.shots
    if sorted(names) != list(range(len(names))):
        raise InvalidInputError("the sub-batches do not cover experiments 0..n-1")
    experiments = tuple(ExperimentRef(i, -1, None, names[i]) for i in range(len(names)))
    shots = tuple(chunk_shots[c] for c in sorted(chunk_shots))
    first = batches[0]
    return Plan(tuple(batches), experiments, shots, sum(shots), first.base_seed, first.seed_drawn)
