"""Pure planning for the distributed primitives: no Celery, no Redis.

Aer's primitives turn PUBs into ``AerSimulator.run`` calls; here each such call is a
:class:`Run`.  ``qiskit_aer.primitives.SamplerV2`` makes one run per distinct shot count
(the PUBs with that count, in order, each with its parameter values as
``parameter_binds``), all with the same seed; ``EstimatorV2`` makes one run per PUB (the
circuit with a ``save_expectation_value`` per Pauli), each with the same seed.  Aer gives
experiment ``i`` of a run the seed ``seed + 2113 * i``, so as long as each run keeps its
own experiment numbering, splitting runs into sub-jobs changes nothing:
:func:`compose_plan` plans every run with :func:`jobset.plan.make_plan` (which cuts it
into blocks of ``max_job_size`` experiments with the right seed offsets) and lays the
runs' sub-batches end to end in one :class:`~jobset.plan.Plan`, so one job set carries a
whole primitive job.  A sub-job never mixes two runs.

Shot splitting (``max_shot_size``) turns one run into one run per shot chunk, chunk ``c``
seeded ``chunk_seed(seed, c, chunks)``: the seeds :func:`jobset.plan.make_plan` would give
that chunk, the same for every ``max_job_size`` and worker count, and the unsplit seed when
there is a single chunk.  Each chunk is its own set of experiments in the plan, so the
job set's own merge never has to combine chunks of save instructions:
:mod:`jobset.primitives.merge` does, from the :class:`PrimitiveRecord` made here.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.primitives.backend_sampler_v2 import (
    _analyze_circuit,
)
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import Pauli

from ..errors import InvalidInputError
from ..plan import (
    ExperimentRef,
    Plan,
    SubBatch,
    auto_job_size,
    check_seed,
    chunk_seed,
    make_plan,
    shot_chunks,
)
from ..protocol import PROTOCOL_VERSION

SAMPLER = "sampler"
ESTIMATOR = "estimator"
# Drawn seeds stay in Aer's usual 31-bit range, as jobset.plan draws them.
_DRAWN_SEED_BOUND = 2**31
# Run options that the primitive itself sets, or that configure the distribution.
_OWN_RUN_OPTIONS = ("shots", "parameter_binds", "seed_simulator")
_DISTRIBUTION_OPTIONS = ("executor", "max_job_size", "max_shot_size")


@dataclass(frozen=True)
class Run:
    """One ``AerSimulator.run`` call that Aer's primitive would make (or one shot chunk of it)."""

    circuits: tuple[QuantumCircuit, ...]
    parameter_binds: tuple[dict[Any, Any], ...]
    shots: int
    seed: int


@dataclass(frozen=True)
class Part:
    """One shot chunk of a PUB in the job set: its first experiment and its shots.

    The PUB's parameter-value sets are the experiments ``first .. first + n - 1``.
    """

    first: int
    shots: int


@dataclass(frozen=True)
class SamplerPubLayout:
    """What rebuilding a ``SamplerPubResult`` needs, besides the experiments' memory."""

    shape: tuple[int, ...]
    experiments: int
    shots: int
    meas_info: tuple[Any, ...]
    max_num_bytes: int
    circuit_metadata: Any
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class EstimatorPubLayout:
    """What rebuilding a ``PubResult`` needs, besides the experiments' expectation values."""

    param_shape: tuple[int, ...]
    experiments: int
    observables: Any  # the PUB's ObservablesArray
    precision: float
    circuit_metadata: Any
    noise_seed: int
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class PrimitiveRecord:
    """A primitive job without its circuits: stored in Redis next to its job set's record."""

    kind: str
    pubs: tuple[SamplerPubLayout | EstimatorPubLayout, ...]
    seed: int
    seed_drawn: bool
    version: int = PROTOCOL_VERSION


# --------------------------------------------------------------------------- input


def positive_or_none(name: str, value: Any) -> int | None:
    """``value`` as an int >= 1, or ``None``; raises :class:`InvalidInputError` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1 or None, got {value!r}")
    return int(value)


def resolve_seed(seed: Any) -> tuple[int, bool]:
    """The seed to run with, and whether it was drawn here (``seed`` was ``None``).

    A drawn seed is recorded with the job, so any run can be reproduced afterwards.
    """
    if seed is None:
        return secrets.randbelow(_DRAWN_SEED_BOUND), True
    return check_seed(seed, "seed"), False


def clean_run_options(run_options: Mapping[str, Any]) -> dict[str, Any]:
    """``run_options`` without what the primitive sets itself or what configures splitting."""
    return {
        k: v
        for k, v in run_options.items()
        if k not in _OWN_RUN_OPTIONS and k not in _DISTRIBUTION_OPTIONS
    }


def parameter_binds(circuit: QuantumCircuit, parameter_values: Any) -> dict[Any, Any]:
    """The ``parameter_binds`` entry Aer's primitives build for one PUB (flattened C order)."""
    param_array = parameter_values.as_array(circuit.parameters)
    return {p: param_array[..., i].ravel() for i, p in enumerate(circuit.parameters)}


def _bind_count(binds: Mapping[Any, Any]) -> int:
    """Experiments one circuit makes with ``binds``: as :func:`jobset.plan.make_plan` counts."""
    return len(next(iter(binds.values()))) if binds else 1


def expval_circuit(pub: EstimatorPub) -> QuantumCircuit:
    """The PUB's circuit with a ``save_expectation_value`` per Pauli, labelled by the Pauli.

    As Aer's ``EstimatorV2`` builds it, with the Paulis sorted rather than in set order so
    the circuit is the same in every process (save instructions draw no random numbers, so
    their order changes no result).
    """
    circuit = pub.circuit.copy()
    paulis = sorted({pauli for obs in pub.observables.ravel() for pauli in obs})
    for pauli in paulis:
        circuit.save_expectation_value(Pauli(pauli), qubits=range(circuit.num_qubits), label=pauli)
    return circuit


# --------------------------------------------------------------------------- planning


def compose_plan(
    runs: Sequence[Run],
    *,
    run_options: Mapping[str, Any],
    max_job_size: int | None,
    slots: int,
    seed: int,
    seed_drawn: bool,
) -> tuple[Plan, list[list[int]]]:
    """One plan for all ``runs``, and for each run the first experiment of each circuit.

    Each run is planned alone (so its experiments keep Aer's seed offsets) and its
    sub-batches are appended to those of the runs before it.  ``max_job_size=None`` is
    :func:`jobset.plan.auto_job_size` over the experiments of every run together: about
    two sub-jobs per worker slot, and never fewer than one sub-job per run.

    The composite plan has one shot chunk per experiment (chunks are runs here); its
    ``shots`` is the first run's, each sub-batch carries its own.
    """
    total = sum(_bind_count(b) for run in runs for b in run.parameter_binds)
    size = max_job_size or auto_job_size(total, slots)
    batches: list[SubBatch] = []
    refs: list[ExperimentRef] = []
    firsts: list[list[int]] = []
    n_circuits = 0
    for run in runs:
        plan = make_plan(
            list(run.circuits),
            shots=run.shots,
            max_job_size=size,
            seed_simulator=run.seed,
            parameter_binds=list(run.parameter_binds),
            run_options=run_options,
            slots=slots,
        )
        offset = len(refs)
        for batch in plan.sub_batches:
            batches.append(
                dataclasses.replace(
                    batch,
                    index=len(batches),
                    experiments=tuple(offset + e for e in batch.experiments),
                    base_seed=seed,
                    seed_drawn=seed_drawn,
                )
            )
        first_of_circuit: dict[int, int] = {}
        for ref in plan.experiments:
            first_of_circuit.setdefault(ref.circuit, offset + ref.index)
            refs.append(
                dataclasses.replace(ref, index=offset + ref.index, circuit=n_circuits + ref.circuit)
            )
        firsts.append([first_of_circuit[c] for c in range(len(run.circuits))])
        n_circuits += len(run.circuits)
    shots = runs[0].shots
    return Plan(tuple(batches), tuple(refs), (shots,), shots, seed, seed_drawn), firsts


def plan_sampler(
    pubs: Sequence[SamplerPub],
    *,
    seed: int,
    seed_drawn: bool,
    run_options: Mapping[str, Any],
    max_job_size: int | None,
    max_shot_size: int | None,
    slots: int,
) -> tuple[Plan, PrimitiveRecord]:
    """Plan a sampler job: one run per distinct shot count (and chunk), as Aer groups PUBs."""
    binds = [parameter_binds(pub.circuit, pub.parameter_values) for pub in pubs]
    groups: dict[int, list[int]] = {}  # shots -> PUB indices; first-seen order, as Aer's
    for i, pub in enumerate(pubs):
        groups.setdefault(pub.shots, []).append(i)
    runs: list[Run] = []
    where: list[tuple[int, int, int]] = []  # (run, position of the PUB in it, PUB)
    for shots, members in groups.items():
        circuits = tuple(pubs[i].circuit for i in members)
        group_binds = tuple(binds[i] for i in members)
        chunks = shot_chunks(shots, max_shot_size)
        for c, chunk in enumerate(chunks):
            where += [(len(runs), pos, i) for pos, i in enumerate(members)]
            runs.append(Run(circuits, group_binds, chunk, chunk_seed(seed, c, len(chunks))))
    plan, firsts = compose_plan(
        runs,
        run_options={**run_options, "memory": True},
        max_job_size=max_job_size,
        slots=slots,
        seed=seed,
        seed_drawn=seed_drawn,
    )
    parts: list[list[Part]] = [[] for _ in pubs]
    for run, pos, i in where:  # within a group, runs come in chunk order
        parts[i].append(Part(firsts[run][pos], runs[run].shots))
    layouts = []
    for i, pub in enumerate(pubs):
        meas_info, max_num_bytes = _analyze_circuit(pub.circuit)
        layouts.append(
            SamplerPubLayout(
                shape=tuple(pub.parameter_values.shape),
                experiments=_bind_count(binds[i]),
                shots=pub.shots,
                meas_info=tuple(meas_info),
                max_num_bytes=max_num_bytes,
                circuit_metadata=pub.circuit.metadata,
                parts=tuple(parts[i]),
            )
        )
    return plan, PrimitiveRecord(SAMPLER, tuple(layouts), seed, seed_drawn)


def plan_estimator(
    pubs: Sequence[EstimatorPub],
    *,
    shots: int,
    seed: int,
    seed_drawn: bool,
    run_options: Mapping[str, Any],
    max_job_size: int | None,
    max_shot_size: int | None,
    slots: int,
) -> tuple[Plan, PrimitiveRecord]:
    """Plan an estimator job: one run per PUB (and shot chunk), as Aer runs them.

    Every PUB's noise generator is seeded with ``seed``, as Aer seeds each with
    ``run_options["seed_simulator"]``.
    """
    chunks = shot_chunks(shots, max_shot_size)
    runs: list[Run] = []
    layouts = []
    for pub in pubs:
        circuit = expval_circuit(pub)
        binds = parameter_binds(circuit, pub.parameter_values)
        first_run = len(runs)
        runs += [
            Run((circuit,), (binds,), chunk, chunk_seed(seed, c, len(chunks)))
            for c, chunk in enumerate(chunks)
        ]
        layouts.append(
            EstimatorPubLayout(
                param_shape=tuple(pub.parameter_values.shape),
                experiments=_bind_count(binds),
                observables=pub.observables,
                precision=float(pub.precision),
                circuit_metadata=pub.circuit.metadata,
                noise_seed=seed,
                parts=tuple(Part(first_run + c, chunk) for c, chunk in enumerate(chunks)),
            )
        )
    plan, firsts = compose_plan(
        runs,
        run_options=run_options,
        max_job_size=max_job_size,
        slots=slots,
        seed=seed,
        seed_drawn=seed_drawn,
    )
    # Parts were numbered by run above; turn them into experiment indices.
    layouts = [
        dataclasses.replace(
            layout,
            parts=tuple(Part(firsts[p.first][0], p.shots) for p in layout.parts),
        )
        for layout in layouts
    ]
    return plan, PrimitiveRecord(ESTIMATOR, tuple(layouts), seed, seed_drawn)
