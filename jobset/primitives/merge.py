"""Pure merging for the distributed primitives: a job set's experiments to PUB results.

:mod:`jobset.primitives.layout` planned each PUB's shot chunks as experiments of their
own and recorded where they are (:class:`~jobset.primitives.layout.PrimitiveRecord`).
Here bit strings are concatenated in chunk order, and expectation values averaged weighted
by shots (Aer's saved expectation value is the mean over the shots of a run, so this is
the mean over all shots).

The postprocessing is Aer's own (``qiskit_aer.primitives`` 0.18): the same packing of
memory into ``BitArray``s, the same loop over broadcast observables.  The estimator's
``precision`` noise is drawn here, *after* the merge, from one generator per PUB seeded as
Aer seeds it, over the PUB's whole ``evs`` array: splitting never changes the noise, and
``stds`` stay the target precision as in Aer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qiskit.primitives.backend_sampler_v2 import _memory_array, _samples_to_packed_array
from qiskit.primitives.containers import BitArray, DataBin, PubResult, SamplerPubResult
from qiskit.result.models import ExperimentResult

from .layout import EstimatorPubLayout, PrimitiveRecord, SamplerPubLayout


def _memory(experiment: ExperimentResult) -> list[str]:
    """An experiment's bit strings; zeros when the circuit measures nothing (as Aer does)."""
    memory = getattr(experiment.data, "memory", None)
    return list(memory) if memory else ["0x0"] * int(experiment.shots)


def sampler_pub_result(
    layout: SamplerPubLayout,
    experiments: Sequence[ExperimentResult],
    simulator_metadata: Mapping[str, Any],
) -> SamplerPubResult:
    """A PUB's ``SamplerPubResult`` from the experiments of every chunk (Aer's packing)."""
    memories: list[list[str]] = []
    for j in range(layout.experiments):
        joined: list[str] = []
        for part in layout.parts:  # chunk order
            joined += _memory(experiments[part.first + j])
        memories.append(joined)
    shape = layout.shape
    arrays = {
        item.creg_name: np.zeros((*shape, layout.shots, item.num_bytes), dtype=np.uint8)
        for item in layout.meas_info
    }
    memory_array = _memory_array(memories, layout.max_num_bytes)
    for samples, index in zip(memory_array, np.ndindex(*shape), strict=False):
        for item in layout.meas_info:
            packed = _samples_to_packed_array(samples, item.num_bits, item.start)
            arrays[item.creg_name][index] = packed
    meas = {
        item.creg_name: BitArray(arrays[item.creg_name], item.num_bits) for item in layout.meas_info
    }
    return SamplerPubResult(
        DataBin(**meas, shape=shape),
        metadata={
            "shots": layout.shots,
            "circuit_metadata": layout.circuit_metadata,
            "simulator_metadata": dict(simulator_metadata),
        },
    )


def _expectation_values(
    layout: EstimatorPubLayout, experiments: Sequence[ExperimentResult]
) -> list[dict[str, Any]]:
    """Saved expectation values per parameter-value set; chunks averaged weighted by shots."""
    total = sum(part.shots for part in layout.parts)
    values = []
    for j in range(layout.experiments):
        chunks = [(part.shots, experiments[part.first + j].data.to_dict()) for part in layout.parts]
        if len(chunks) == 1:
            values.append(chunks[0][1])
            continue
        values.append(
            {label: sum(n * data[label] for n, data in chunks) / total for label in chunks[0][1]}
        )
    return values


def estimator_pub_result(
    layout: EstimatorPubLayout,
    experiments: Sequence[ExperimentResult],
    simulator_metadata: Mapping[str, Any],
) -> PubResult:
    """A PUB's ``PubResult``: Aer's sum over broadcast observables, then precision noise."""
    values = _expectation_values(layout, experiments)
    param_shape = layout.param_shape
    param_indices = np.fromiter(np.ndindex(param_shape), dtype=object).reshape(param_shape)
    bc_param_ind, bc_obs = np.broadcast_arrays(param_indices, layout.observables)
    flat_index_map = {tup: i for i, tup in enumerate(param_indices.ravel())}
    evs = np.zeros_like(bc_param_ind, dtype=float)
    stds = np.full(bc_param_ind.shape, layout.precision)
    for index in np.ndindex(*bc_param_ind.shape):
        flat_index = flat_index_map[bc_param_ind[index]]
        observable: Any = bc_obs[index]  # a {pauli: coefficient} dict
        for pauli, coeff in observable.items():
            evs[index] += values[flat_index][pauli] * coeff
    if layout.precision > 0:
        # One generator per PUB, seeded as Aer seeds it, over the merged array: the noise
        # does not depend on how the PUB was split.
        rng = np.random.default_rng(layout.noise_seed)
        if not np.all(np.isreal(evs)):
            raise ValueError("Given operator is not Hermitian and noise cannot be added.")
        evs = rng.normal(evs, layout.precision, evs.shape)
    return PubResult(
        DataBin(evs=evs, stds=stds, shape=evs.shape),
        metadata={
            "target_precision": layout.precision,
            "circuit_metadata": layout.circuit_metadata,
            "simulator_metadata": dict(simulator_metadata),
        },
    )


def pub_results(
    record: PrimitiveRecord,
    experiments: Sequence[ExperimentResult],
    simulator_metadata: Mapping[str, Any],
) -> list[SamplerPubResult | PubResult]:
    """Every PUB's result, in PUB order, from the job set's merged experiments."""
    out: list[SamplerPubResult | PubResult] = []
    for layout in record.pubs:
        if isinstance(layout, SamplerPubLayout):
            out.append(sampler_pub_result(layout, experiments, simulator_metadata))
        else:
            out.append(estimator_pub_result(layout, experiments, simulator_metadata))
    return out
