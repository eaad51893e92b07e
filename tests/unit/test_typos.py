"""Typos are answered as ``run(shot=...)`` answers them: the closest name, one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from qiskit_aer.aererror import AerError

from jobset import DistributedAerSimulator, InvalidInputError
from jobset.primitives import EstimatorV2, SamplerV2


def test_a_simulator_option_typo_names_the_option_it_meant():
    with pytest.raises(AerError, match=r"'max_job_sise' .*\(did you mean 'max_job_size'\?\)"):
        DistributedAerSimulator(max_job_sise=1)
    backend = DistributedAerSimulator(max_job_size=2)
    with pytest.raises(AerError, match=r"did you mean 'shots'\?"):
        backend.set_options(shot=10)
    assert backend.options.max_job_size == 2


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (
            lambda: SamplerV2(default_shot=10),
            "SamplerV2: unknown argument(s) 'default_shot' (did you mean 'default_shots'?)",
        ),
        (
            lambda: SamplerV2(options={"run_option": {}}),
            "SamplerV2 options: unknown argument(s) 'run_option' (did you mean 'run_options'?)",
        ),
        (
            lambda: EstimatorV2(options={"default_precison": 0.1}),
            "(did you mean 'default_precision'?)",
        ),
        (
            lambda: SamplerV2(options={"backend_options": {"methd": "statevector"}}),
            "unknown option 'methd' (did you mean 'method'?)",
        ),
    ],
)
def test_a_primitive_typo_is_an_invalid_input_error_with_the_closest_name(make, said):
    with pytest.raises(InvalidInputError) as caught:
        make()
    assert said in str(caught.value)


def test_the_cli_answers_a_misspelt_method_with_one_error_line_and_status_2(tmp_path: Path):
    sweep = tmp_path / "sweep.py"
    sweep.write_text(
        "from qiskit import QuantumCircuit\n"
        "qc = QuantumCircuit(1)\nqc.h(0)\nqc.measure_all()\ncircuits = [qc]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSET_")}
    env |= {"JOBSET_SECRET_KEY": "k" * 32, "JOBSET_BROKER_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [sys.executable, "-m", "jobset.cli", "submit", str(sweep), "--method", "stabiliser"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(
        "error: invalid simulation method 'stabiliser' (did you mean 'stabilizer'?)"
    )
    assert done.stderr.count("\n") == 1, done.stderr
