"""Models trained elsewhere, made servable: the CPU-bound half of an import, run in a fit process.

Two kinds of file are taken, told apart by the gateway from their first bytes:

* a **skops** file of a scikit-learn estimator (or a `Pipeline` ending in one) of the
  family's class. Its archive is held to the caps of `ImportLimits` from what it declares
  before a byte is inflated (`contracts.archives`); every name its nodes ask for must be
  on the exact lists of `skops_names` (the family's allowlist, never types the file asks
  to be trusted); it is then read by skops, its trees are checked (`tree_checks`), and it
  is stored as it came (a skops artifact) after one test predict.
* an **ONNX** graph, for the `onnx` family: refused if any tensor is external data or a
  size comes from the request (`onnx_checks`), checked by `onnx`, loaded by onnxruntime
  (which can't load external data: `onnx_models.session`), run once on a row of zeros, and
  stored as an ONNX artifact whose manifest maps the graph's inputs and outputs to columns
  and predict methods.

The features are the file's own (`feature_names_in_`, the graph's per-column inputs)
or the ones given with the upload, else `"0"`..`"n-1"`; their kinds are the upload's
(`types`), else what the model's own encoders say (`input_kinds`), else numbers. A
failure is an `ImportRefused` with a message written for the uploader, which never
names a path on the server.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from contracts import archives
from contracts.columns import Column, InputSchema, Kind
from contracts.settings import Settings
from contracts.status import Backend

from . import backends, input_kinds, onnx_checks, onnx_models, skops_names, tree_checks
from .families import IMPORT_TRUSTED, Family, load_family

__all__ = ["ImportLimits", "ImportRefused", "Imported", "import_model"]


@dataclass(frozen=True)
class ImportLimits:
    """The caps an import is held to (settings `ML_SERVER_IMPORT_*`; these defaults are theirs)."""

    archive: archives.ArchiveLimits = field(default_factory=archives.ArchiveLimits)
    max_loop_trips: int = 100_000
    max_elements: int = 10_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ImportLimits:
        return cls(settings.archive_limits(), settings.import_max_loop_trips, settings.import_max_elements)


class ImportRefused(Exception):
    """The file can't be served: why, for the uploader. Picklable on purpose (it crosses the fit pool)."""


class Imported:
    """What an import stores: the artifact, its backend and metadata."""

    def __init__(self, artifact: bytes, backend: str, meta: dict[str, Any]) -> None:
        self.artifact, self.backend, self.meta = artifact, backend, meta


def import_model(
    spec: str, blob: bytes, fmt: str, features: list[str] | None, types: dict[str, str] | None, limits: ImportLimits | None = None
) -> Imported:
    family = load_family(spec)
    limits = limits or ImportLimits()
    try:
        if fmt == "onnx":
            return _onnx(family, blob, features, types or {}, limits)
        return _skops(family, blob, features, types or {}, limits)
    except ImportRefused as e:
        raise ImportRefused(_scrub(str(e))) from None
    except Exception as e:  # whatever the file made a library raise is a refusal, not a crash
        raise ImportRefused(_scrub(f"{type(e).__name__}: {str(e)[:500]}")) from None


# An absolute path in a library's message (a file it looked for, a module's location): never echoed, so
# an error can't tell an uploader which files exist on the server.
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/]+/)*[^\s'\"/]*")


def _scrub(message: str) -> str:
    return _PATH.sub("<path>", message)


# ---- skops -----------------------------------------------------------------------------------------


def _skops(family: Family, blob: bytes, features: list[str] | None, types: dict[str, str], limits: ImportLimits) -> Imported:
    from sklearn.compose import ColumnTransformer
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not family.fits:
        raise ImportRefused(f"family {family.name!r} takes ONNX graphs; a skops file goes to a scikit-learn family")
    refused = untrusted(blob, frozenset(map(_defined_at, family.trusted() | IMPORT_TRUSTED)), limits.archive)
    if refused:
        raise ImportRefused(
            f"the skops file names types and functions this server does not load from uploads: {refused}; "
            "nothing was loaded (a model of built-in scikit-learn estimators and preprocessing imports)"
        )
    try:
        model = backends.load(blob, b"", Backend.SKOPS.value, trusted=family.trusted())
    except backends.ArtifactError as e:
        raise ImportRefused(f"not a readable skops file: {e}") from None
    except Exception as e:  # ArtifactIncompatible (an untrusted type) and skops' own errors
        raise ImportRefused(getattr(e, "message", None) or f"{type(e).__name__}: {e}") from None
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if steps else model
    expected = family.estimator_class()
    if expected is not None and not isinstance(final, expected):
        raise ImportRefused(
            f"the file holds a {_name(type(final))}; family {family.name!r} serves {_name(expected)} "
            "(import it into the family of its estimator)"
        )
    try:
        check_is_fitted(final)
    except NotFittedError:
        raise ImportRefused(f"the {type(final).__name__} in the file is not fitted") from None
    try:
        tree_checks.check(model)  # before the model runs once: a broken tree never returns
    except tree_checks.TreeRefused as e:
        raise ImportRefused(f"a tree in the file is broken: {e}") from None
    own = getattr(model, "feature_names_in_", None)
    count = getattr(model, "n_features_in_", None)
    if own is not None:
        names = [str(n) for n in own]
        if features is not None and features != names:
            raise ImportRefused(f"features {features} given, but the model was fitted on {names}")
    elif features is not None:
        if count is not None and len(features) != count:
            raise ImportRefused(f"{len(features)} features given, but the model takes {count}")
        names = list(features)
    elif count is not None:
        names = [str(i) for i in range(int(count))]
    else:
        raise ImportRefused("the model does not say how many features it takes: give `features` with the upload")
    known = input_kinds.known_text(model, names)
    types = {**{n: Kind.STRING.value for n in known}, **types}
    schema = _schema(names, types)
    meta = _meta(schema, family.name, "skops")
    meta["versions"] = backends.versions(Backend.SKOPS)
    # A column transformer may select columns by name: such a model only takes frames.
    meta["array_input"] = not any(isinstance(step, ColumnTransformer) for step in _walk(model))
    if hasattr(final, "classes_"):
        classes = np.asarray(final.classes_)
        meta["classes"] = [str(c) for c in classes.ravel()]
        meta["classes_dtype"] = str(classes.dtype)
    try:
        model.predict(_sample(schema, known))
    except Exception as e:
        text = input_kinds.needing_text(model, schema)
        if text:
            raise ImportRefused(
                f"columns {text} hold text for this model: give their types with the upload "
                f"(types={json.dumps({n: Kind.STRING.value for n in text})})"
            ) from None
        raise ImportRefused(f"the model does not answer predict on a row of its features: {type(e).__name__}: {str(e)[:300]}") from None
    return Imported(blob, Backend.SKOPS.value, meta)


def untrusted(blob: bytes, allowed: frozenset[str], limits: archives.ArchiveLimits) -> list[str]:
    """What a skops file names (read from its `schema.json`, nothing loaded) beyond the exact lists of
    `skops_names`, with `allowed` the classes it may build. The archive is held to `limits` first
    (ImportRefused past them). A file that is not a skops file names nothing; loading it fails next."""
    try:
        with archives.check(blob, limits) as archive:
            schema = json.loads(archives.read(archive, "schema.json", limits))
    except archives.ArchiveRefused as e:
        raise ImportRefused(f"the skops file is refused unread: {e}") from None
    except (KeyError, ValueError, RecursionError):
        return []
    return skops_names.refused_names(schema, allowed)


def _defined_at(name: str) -> str:
    """A class's name where it is defined (`sklearn.linear_model._logistic.LogisticRegression`), as skops
    writes it, for a name given by its public path (`sklearn.linear_model.LogisticRegression`)."""
    module, _, cls = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError, ValueError):
        return name
    return f"{found.__module__}.{found.__qualname__}" if isinstance(found, type) else name


def _walk(model: Any) -> list[Any]:
    out = [model]
    for _, step in getattr(model, "steps", None) or ():
        out.extend(_walk(step))
    return out


def _name(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}'s {cls.__name__}"


# ---- ONNX ------------------------------------------------------------------------------------------

# onnxruntime's element types -> numpy dtypes the feeds are built with.
_TENSORS = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def _onnx(family: Family, blob: bytes, features: list[str] | None, types: dict[str, str], limits: ImportLimits) -> Imported:
    import onnx

    if family.fits:
        raise ImportRefused(f"an ONNX graph is served by the onnx family, not {family.name!r}")
    try:
        graph = onnx.load_model_from_string(blob)
    except Exception as e:  # DecodeError (truncated, not protobuf)
        raise ImportRefused(f"not a valid ONNX model: {type(e).__name__}: {str(e).strip()[:300]}") from None
    try:
        onnx_checks.check(graph, limits.max_loop_trips, limits.max_elements)  # before anything reads a tensor
    except onnx_checks.GraphRefused as e:
        raise ImportRefused(str(e)) from None
    try:
        onnx.checker.check_model(graph)
    except Exception as e:  # ValidationError
        raise ImportRefused(f"not a valid ONNX model: {type(e).__name__}: {str(e).strip()[:300]}") from None
    try:
        session = onnx_models.session(blob)
    except Exception as e:
        raise ImportRefused(f"onnxruntime can't load this graph: {str(e).strip()[:300]}") from None
    inputs = session.get_inputs()
    for i in inputs:
        if i.type not in _TENSORS:
            raise ImportRefused(f"graph input {i.name!r} is a {i.type}; tensors of numbers or strings are taken")
    manifest: dict[str, Any] = {"format": onnx_models.FORMAT, "input": inputs[0].name}
    if len(inputs) == 1 and inputs[0].type != "tensor(string)" and _width(inputs[0].shape) != 1:
        # One matrix of every feature: the columns are the given features, or positions.
        width = _width(inputs[0].shape)
        if width is None:
            if features is None:
                raise ImportRefused(f"graph input {inputs[0].name!r} has no fixed width: give `features` with the upload")
            width = len(features)
        names = list(features) if features is not None else [str(i) for i in range(width)]
        if len(names) != width:
            raise ImportRefused(f"{len(names)} features given, but the graph's input takes {width}")
        manifest["input_dtype"] = np.dtype(_TENSORS[inputs[0].type]).str
        text = {n for n, k in types.items() if Kind(k).text}
        if text:
            raise ImportRefused(f"columns {sorted(text)} are text, but the graph takes one matrix of numbers")
    else:
        # One input per column, named by it (skl2onnx's form for frames with text columns).
        names = [i.name for i in inputs]
        if features is not None and sorted(features) != sorted(names):
            raise ImportRefused(f"features {features} given, but the graph's inputs are {names}")
        manifest["inputs"] = [
            {"name": i.name, "column": i.name, "text": i.type == "tensor(string)", "dtype": np.dtype(_TENSORS[i.type]).str}
            for i in inputs
        ]
        types = {**{i.name: Kind.STRING.value for i in inputs if i.type == "tensor(string)"}, **types}
    manifest["features"] = len(names)
    schema = _schema(names, types)
    outputs = [o for o in session.get_outputs() if o.type.startswith("tensor(")]  # not ZipMap's maps
    if not outputs:
        raise ImportRefused("the graph has no tensor output to answer with")
    by_name = {o.name: o for o in outputs}
    label = next((by_name[n] for n in onnx_models.OUTPUTS["predict"] if n in by_name), outputs[0])
    methods = {"predict": _output(label)}
    scores = next((by_name[n] for n in onnx_models.OUTPUTS["predict_proba"] if n in by_name), None)
    if scores is None and len(outputs) > 1 and outputs[1].type in ("tensor(float)", "tensor(double)"):
        scores = outputs[1]
    if scores is not None and scores is not label:
        methods["predict_proba"] = _output(scores)
    manifest["methods"] = methods
    model = onnx_models.OnnxModel(session, manifest)
    _try(lambda: model.predict(_sample(schema)), "predict")
    meta = _meta(schema, family.name, "onnx")
    meta["versions"] = {"onnxruntime": backends._version("onnxruntime"), "onnx": backends._version("onnx")}
    meta["array_input"] = "inputs" not in manifest
    meta["opset"] = {o.domain or "ai.onnx": o.version for o in graph.opset_import}
    classes = _classes(graph)
    if classes is not None:
        meta["classes"] = classes
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(onnx_models.MODEL, blob)
        z.writestr(onnx_models.MANIFEST, json.dumps(manifest))
    return Imported(buf.getvalue(), Backend.ONNX.value, meta)


def _width(shape: list[Any]) -> int | None:
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None


def _output(output: Any) -> dict[str, Any]:
    dtype = np.dtype(_TENSORS.get(output.type, np.float32))
    # A column of one ([N, 1], regressors) is answered as one dimension, as scikit-learn does.
    ndim = 1 if len(output.shape) == 1 or (len(output.shape) == 2 and output.shape[1] == 1) else len(output.shape)
    return {"output": output.name, "dtype": dtype.str, "ndim": ndim}


def _classes(graph: Any) -> list[str] | None:
    """The class labels a classifier graph carries (skl2onnx writes them on its classifier node)."""
    for node in graph.graph.node:
        for attribute in node.attribute:
            if attribute.name == "classlabels_int64s":
                return [str(v) for v in attribute.ints]
            if attribute.name == "classlabels_strings":
                return [v.decode() for v in attribute.strings]
    return None


# ---- both ------------------------------------------------------------------------------------------


def _schema(names: list[str], types: dict[str, str]) -> InputSchema:
    unknown = sorted(set(types) - set(names))
    if unknown:
        raise ImportRefused(f"types given for {unknown}, which the model does not take (it takes {names})")
    return InputSchema(tuple(Column(n, Kind(types.get(n, Kind.NUMBER.value))) for n in names))


def _meta(schema: InputSchema, family: str, fmt: str) -> dict[str, Any]:
    return {
        "features": schema.names,
        "schema": schema.as_list(),
        "targets": [],
        "array_ready": False,
        "imported": {"format": fmt, "family": family},
    }


def _sample(schema: InputSchema, known: dict[str, str] | None = None) -> pd.DataFrame:
    """One row of the model's columns: zeros, and for text a value the model knows (`known`) or empty text."""
    known = known or {}
    return pd.DataFrame({c.name: [known.get(c.name, "") if c.kind.text else 0.0] for c in schema.columns}).astype(
        {c.name: object if c.kind.text else np.float64 for c in schema.columns}
    )


def _try(call: Any, method: str) -> None:
    try:
        call()
    except Exception as e:
        raise ImportRefused(f"the model does not answer {method} on a row of its features: {type(e).__name__}: {str(e)[:300]}") from None
