"""ONNX artifacts: exported at the end of a fit (in the fit process), run by onnxruntime.

An ONNX artifact is a zip file holding

    model.onnx       the graph (skl2onnx): one input "X", float32 [rows, features]; classifiers
                     without ZipMap, so probabilities are a plain tensor
    manifest.json    the input name, the feature count, and for each predict method it
                     offers: the graph output that answers it, and the dtype and number of
                     dimensions of the estimator's own answer (labels come back in the
                     training classes' dtype, numbers as the estimator's, float64)
    estimator.skops  only for families that support update: the fitted estimator, for the
                     next `partial_fit` (predictions never read it)

Nothing in it is code: onnxruntime runs the graph, and the skops part is loaded
against the server's allowlist like any skops artifact.

A graph is only stored after it answered like the estimator on (up to) the
first `CHECK_ROWS` training rows, each method it offers: labels agreeing on at
least `CHECK_LABEL_AGREEMENT` of the rows (float32 arithmetic can flip a row
sitting on a decision boundary), numbers within `CHECK_RTOL` and `CHECK_ATOL`
(times the output's scale). A model that fails this, or that skl2onnx can't
convert, fails its fit with the reason.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from contracts.columns import InputSchema

from . import targets

MODEL, MANIFEST, STATE = "model.onnx", "manifest.json", "estimator.skops"
FORMAT = 1

# Graph outputs (skl2onnx's names) that answer each predict method, in order of preference.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "predict": ("label", "variable"),
    "predict_proba": ("probabilities",),
    "transform": ("scores",),  # KMeans: distances to the cluster centres
}

CHECK_ROWS = 1000
CHECK_LABEL_AGREEMENT = 0.99
CHECK_RTOL = 1e-3
CHECK_ATOL = 1e-4


class ExportError(Exception):
    """The estimator can't be stored as ONNX (no converter, or a graph that answers differently)."""


class OnnxModel:
    """A loaded ONNX artifact: one cached `InferenceSession`; offers the methods its manifest maps.

    Each offered method takes a frame (columns in training order) and answers like
    the estimator did at export: same dtype (labels in the training classes' dtype),
    same number of dimensions.
    """

    def __init__(self, session: Any, manifest: dict[str, Any]) -> None:
        self.session = session
        self.input: str = manifest["input"]
        self.features: int = manifest["features"]
        self.outputs: dict[str, dict[str, Any]] = dict(manifest["methods"])
        # A model with text columns takes one input per column: [{"name", "text": bool}], in order.
        self.inputs: list[dict[str, Any]] | None = manifest.get("inputs")
        # Imported graphs may take doubles or integers; exported ones take float32.
        self.dtype = np.dtype(manifest.get("input_dtype", "<f4"))

    @property
    def methods(self) -> list[str]:
        return list(self.outputs)

    def __getattr__(self, name: str) -> Callable[..., np.ndarray]:
        if name in self.__dict__.get("outputs", {}):
            return partial(self.run, name)
        raise AttributeError(name)

    def run(self, method: str, x: pd.DataFrame | np.ndarray, **kwargs: Any) -> np.ndarray:
        if kwargs:
            raise TypeError(f"the ONNX form of this model takes no arguments for {method}, got {sorted(kwargs)}")
        spec = self.outputs[method]
        try:
            (out,) = self.session.run([spec["output"]], self._feeds(x))
        except Exception as e:  # onnxruntime's own exception types are not ValueError
            raise ValueError(f"onnxruntime: {e}") from e
        out = np.asarray(out)
        if spec["ndim"] == 1 and out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        return out.astype(spec["dtype"], copy=False)

    def _feeds(self, x: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
        if self.inputs is None:
            values = np.ascontiguousarray(x, dtype=self.dtype)  # ValueError for non-numeric columns
            if values.ndim != 2 or values.shape[1] != self.features:
                raise ValueError(f"expected {self.features} features, got an array of shape {values.shape}")
            return {self.input: values}
        if not isinstance(x, pd.DataFrame):
            raise ValueError("this ONNX model takes a frame (it has text columns)")
        feeds = {}
        for spec in self.inputs:
            column = x[spec["column"]]
            if spec["text"]:
                feeds[spec["name"]] = column.to_numpy(dtype=object).reshape(-1, 1)
            else:
                feeds[spec["name"]] = column.to_numpy(dtype=np.dtype(spec.get("dtype", "<f4"))).reshape(-1, 1)
        return feeds


# Where onnxruntime looks for external data of a graph given as bytes (by default: the working
# directory, where the store and the signing key are). Nothing can exist under /dev/null, so no
# `location` a graph names, however it is spelled, resolves to a file: external data can't load.
NO_EXTERNAL_DATA = "/dev/null/ml-server-loads-no-external-data"
EXTERNAL_DATA_FOLDER = "session.model_external_initializers_file_folder_path"


def session(model: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry(EXTERNAL_DATA_FOLDER, NO_EXTERNAL_DATA)
    # One consumer process per family, scaled by adding processes: one thread each keeps
    # small batches fast and processes from fighting over cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def export(estimator: Any, x: pd.DataFrame, schema: InputSchema | None, methods: Sequence[str], state: bytes | None) -> bytes:
    """The artifact for `estimator` (a model: its preprocessing and estimator) fitted on the conformed
    frame `x`, or ExportError saying why there is none. Numbers only: one float input `X`; with text
    columns, one input per column (float or string), as the model's column transformer selects them."""
    from sklearn.base import is_classifier
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    name = type(final).__name__
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    inputs: list[dict[str, Any]] | None = None
    if schema is not None and schema.text:
        inputs = [{"name": _input_name(c.name), "column": c.name, "text": c.kind.text} for c in schema.columns]
        types = [(i["name"], StringTensorType([None, 1]) if i["text"] else FloatTensorType([None, 1])) for i in inputs]
        if any(i["name"] != i["column"] for i in inputs):
            raise ExportError(f"{name} could not be exported to ONNX: column names must be usable as ONNX input names")
    else:
        types = [("X", FloatTensorType([None, x.shape[1]]))]
    targets.register_onnx()
    try:
        graph = to_onnx(estimator, initial_types=types, options=options)
        model = graph.SerializeToString()
        sess = session(model)
    except Exception as e:
        raise ExportError(f"{name} could not be exported to ONNX: {_reason(e)}") from None
    names = [o.name for o in sess.get_outputs()]
    sample = x.iloc[:CHECK_ROWS]
    offered: dict[str, dict[str, Any]] = {}
    expected: dict[str, np.ndarray] = {}
    for method in methods:
        found = next((o for o in OUTPUTS.get(method, ()) if o in names), None)
        if found is not None and hasattr(estimator, method):
            expected[method] = np.asarray(getattr(estimator, method)(sample))
            offered[method] = {"output": found, "dtype": expected[method].dtype.str, "ndim": expected[method].ndim}
    if "predict" not in offered:
        raise ExportError(f"{name} could not be exported to ONNX: its graph has no prediction output (outputs {names})")
    manifest = {"format": FORMAT, "input": sess.get_inputs()[0].name, "features": x.shape[1], "methods": offered}
    if inputs is not None:
        manifest["inputs"] = inputs
    _check(expected, OnnxModel(sess, manifest), sample, name)

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MODEL, model)
        z.writestr(MANIFEST, json.dumps(manifest))
        if state is not None:
            z.writestr(STATE, state)
    return buf.getvalue()


def _input_name(column: str) -> str:
    """A column's ONNX input name: the column name itself (the column transformer selects by it)."""
    return column


def load(blob: bytes) -> OnnxModel:
    """The model to predict with (raises ValueError for bytes that are not an ONNX artifact)."""
    with _open(blob) as z:
        manifest, model = json.loads(z.read(MANIFEST)), z.read(MODEL)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"ONNX artifact format {manifest.get('format')!r} is not {FORMAT}")
    return OnnxModel(session(model), manifest)


def state(blob: bytes) -> bytes | None:
    """The skops estimator an update starts from; None when the artifact keeps none."""
    with _open(blob) as z:
        return z.read(STATE) if STATE in z.namelist() else None


def _open(blob: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(blob))
    except zipfile.BadZipFile as e:
        raise ValueError(f"not an ONNX artifact: {e}") from e


def _check(answers: dict[str, np.ndarray], model: OnnxModel, x: pd.DataFrame, name: str) -> None:
    """Refuse a graph that does not answer like the estimator it came from (`answers`, on `x`)."""
    for method, expected in answers.items():
        try:
            got = getattr(model, method)(x)
        except (ValueError, TypeError) as e:
            raise ExportError(f"{name} could not be exported to ONNX faithfully: {method}: {e}") from None
        if expected.shape != got.shape:
            problem = f"{method} gives shape {got.shape}, scikit-learn {expected.shape}"
        elif expected.dtype.kind in "fc" and got.dtype.kind in "fc":
            atol = CHECK_ATOL * max(1.0, float(np.abs(expected).max(initial=0.0)))
            if np.allclose(got, expected, rtol=CHECK_RTOL, atol=atol):
                continue
            problem = f"{method} differs from scikit-learn by up to {float(np.abs(got - expected).max()):.3g}"
        else:
            agreement = float(np.mean(expected == got)) if len(expected) else 1.0
            if agreement >= CHECK_LABEL_AGREEMENT:
                continue
            problem = f"{method} agrees with scikit-learn on only {agreement:.1%} of the training rows"
        raise ExportError(f"{name} could not be exported to ONNX faithfully: {problem}")


def _reason(e: BaseException) -> str:
    """One short line per exception in the chain (converter errors can run to pages)."""
    parts: list[str] = []
    seen: BaseException | None = e
    while seen is not None and len(parts) < 3:
        text = (str(seen).strip().splitlines() or [""])[0]
        parts.append(f"{type(seen).__name__}: {text[:300]}{'…' if len(text) > 300 else ''}")
        seen = seen.__cause__
    return "; caused by ".join(parts)
