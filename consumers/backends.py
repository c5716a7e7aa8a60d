"""Serializer backends for fitted estimators.

`joblib`: a pickle, so it is signed. The stored blob is
`b"MLS1" + HMAC-SHA256(key, payload) + payload`; the signature is checked
before a single byte is unpickled, and the key comes from the settings only.
Uploaded data is never pickled or unpickled: only estimators this server
fitted and signed.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from typing import Any

import joblib

from contracts.status import Backend

_MAGIC = b"MLS1"
_MAC_SIZE = hashlib.sha256().digest_size


class ArtifactError(ValueError):
    """A stored artifact that can't be trusted or read."""


def dump(estimator: Any, key: bytes, backend: Backend = Backend.JOBLIB) -> bytes:
    if backend is not Backend.JOBLIB:
        raise ArtifactError(f"backend {backend.value!r} is not available")
    buf = io.BytesIO()
    joblib.dump(estimator, buf)
    payload = buf.getvalue()
    return _MAGIC + hmac.new(key, payload, hashlib.sha256).digest() + payload


def load(blob: bytes, key: bytes, backend: str = Backend.JOBLIB.value) -> Any:
    if backend != Backend.JOBLIB.value:
        raise ArtifactError(f"backend {backend!r} is not available")
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _MAC_SIZE:
        raise ArtifactError("artifact is not signed; refusing to load it")
    mac, payload = blob[len(_MAGIC) : len(_MAGIC) + _MAC_SIZE], blob[len(_MAGIC) + _MAC_SIZE :]
    if not hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()):
        raise ArtifactError("artifact signature does not match; refusing to load it")
    return joblib.load(io.BytesIO(payload))


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()
