"""Signed envelopes for everything that crosses Redis.

Circuits with Aer save instructions, Kraus noise models, ``from_backend`` targets and
Aer results only round-trip exactly through pickle, and pickle read from Redis is code
execution for whoever can write to Redis.  So every payload is wrapped as::

    MAGIC (4 bytes) | flags (1 byte) | HMAC-SHA256 (32 bytes) | body

The MAC covers a *context* (the Redis key the payload is stored under), the flags and
the body, so a payload cannot be altered, forged without the key, or moved to another
key.  Nothing is unpickled before the MAC is checked.  Large bodies are zlib-compressed.

Sub-batches carry their circuits as QPY inside the envelope when QPY round-trips them
exactly (standard gates, measurements, unitaries), which is about 4x cheaper than pickle
both ways; everything else (save instructions, noise, control flow) stays pickle.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import io
import pickle
import zlib
from collections.abc import Mapping
from typing import Any

from qiskit import QuantumCircuit, qpy
from qiskit.circuit.library import get_standard_gate_name_mapping

from .errors import DecodeError, SecurityError
from .plan import SubBatch

MAGIC = b"AJS1"
_FLAG_ZLIB = 0x01
_MAC_SIZE = hashlib.sha256().digest_size
_HEADER_SIZE = len(MAGIC) + 1 + _MAC_SIZE
COMPRESS_ABOVE_BYTES = 64 * 1024


def _mac(key: bytes, context: str, flags: int, body: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(context.encode())
    mac.update(b"\x00")
    mac.update(bytes([flags]))
    mac.update(body)
    return mac.digest()


def dumps(obj: Any, *, key: bytes, context: str) -> bytes:
    """Pickle ``obj`` and sign it for ``context`` with ``key``."""
    if not key:
        raise SecurityError("refusing to sign with an empty key")
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    flags = 0
    if len(body) > COMPRESS_ABOVE_BYTES:
        body = zlib.compress(body, 1)
        flags |= _FLAG_ZLIB
    return MAGIC + bytes([flags]) + _mac(key, context, flags, body) + body


def loads(blob: object, *, key: bytes, context: str) -> Any:
    """Verify the signature of ``blob`` for ``context``, then unpickle it.

    Raises :class:`SecurityError` when the signature does not match (wrong key, altered
    bytes, payload moved from another key) and :class:`DecodeError` when ``blob`` is not
    an envelope of this protocol at all.
    """
    if blob is None:
        raise DecodeError(f"no payload stored at {context}")
    if not isinstance(blob, bytes) or len(blob) < _HEADER_SIZE or not blob.startswith(MAGIC):
        raise DecodeError(f"payload at {context} is not a signed envelope (protocol {MAGIC!r})")
    flags = blob[len(MAGIC)]
    mac = blob[len(MAGIC) + 1 : _HEADER_SIZE]
    body = blob[_HEADER_SIZE:]
    if not hmac.compare_digest(mac, _mac(key, context, flags, body)):
        raise SecurityError(
            f"payload at {context} failed its signature check: it was altered, forged, or "
            "signed with another JOBSET_SECRET_KEY"
        )
    try:
        if flags & _FLAG_ZLIB:
            body = zlib.decompress(body)
        return pickle.loads(body)
    except Exception as e:
        raise DecodeError(f"payload at {context} is signed but cannot be decoded: {e}") from e


# --------------------------------------------------------------------------- sub-batches

# Operations that QPY writes and reads back as the very same instruction (measured on
# qiskit 2.6): standard gates, measure/reset/barrier/delay, unitary matrices.  Anything
# else (Aer save instructions, Aer noise instructions, control flow, custom gates) travels
# as pickle, which is exact for all of them but several times slower for plain circuits.
_QPY_EXACT_EXTRA = frozenset({"measure", "reset", "barrier", "delay", "unitary"})


@functools.cache
def _standard_base_classes() -> dict[str, type]:
    return {name: gate.base_class for name, gate in get_standard_gate_name_mapping().items()}


def _qpy_exact(circuit: QuantumCircuit) -> bool:
    standard = _standard_base_classes()
    for inst in circuit.data:
        op = inst.operation
        if op.name in _QPY_EXACT_EXTRA and op.base_class.__module__.startswith("qiskit.circuit"):
            continue
        if standard.get(op.name) is not op.base_class:
            return False
    return True


def dumps_batch(batch: SubBatch, *, key: bytes, context: str) -> bytes:
    """Sign a sub-batch, its circuits as QPY where that is exact and faster, else pickle."""
    circuits_qpy: bytes | None = None
    if batch.circuits and all(_qpy_exact(c) for c in batch.circuits):
        buffer = io.BytesIO()
        try:
            qpy.dump(list(batch.circuits), buffer)
            circuits_qpy = buffer.getvalue()
        except Exception:  # e.g. metadata that is not JSON: pickle handles it
            circuits_qpy = None
    body = (
        (dataclasses.replace(batch, circuits=()), circuits_qpy) if circuits_qpy else (batch, None)
    )
    return dumps(body, key=key, context=context)


def loads_batch(blob: object, *, key: bytes, context: str) -> SubBatch:
    """Verify and decode what :func:`dumps_batch` wrote."""
    body = loads(blob, key=key, context=context)
    try:
        batch, circuits_qpy = body
        if circuits_qpy is not None:
            batch = dataclasses.replace(batch, circuits=tuple(qpy.load(io.BytesIO(circuits_qpy))))
    except Exception as e:
        raise DecodeError(f"payload at {context} is not a sub-batch: {e}") from e
    if not isinstance(batch, SubBatch):
        raise DecodeError(f"payload at {context} is a {type(batch).__name__}, not a sub-batch")
    return batch


def batch_digest(options: Mapping[str, Any], batch: SubBatch, versions: Any = ()) -> str:
    """SHA-256 of what a sub-job's result depends on: circuits, options, seed, shots.

    Equal digests mean equal inputs (the pickles are equal); equal inputs may still give
    different digests (say, a parameter rebuilt with a new identity): a cache miss, never
    a wrong hit.  ``versions`` keeps results of other qiskit / Aer versions apart.
    """
    body = (
        [(name, options[name]) for name in sorted(options)],
        batch.circuits,
        batch.parameter_binds,
        sorted(batch.run_kwargs().items()),
        batch.pad_clbits,
        versions,
    )
    return hashlib.sha256(pickle.dumps(body, protocol=4)).hexdigest()
