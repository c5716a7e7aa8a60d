"""`RemoteEstimator`: a scikit-learn estimator that trains and predicts on an ml-server.

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from client import RemoteEstimator

    model = make_pipeline(StandardScaler(), RemoteEstimator("logreg", "http://localhost:8080", C=0.5))
    model.fit(x, y).score(x_test, y_test)

The family's parameters are the estimator's parameters (`get_params`,
`set_params`, `clone` and grid searches see them); `fit` queues a new version
on the server and waits for it; predictions use exactly that version.
Whether it is a classifier (accuracy as `score`, `classes_`, stratified
folds in `cross_val_score`) or a regressor (R²) comes from the family's entry
in `GET /families` (a classifier family offers `predict_proba`);
`RemoteClassifier` and `RemoteRegressor` fix it without asking.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import ClassifierTags, RegressorTags, Tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .models import ModelClient

_OWN_PARAMS = ("family", "base_url", "backend")

_lock = threading.Lock()
_clients: dict[str, ModelClient] = {}
_families: dict[str, dict[str, dict[str, Any]]] = {}


def _client(base_url: str) -> ModelClient:
    with _lock:
        if base_url not in _clients:
            _clients[base_url] = ModelClient(base_url)
        return _clients[base_url]


def _family(base_url: str, family: str) -> dict[str, Any]:
    """The family's `GET /families` entry, asked once per gateway (again if the family is new)."""
    known = _families.get(base_url, {})
    if family not in known:
        known = {f["name"]: f for f in _client(base_url).families()}
        with _lock:
            _families[base_url] = known
    if family not in known:
        raise ValueError(f"the gateway at {base_url} serves no family {family!r} (it serves {sorted(known)})")
    return known[family]


def _target(y: Any) -> pd.DataFrame:
    if isinstance(y, pd.DataFrame):
        return y
    if isinstance(y, pd.Series):
        return y.to_frame(name="y" if y.name is None else str(y.name))
    values = np.asarray(y)
    return pd.DataFrame({"y": values}) if values.ndim == 1 else pd.DataFrame(values)


def _squeeze(frame: pd.DataFrame) -> np.ndarray:
    values = frame.to_numpy()
    return values[:, 0] if values.shape[1] == 1 else values


def _offers(method: str) -> Any:
    return lambda self: method in self._info()["methods"]


class RemoteEstimator(BaseEstimator):
    """One estimator of family `family` on the gateway at `base_url`; `params` are the family's parameters."""

    _kind: str | None = None  # "classifier", "regressor" or "clusterer"; None: ask the gateway

    def __init__(self, family: str, base_url: str, backend: str | None = None, **params: Any) -> None:
        self.family = family
        self.base_url = base_url
        self.backend = backend
        self._params = params

    # ---- parameters (dynamic: whatever the family takes) ---------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"family": self.family, "base_url": self.base_url, "backend": self.backend, **self._params}

    def set_params(self, **params: Any) -> RemoteEstimator:
        for key, value in params.items():
            if key in _OWN_PARAMS:
                setattr(self, key, value)
            elif "__" in key:
                raise ValueError(f"invalid parameter {key!r}: {type(self).__name__} has no nested estimators")
            else:
                self._params[key] = value
        return self

    # ---- what the family is -----------------------------------------------------

    def _info(self) -> dict[str, Any]:
        return _family(self.base_url, self.family)

    def _estimator_kind(self) -> str:
        if self._kind is not None:
            return self._kind
        info = self._info()
        if not info["supervised"]:
            return "clusterer"
        return "classifier" if "predict_proba" in info["methods"] else "regressor"

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        kind = self._estimator_kind()
        tags.estimator_type = kind
        if kind == "classifier":
            tags.classifier_tags = ClassifierTags()
        elif kind == "regressor":
            tags.regressor_tags = RegressorTags()
        tags.target_tags.required = kind != "clusterer"
        return tags

    # ---- data ----------------------------------------------------------------

    def _features(self, X: Any, fitting: bool) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            frame = X
        else:
            values = np.asarray(X)
            if values.ndim != 2:
                raise ValueError(f"expected a 2-d array of features, got shape {values.shape}")
            frame = pd.DataFrame(values)
        if fitting:
            self.n_features_in_ = frame.shape[1]
            if isinstance(X, pd.DataFrame) and all(isinstance(c, str) for c in X.columns):
                self.feature_names_in_ = np.asarray(X.columns, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            self._columns = [str(c) for c in frame.columns]
            return frame
        check_is_fitted(self, "model_key_")
        if frame.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {frame.shape[1]} features, but {type(self).__name__} was fitted with {self.n_features_in_}")
        if not isinstance(X, pd.DataFrame):
            frame.columns = self._columns  # an array: the columns it was fitted with, in order
        return frame

    def _predict(self, X: Any, method: str) -> pd.DataFrame:
        frame = self._features(X, fitting=False)
        return _client(self.base_url).predict(self.family, self.model_key_, frame, method=method, version=self.version_)

    # ---- the estimator API ---------------------------------------------------

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> RemoteEstimator:
        """Train a new version on the server (`fit_params` go to the estimator's `fit`) and wait for it."""
        x = self._features(X, fitting=True)
        state = _client(self.base_url).fit(
            self.family,
            x,
            None if y is None else _target(y),
            modkwargs=self._params,
            algkwargs=fit_params,
            retrain=True,  # a refit is a new version, even of the same data
            backend=self.backend,
        )
        self.model_key_: str = state["model_key"]
        self.version_: int = state["version"]
        if y is not None and self._estimator_kind() == "classifier":
            self.classes_ = np.unique(np.asarray(y))
        return self

    @available_if(lambda self: self._info()["supports_update"])
    def partial_fit(self, X: Any, y: Any = None, classes: Any = None, **fit_params: Any) -> RemoteEstimator:
        """The first call fits (so its data must show every class); later calls update on the server."""
        if not hasattr(self, "model_key_"):
            return self.fit(X, y, **fit_params)
        x = self._features(X, fitting=False)
        state = _client(self.base_url).update(self.family, self.model_key_, x, None if y is None else _target(y))
        self.version_ = state["version"]
        return self

    def predict(self, X: Any) -> np.ndarray:
        return _squeeze(self._predict(X, "predict"))

    @available_if(_offers("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        return self._predict(X, "predict_proba").to_numpy()

    @available_if(_offers("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> np.ndarray:
        return self._predict(X, "predict_log_proba").to_numpy()

    @available_if(_offers("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        return _squeeze(self._predict(X, "decision_function"))

    @available_if(lambda self: self._estimator_kind() in ("classifier", "regressor"))
    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy for a classifier family, R² for a regressor, as scikit-learn's mixins compute them."""
        if self._estimator_kind() == "classifier":
            return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))
        return float(r2_score(y, self.predict(X), sample_weight=sample_weight))


class RemoteClassifier(RemoteEstimator):
    """A `RemoteEstimator` known to be a classifier, without asking the gateway."""

    _kind = "classifier"


class RemoteRegressor(RemoteEstimator):
    """A `RemoteEstimator` known to be a regressor, without asking the gateway."""

    _kind = "regressor"
