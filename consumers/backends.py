"""Serializer backends for fitted estimators.

`joblib`: a pickle, so it is signed. The stored blob is
`b"MLS1" + HMAC-SHA256(key, payload) + payload`; the signature is checked
before a single byte is unpickled, and the key comes from the settings only.
Uploaded data is never pickled or unpickled: only estimators this server
fitted and signed.

`skops`: `skops.io`, which builds objects without running pickled code. Before
a load, every type the blob names that skops does not trust by itself must be
on the family's allowlist (`Family.trusted()`, fixed in server code); the
blob is refused otherwise, and what it names is never taken as trusted.

`onnx`: an ONNX graph exported at the end of the fit and run by onnxruntime
(`onnx_models`). No scikit-learn at predict time.

A joblib or skops artifact is only loaded under the scikit-learn version it
was made with (`meta["versions"]`): anything else is `ArtifactIncompatible`,
not a silently different model.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import sys
import zipfile
from collections.abc import Collection, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, cast

import pandas as pd

from contracts.columns import InputSchema
from contracts.errors import ArtifactIncompatible
from contracts.status import Backend

from . import onnx_models
from .onnx_models import ExportError

_MAGIC = b"MLS1"
_MAC_SIZE = hashlib.sha256().digest_size


class ArtifactError(ValueError):
    """A stored artifact that can't be trusted or read."""


__all__ = ["ArtifactError", "ExportError", "check_versions", "digest", "dump", "load", "load_estimator", "versions"]


def dump(
    estimator: Any,
    key: bytes,
    backend: Backend = Backend.JOBLIB,
    *,
    x: pd.DataFrame | None = None,
    schema: InputSchema | None = None,
    methods: Sequence[str] = ("predict",),
    keep_state: bool = False,
    trusted: Collection[str] | None = None,
) -> bytes:
    """Serialize a fitted model. ONNX needs the (conformed) training frame `x` and its `schema`
    (to export and check the graph) and the predict `methods` to offer; `keep_state` also stores
    the model (as skops) for later updates. ExportError when ONNX can't represent it."""
    backend = Backend(backend)
    if backend is Backend.SKOPS:
        blob = _skops_dumps(estimator)
        _skops_check(blob, trusted)  # refused now, at fit, rather than at every load
        return blob
    if backend is Backend.ONNX:
        if x is None:
            raise ArtifactError("an ONNX export needs the training frame")
        return onnx_models.export(estimator, x, schema, methods, _skops_dumps(estimator) if keep_state else None)
    import joblib  # with scikit-learn: only where a model is made or loaded, not at a consumer's start

    buf = io.BytesIO()
    joblib.dump(estimator, buf)
    payload = buf.getvalue()
    return _MAGIC + hmac.new(key, payload, hashlib.sha256).digest() + payload


def load(
    blob: bytes,
    key: bytes,
    backend: str = Backend.JOBLIB.value,
    *,
    trusted: Collection[str] = frozenset(),
    versions: dict[str, str] | None = None,
) -> Any:
    """The model to predict with: the estimator, or an `onnx_models.OnnxModel`.

    `trusted`: the skops allowlist; `versions`: the artifact's `meta["versions"]`.
    """
    kind = _backend(backend)
    if kind is Backend.ONNX:
        return _onnx(blob)
    check_versions(versions)
    if kind is Backend.SKOPS:
        return _skops_load(blob, trusted)
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _MAC_SIZE:
        raise ArtifactError("artifact is not signed; refusing to load it")
    mac, payload = blob[len(_MAGIC) : len(_MAGIC) + _MAC_SIZE], blob[len(_MAGIC) + _MAC_SIZE :]
    if not hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()):
        raise ArtifactError("artifact signature does not match; refusing to load it")
    import joblib

    return joblib.load(io.BytesIO(payload))


def load_estimator(
    blob: bytes,
    key: bytes,
    backend: str,
    *,
    trusted: Collection[str] = frozenset(),
    versions: dict[str, str] | None = None,
) -> Any:
    """The fitted estimator itself, for an update (`partial_fit`) to start from."""
    if _backend(backend) is not Backend.ONNX:
        return load(blob, key, backend, trusted=trusted, versions=versions)
    try:
        state = onnx_models.state(blob)
    except ValueError as e:
        raise ArtifactError(str(e)) from e
    if state is None:
        raise ArtifactError("this ONNX artifact keeps no estimator to update (its family does not support update)")
    check_versions(versions)
    return _skops_load(state, trusted)


def check_versions(versions: dict[str, str] | None) -> None:
    """Refuse an estimator pickled or skopsed under another scikit-learn: it may load and answer wrongly."""
    made = (versions or {}).get("scikit-learn")
    running = _version("scikit-learn")
    if made is not None and made != running:
        raise ArtifactIncompatible(
            f"the model was stored with scikit-learn {made} and this consumer runs {running}; "
            f"refusing to load it rather than risk different answers: fit it again (or fit with backend "
            f"onnx, which does not need scikit-learn to predict), or serve it with scikit-learn {made}"
        )


def versions(backend: Backend | str, keep_state: bool = False) -> dict[str, str]:
    """The package versions an artifact of `backend` is made with (stored in its metadata)."""
    names = {
        Backend.JOBLIB: ["joblib"],
        Backend.SKOPS: ["skops"],
        Backend.ONNX: ["onnx", "skl2onnx", "onnxruntime", *(["skops"] if keep_state else [])],
    }[Backend(backend)]
    out = {"python": sys.version.split()[0], "scikit-learn": _version("scikit-learn"), "numpy": _version("numpy")}
    out.update({name: _version(name) for name in names})
    return out


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _backend(name: str) -> Backend:
    try:
        return Backend(name)
    except ValueError:
        raise ArtifactError(f"unknown artifact backend {name!r}") from None


def _skops() -> Any:
    import skops.io

    return skops.io


def _skops_dumps(estimator: Any) -> bytes:
    return cast("bytes", _skops().dumps(estimator, compression=zipfile.ZIP_DEFLATED))  # a zip of arrays: deflate halves forests


def _skops_load(blob: bytes, trusted: Collection[str]) -> Any:
    named = _skops_check(blob, trusted)
    return _skops().loads(blob, trusted=named)


def _skops_check(blob: bytes, trusted: Collection[str] | None) -> list[str]:
    """The types a skops blob names that skops does not trust by itself; ArtifactIncompatible when one
    is not on `trusted` (None: no check)."""
    try:
        named: list[str] = _skops().get_untrusted_types(data=blob)
    except Exception as e:  # not a skops file at all
        raise ArtifactError(f"not a skops artifact: {type(e).__name__}: {e}") from e
    refused = sorted(set(named) - set(trusted)) if trusted is not None else []
    if refused:
        raise ArtifactIncompatible(
            f"the skops artifact holds types this server does not trust: {refused}; refusing to load it "
            "(a family that needs its own types lists them in Family.trusted_types)"
        )
    return named


def _onnx(blob: bytes) -> onnx_models.OnnxModel:
    try:
        return onnx_models.load(blob)
    except (ValueError, KeyError) as e:
        raise ArtifactError(f"not a readable ONNX artifact: {e}") from e
    except Exception as e:  # onnxruntime refusing the graph (e.g. an opset newer than it knows)
        raise ArtifactIncompatible(f"onnxruntime {_version('onnxruntime')} can't load this ONNX model: {e}") from e


def digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()
