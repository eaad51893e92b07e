"""Checks that refuse, before anything is queued, what would fail on every worker.

A sub-job that fails on a worker costs a round trip through Redis and reports late; these
fail at submit with the circuit and the reason: instructions the simulator does not know,
run options Aer would silently ignore, a noise model that is not one, a state too large
for the configured memory limit.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from qiskit.circuit import QuantumCircuit
from qiskit_aer import AerSimulator
from qiskit_aer.aererror import AerError
from qiskit_aer.backends.aer_compiler import (
    assemble_circuits,
    compile_circuit,
    generate_aer_config,
)
from qiskit_aer.noise import NoiseModel

from .cost import estimate_memory, human_bytes, instruction_names
from .errors import InvalidInputError
from .settings import ENV_MAX_MEMORY_MB

# Handled by Aer's assembler whatever the backend's basis gates (aer_compiler._assemble_op).
_ALWAYS = frozenset(
    {"measure", "reset", "barrier", "diagonal", "unitary", "pauli", "initialize", "roerror"}
    | {"multiplexer", "kraus", "superop", "qerror_loc", "jump", "mark", "store", "aer_store"}
)
# Consumed by the job set itself, never passed on as Aer options.
_OWN_OPTIONS = frozenset({"parameter_binds"})


@functools.cache
def _aer_gates() -> frozenset[str]:
    return frozenset(AerSimulator().configuration().basis_gates)


def check_instructions(backend: Any, circuits: Sequence[QuantumCircuit]) -> None:
    """Refuse a circuit with an instruction the simulator would reject.

    Aer checks names against the backend's basis gates only for a simulator built with a
    target (``AerSimulator.from_backend``; it reads the private ``_target`` for that, as
    does this check), and against every gate it knows otherwise.  Known names pass at
    once; a circuit with any other name goes through Aer's own compiler and assembler, the
    very code a worker runs, so the verdict is Aer's.
    """
    basis = backend.configuration().basis_gates if getattr(backend, "_target", None) else None
    known = (set(basis) if basis is not None else set(_aer_gates())) | _ALWAYS
    for i, circuit in enumerate(circuits):
        unknown = instruction_names(circuit) - known
        if not unknown:
            continue
        try:
            assemble_circuits(compile_circuit([circuit]), basis)
        except AerError as e:
            raise InvalidInputError(
                f"circuit {i} ({circuit.name!r}) has instructions that {backend.name} does not "
                f"support: {sorted(unknown)} ({e.message}); transpile it for the backend first"
            ) from None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_arguments(where: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Refuse names in ``given`` that are not ``known``, each with the closest known name,
    as ``run()`` answers an unknown run option."""
    valid = sorted(known)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        hints = ", ".join(f"{name!r}{did_you_mean(name, valid)}" for name in unknown)
        raise InvalidInputError(f"{where}: unknown argument(s) {hints}")


# Every method some build of Aer runs (tensor_network needs a GPU build): a method
# outside it fails on every worker, one inside may need a worker of the right kind.
METHODS = tuple(getattr(AerSimulator, "_SIMULATION_METHODS", ())) or (
    "automatic", "statevector", "density_matrix", "stabilizer", "matrix_product_state",
    "extended_stabilizer", "unitary", "superop", "tensor_network",
)  # fmt: skip
PRECISIONS = ("single", "double")


def check_method(method: object) -> None:
    """Refuse a simulation method no Aer build has, with the closest name."""
    if method is None or method in METHODS:
        return
    raise InvalidInputError(
        f"invalid simulation method {method!r}{did_you_mean(str(method), METHODS)}; the "
        f"methods are {', '.join(METHODS)}"
    )


def check_option_values(
    backend: Any, circuits: Sequence[QuantumCircuit], run_options: Mapping[str, Any]
) -> None:
    """Refuse option values Aer's ``run`` would refuse on every worker: the method and
    precision names, and each option's type, checked by building Aer's own run
    configuration (``generate_aer_config``, as ``AerSimulator.run`` does).  The device is
    left to the workers: a GPU worker runs what this producer's build cannot."""

    def option(name: str) -> Any:
        value = run_options.get(name)
        return backend.options.get(name) if value is None else value

    check_method(option("method"))
    precision = option("precision")
    if precision is not None and precision not in PRECISIONS:
        raise InvalidInputError(
            f"invalid simulation precision {precision!r}{did_you_mean(str(precision), PRECISIONS)}"
            f"; Aer takes {' or '.join(map(repr, PRECISIONS))}"
        )
    if not circuits:
        return
    options = {k: v for k, v in run_options.items() if k not in _OWN_OPTIONS}
    try:
        generate_aer_config(list(circuits), backend.options, **options)
    except (TypeError, ValueError, AerError) as e:
        raise InvalidInputError(f"{backend.name} refuses the options: {e}") from None


def check_run_options(backend: Any, run_options: Mapping[str, Any]) -> None:
    """Refuse run options that are not Aer options: Aer's ``run`` would ignore them."""
    valid = set(dict(backend.options.items())) | _OWN_OPTIONS
    unknown = sorted(set(run_options) - valid)
    if not unknown:
        return
    hints = [f"{name!r}{did_you_mean(name, valid)}" for name in unknown]
    raise InvalidInputError(
        f"unknown run option(s) for {backend.name}: {', '.join(hints)}; the options are "
        "those of AerSimulator (backend.options)"
    )


def check_noise_model(backend: Any, run_options: Mapping[str, Any]) -> None:
    for where, value in (
        ("the noise_model run option", run_options.get("noise_model")),
        ("the backend's noise_model", backend.options.get("noise_model")),
    ):
        if value is not None and not isinstance(value, NoiseModel):
            raise InvalidInputError(
                f"{where} must be a qiskit_aer.noise.NoiseModel, got {type(value).__name__}"
            )


def check_memory(
    backend: Any,
    circuits: Sequence[QuantumCircuit],
    run_options: Mapping[str, Any],
    *,
    max_memory_mb: int | None,
) -> None:
    """Refuse a circuit whose state would need more than ``max_memory_mb`` (None: no limit)."""
    if max_memory_mb is None:
        return

    def option(name: str, default: Any) -> Any:
        value = run_options.get(name, backend.options.get(name, default))
        return default if value is None else value

    method = option("method", "automatic")
    precision = option("precision", "double")
    truncation = bool(option("enable_truncation", True))
    limit = max_memory_mb * 1024 * 1024
    for i, circuit in enumerate(circuits):
        need = estimate_memory(circuit, method=method, precision=precision, truncation=truncation)
        if need is not None and need.bytes > limit:
            raise InvalidInputError(
                f"circuit {i} ({circuit.name!r}) needs {need.explain()}, over the memory "
                f"limit of {human_bytes(limit)} ({ENV_MAX_MEMORY_MB}={max_memory_mb})"
            )


def check_submission(
    backend: Any,
    circuits: Sequence[QuantumCircuit],
    run_options: Mapping[str, Any],
    *,
    max_memory_mb: int | None = None,
) -> None:
    """Every check above, cheapest first; raises :class:`InvalidInputError`."""
    check_run_options(backend, run_options)
    check_option_values(backend, circuits, run_options)
    check_noise_model(backend, run_options)
    check_instructions(backend, circuits)
    check_memory(backend, circuits, run_options, max_memory_mb=max_memory_mb)
