"""Signed envelopes: exact round trips, and refusals of anything not signed for its key."""

from __future__ import annotations

import hashlib
import hmac
import pickle

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.providers import JobError
from qiskit.quantum_info import Kraus, SparsePauliOp
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, QuantumError, depolarizing_error, thermal_relaxation_error

from jobset import codec
from jobset.errors import DecodeError, JobSetError, SecurityError
from jobset.protocol import batch_key, result_key

KEY = b"unit-test-secret"
CONTEXT = batch_key("set-1", 0)


def circuit_with_save_instructions() -> QuantumCircuit:
    theta = Parameter("theta")
    qc = QuantumCircuit(2, 2, name="saves")
    qc.h(0)
    qc.rx(theta, 1)
    qc.cx(0, 1)
    qc.save_statevector()
    qc.save_expectation_value(SparsePauliOp("ZZ"), [0, 1], label="zz")
    qc.measure([0, 1], [0, 1])
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(1)
    return qc


def thermal_noise_model() -> NoiseModel:
    model = NoiseModel()
    thermal = QuantumError(Kraus(thermal_relaxation_error(50e3, 70e3, 100)))
    model.add_all_qubit_quantum_error(thermal, ["x", "sx"])
    model.add_all_qubit_quantum_error(depolarizing_error(0.01, 2), ["cx"])
    return model


def test_a_circuit_with_save_instructions_round_trips_exactly():
    qc = circuit_with_save_instructions()
    back = codec.loads(codec.dumps(qc, key=KEY, context=CONTEXT), key=KEY, context=CONTEXT)
    assert back == qc
    assert [i.operation.name for i in back.data] == [i.operation.name for i in qc.data]
    assert back.parameters == qc.parameters


def test_a_noise_model_with_thermal_relaxation_round_trips_exactly():
    model = thermal_noise_model()
    back = codec.loads(codec.dumps(model, key=KEY, context=CONTEXT), key=KEY, context=CONTEXT)
    assert back == model
    assert back is not model
    qc = QuantumCircuit(2)
    qc.x(0)
    qc.sx(1)
    qc.cx(0, 1)
    qc.measure_all()
    runs = [
        AerSimulator(noise_model=m).run(qc, shots=64, seed_simulator=3, memory=True).result()
        for m in (model, back)
    ]
    assert runs[0].get_memory(0) == runs[1].get_memory(0)
    assert len(runs[0].get_counts(0)) > 1  # the noise is really there


def test_an_aer_result_with_a_statevector_round_trips_exactly():
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.cx(0, 1)
    qc.ry(0.3, 2)
    qc.save_statevector()
    qc.measure_all()
    result = AerSimulator().run(qc, shots=16, seed_simulator=1, memory=True).result()
    context = result_key("set-1", 3)

    back = codec.loads(codec.dumps(result, key=KEY, context=context), key=KEY, context=context)

    assert np.array_equal(
        np.asarray(back.get_statevector(0)), np.asarray(result.get_statevector(0))
    )
    assert back.get_memory(0) == result.get_memory(0)
    assert back.get_counts(0) == result.get_counts(0)
    assert back.results[0].metadata == result.results[0].metadata
    assert back.job_id == result.job_id


def test_the_envelope_is_magic_flags_mac_and_body():
    blob = codec.dumps({"a": 1}, key=KEY, context=CONTEXT)
    assert blob.startswith(codec.MAGIC)
    flags, mac, body = blob[4], blob[5:37], blob[37:]
    assert flags == 0
    assert pickle.loads(body) == {"a": 1}
    expected = hmac.new(KEY, CONTEXT.encode() + b"\x00" + bytes([flags]) + body, hashlib.sha256)
    assert mac == expected.digest()


def test_a_large_payload_is_compressed_and_round_trips():
    payload = {"data": np.zeros(200_000), "label": "big"}
    blob = codec.dumps(payload, key=KEY, context=CONTEXT)
    assert blob[len(codec.MAGIC)] & 0x01
    assert len(blob) < len(pickle.dumps(payload)) // 10
    back = codec.loads(blob, key=KEY, context=CONTEXT)
    assert back["label"] == "big"
    assert np.array_equal(back["data"], payload["data"])


def test_a_small_payload_is_not_compressed():
    blob = codec.dumps(list(range(100)), key=KEY, context=CONTEXT)
    assert blob[len(codec.MAGIC)] == 0


@pytest.mark.parametrize(
    "position",
    [4, 5, 20, 36, 37, -1],
    ids=["flags", "mac-first", "mac-middle", "mac-last", "body-first", "body-last"],
)
def test_any_altered_byte_after_the_magic_is_a_security_error(position):
    blob = bytearray(codec.dumps({"shots": 100}, key=KEY, context=CONTEXT))
    blob[position] ^= 0x01
    with pytest.raises(SecurityError, match="signature"):
        codec.loads(bytes(blob), key=KEY, context=CONTEXT)


def test_an_altered_compressed_body_is_a_security_error():
    blob = bytearray(codec.dumps(np.zeros(100_000), key=KEY, context=CONTEXT))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(SecurityError):
        codec.loads(bytes(blob), key=KEY, context=CONTEXT)


def test_a_truncated_or_extended_payload_is_a_security_error():
    blob = codec.dumps({"shots": 100}, key=KEY, context=CONTEXT)
    with pytest.raises(SecurityError):
        codec.loads(blob[:-1], key=KEY, context=CONTEXT)
    with pytest.raises(SecurityError):
        codec.loads(blob + b"\x00", key=KEY, context=CONTEXT)


def test_a_payload_signed_with_another_key_is_a_security_error():
    blob = codec.dumps({"shots": 100}, key=b"someone-else", context=CONTEXT)
    with pytest.raises(SecurityError, match="JOBSET_SECRET_KEY"):
        codec.loads(blob, key=KEY, context=CONTEXT)


def test_a_payload_moved_to_another_key_is_a_security_error():
    blob = codec.dumps({"shots": 100}, key=KEY, context=batch_key("set-1", 0))
    for other in (batch_key("set-1", 1), batch_key("set-2", 0), result_key("set-1", 0)):
        with pytest.raises(SecurityError):
            codec.loads(blob, key=KEY, context=other)


def test_a_pickle_that_runs_code_is_never_loaded_unsigned():
    class Exploit:
        def __reduce__(self):
            return (pytest.fail, ("unpickled before the signature check",))

    body = pickle.dumps(Exploit())
    forged = codec.MAGIC + b"\x00" + b"\x00" * 32 + body
    with pytest.raises(SecurityError):
        codec.loads(forged, key=KEY, context=CONTEXT)


def test_signing_with_an_empty_key_is_refused():
    with pytest.raises(SecurityError, match="empty key"):
        codec.dumps({"a": 1}, key=b"", context=CONTEXT)


@pytest.mark.parametrize(
    "blob",
    [
        None,
        b"",
        b"AJS1",
        b"garbage that is long enough to hold a header, but no magic",
        b"\x00" * 64,
    ],
    ids=["none", "empty", "magic-only", "garbage", "zeros"],
)
def test_something_that_is_not_an_envelope_is_a_decode_error(blob):
    with pytest.raises(DecodeError, match=CONTEXT):
        codec.loads(blob, key=KEY, context=CONTEXT)


def test_a_signed_body_that_does_not_unpickle_is_a_decode_error_chained_from_the_cause():
    body = b"definitely not a pickle"
    mac = codec._mac(KEY, CONTEXT, 0, body)
    blob = codec.MAGIC + b"\x00" + mac + body
    with pytest.raises(DecodeError, match="cannot be decoded") as info:
        codec.loads(blob, key=KEY, context=CONTEXT)
    assert info.value.__cause__ is not None


def test_a_signed_body_flagged_compressed_but_not_is_a_decode_error():
    body = pickle.dumps({"a": 1})
    blob = codec.MAGIC + b"\x01" + codec._mac(KEY, CONTEXT, 1, body) + body
    with pytest.raises(DecodeError):
        codec.loads(blob, key=KEY, context=CONTEXT)


@pytest.mark.parametrize("error", [SecurityError, DecodeError])
def test_codec_errors_are_catchable_as_qiskit_job_errors(error):
    assert issubclass(error, JobSetError)
    assert issubclass(error, JobError)
    with pytest.raises(JobError):
        codec.loads(None if error is DecodeError else b"AJS1" + b"\x00" * 40, key=KEY, context="k")
