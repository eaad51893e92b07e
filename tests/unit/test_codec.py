"""Signed envelopes: exact round trips, and refusals of anything not signed for its key."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import pickle
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.providers import JobError
from qiskit.quantum_info import Kraus, SparsePauliOp
from qiskit.result import Result
from qiskit.result.models import ExperimentResult
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, QuantumError, depolarizing_error, thermal_relaxation_error

from jobset import codec
from jobset.errors import DecodeError, JobSetError, SecurityError
from jobset.protocol import Kind, batch_key, result_key

KEY = b"unit-test-secret-of-thirty-two-b"
KEYS = (KEY,)
SET_1, SET_2 = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
CONTEXT = batch_key(SET_1, 0)
R = Kind.RESULT


def dumps(obj, *, kind=R, key=KEY, context=CONTEXT):
    return codec.dumps(obj, kind=kind, key=key, context=context)


def loads(blob, *, kind=R, keys=KEYS, context=CONTEXT):
    return codec.loads(blob, kind=kind, keys=keys, context=context)


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
    back = loads(dumps(qc))
    assert back == qc
    assert [i.operation.name for i in back.data] == [i.operation.name for i in qc.data]
    assert back.parameters == qc.parameters


def test_a_noise_model_with_thermal_relaxation_round_trips_exactly():
    model = thermal_noise_model()
    back = loads(dumps(model))
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
    context = result_key(SET_1, 3)

    back = loads(dumps(result, context=context), context=context)

    assert np.array_equal(
        np.asarray(back.get_statevector(0)), np.asarray(result.get_statevector(0))
    )
    assert back.get_memory(0) == result.get_memory(0)
    assert back.get_counts(0) == result.get_counts(0)
    assert back.results[0].metadata == result.results[0].metadata
    assert back.job_id == result.job_id


def test_a_result_comes_back_with_exactly_its_attributes_and_types():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    result = AerSimulator().run([qc, qc], shots=8, seed_simulator=2, memory=True).result()
    context = result_key(SET_1, 4)

    back = loads(dumps(result, context=context), context=context)

    assert type(back) is Result
    assert [type(e) for e in back.results] == [ExperimentResult, ExperimentResult]
    assert back.to_dict() == result.to_dict()
    assert vars(back).keys() == vars(result).keys()
    assert back.results[1].seed_simulator == result.results[1].seed_simulator
    with pytest.raises(AttributeError):
        _ = back.results[0].not_an_attribute


def test_the_envelope_is_magic_flags_mac_and_body_and_the_mac_covers_the_framed_fields():
    blob = dumps({"a": 1})
    assert blob.startswith(codec.MAGIC)
    flags, mac, body = blob[4], blob[5:37], blob[37:]
    assert flags == 0
    assert pickle.loads(body) == {"a": 1}
    expected = hmac.new(KEY, codec.mac_input(R, CONTEXT, flags, body), hashlib.sha256)
    assert mac == expected.digest()
    framed = b"".join(
        len(f).to_bytes(8, "big") + f
        for f in (codec.MAGIC, b"result", CONTEXT.encode(), bytes([flags]), body)
    )
    assert codec.mac_input(R, CONTEXT, flags, body) == framed


def test_a_large_payload_is_compressed_and_round_trips():
    payload = {"data": np.zeros(200_000), "label": "big"}
    blob = dumps(payload)
    assert blob[len(codec.MAGIC)] & 0x01
    assert len(blob) < len(pickle.dumps(payload)) // 10
    back = loads(blob)
    assert back["label"] == "big"
    assert np.array_equal(back["data"], payload["data"])


def test_a_small_payload_is_not_compressed():
    blob = dumps(list(range(100)))
    assert blob[len(codec.MAGIC)] == 0


@pytest.mark.parametrize(
    "position",
    [4, 5, 20, 36, 37, -1],
    ids=["flags", "mac-first", "mac-middle", "mac-last", "body-first", "body-last"],
)
def test_any_altered_byte_after_the_magic_is_a_security_error(position):
    blob = bytearray(dumps({"shots": 100}))
    blob[position] ^= 0x01
    with pytest.raises(SecurityError, match="signature"):
        loads(bytes(blob))


def test_an_altered_compressed_body_is_a_security_error():
    blob = bytearray(dumps(np.zeros(100_000)))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(SecurityError):
        loads(bytes(blob))


def test_a_truncated_or_extended_payload_is_a_security_error():
    blob = dumps({"shots": 100})
    with pytest.raises(SecurityError):
        loads(blob[:-1])
    with pytest.raises(SecurityError):
        loads(blob + b"\x00")


def test_a_payload_signed_with_another_key_is_a_security_error():
    blob = dumps({"shots": 100}, key=b"someone-else" * 3)
    with pytest.raises(SecurityError, match="JOBSET_SECRET_KEY"):
        loads(blob)


def test_a_payload_signed_with_a_previous_key_verifies_while_that_key_is_listed():
    old, new = b"o" * 32, b"n" * 32
    blob = dumps({"shots": 100}, key=old)
    assert loads(blob, keys=(new, old)) == {"shots": 100}
    with pytest.raises(SecurityError):
        loads(blob, keys=(new,))


def test_a_value_of_one_kind_never_verifies_as_another_kind():
    for kind, other in itertools.permutations(Kind, 2):
        blob = dumps({"shots": 100}, kind=kind)
        assert loads(blob, kind=kind) == {"shots": 100}
        with pytest.raises(SecurityError, match=other.value):
            loads(blob, kind=other)


def test_a_payload_moved_to_another_key_is_a_security_error():
    blob = dumps({"shots": 100}, context=batch_key(SET_1, 0))
    for other in (batch_key(SET_1, 1), batch_key(SET_2, 0), result_key(SET_1, 0)):
        with pytest.raises(SecurityError):
            loads(blob, context=other)


def test_a_pickle_that_runs_code_is_never_loaded_unsigned():
    class Exploit:
        def __reduce__(self):
            return (pytest.fail, ("unpickled before the signature check",))

    body = pickle.dumps(Exploit())
    forged = codec.MAGIC + b"\x00" + b"\x00" * 32 + body
    with pytest.raises(SecurityError):
        loads(forged)


def test_signing_with_an_empty_key_is_refused():
    with pytest.raises(SecurityError, match="empty key"):
        dumps({"a": 1}, key=b"")


@pytest.mark.parametrize(
    "blob",
    [
        None,
        b"",
        b"AJS2",
        b"garbage that is long enough to hold a header, but no magic",
        b"\x00" * 64,
    ],
    ids=["none", "empty", "magic-only", "garbage", "zeros"],
)
def test_something_that_is_not_an_envelope_is_a_decode_error(blob):
    with pytest.raises(DecodeError, match=CONTEXT):
        loads(blob)


def test_an_envelope_of_the_older_version_is_refused_as_written_by_an_older_version():
    body = pickle.dumps({"a": 1})
    old = b"AJS1\x00" + hmac.new(KEY, CONTEXT.encode() + b"\x00\x00" + body, "sha256").digest()
    with pytest.raises(DecodeError, match="older version"):
        loads(old + body)


def test_a_signed_body_that_does_not_unpickle_is_a_decode_error_chained_from_the_cause():
    body = b"definitely not a pickle"
    mac = codec.body_mac(KEY, R, CONTEXT, 0, body)
    blob = codec.MAGIC + b"\x00" + mac + body
    with pytest.raises(DecodeError, match="cannot be decoded") as info:
        loads(blob)
    assert info.value.__cause__ is not None


def test_a_signed_body_flagged_compressed_but_not_is_a_decode_error():
    body = pickle.dumps({"a": 1})
    blob = codec.MAGIC + b"\x01" + codec.body_mac(KEY, R, CONTEXT, 1, body) + body
    with pytest.raises(DecodeError):
        loads(blob)


@pytest.mark.parametrize("error", [SecurityError, DecodeError])
def test_codec_errors_are_catchable_as_qiskit_job_errors(error):
    assert issubclass(error, JobSetError)
    assert issubclass(error, JobError)
    with pytest.raises(JobError):
        loads(None if error is DecodeError else b"AJS2" + b"\x00" * 40, context="k")


# ----------------------------------------------------------------- injectivity, re-cuts, fuzz

_FIELDS = st.tuples(
    st.sampled_from(list(Kind)), st.text(max_size=12), st.integers(0, 255), st.binary(max_size=12)
)


@settings(max_examples=3000, deadline=None)
@given(_FIELDS, _FIELDS)
def test_the_mac_input_is_injective(a, b):
    if a != b:
        assert codec.mac_input(*a) != codec.mac_input(*b)


def test_the_mac_input_is_injective_over_every_small_input():
    seen: dict[bytes, tuple] = {}
    alphabet = ["", "a", "\x00", "a\x00", "\x00\x00", "ab"]
    for kind, context, flags, body in itertools.product(
        list(Kind)[:2], alphabet, (0, 1), [s.encode() for s in alphabet]
    ):
        fields = (kind, context, flags, body)
        assert seen.setdefault(codec.mac_input(*fields), fields) == fields


def test_every_re_cut_of_a_real_envelope_between_context_and_body_fails():
    """Moving bytes between the key and the body, keeping the MAC, verifies nowhere."""
    context = "jobset:cache:d"
    blob = dumps({"shots": 100}, kind=Kind.CACHE, context=context)
    header, body = blob[: 5 + 32], blob[5 + 32 :]
    for cut in range(len(body) + 1):
        moved = context.encode() + body[:cut]
        try:
            longer = moved.decode()
        except UnicodeDecodeError:
            longer = None
        if cut and longer is not None:
            with pytest.raises(SecurityError):
                loads(header + body[cut:], kind=Kind.CACHE, context=longer)
    for cut in range(1, len(context) + 1):
        shorter, moved = context[:-cut], context[-cut:].encode()
        with pytest.raises(SecurityError):
            loads(header + moved + body, kind=Kind.CACHE, context=shorter)
    for cut in range(len(blob)):
        for kind in Kind:
            if (kind, cut) != (Kind.CACHE, 0):
                with pytest.raises((SecurityError, DecodeError)):
                    loads(blob[cut:], kind=kind, context=context)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_the_decoder_refuses_arbitrary_bytes_without_unpickling(blob):
    with pytest.raises((SecurityError, DecodeError)):
        loads(codec.MAGIC + blob)
    with pytest.raises((SecurityError, DecodeError)):
        loads(blob)


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0), st.integers(0, 255))
def test_the_decoder_refuses_any_single_byte_change_of_a_real_envelope(position, value):
    blob = bytearray(dumps({"shots": 100, "memory": list(range(20))}))
    position %= len(blob)
    if blob[position] == value:
        return
    blob[position] = value
    with pytest.raises((SecurityError, DecodeError)):
        loads(bytes(blob))
