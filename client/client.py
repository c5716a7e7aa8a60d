"""The seed's client, `GenericModelInterface`: pandas in, pandas out.

    mi = GenericModelInterface("http://localhost:8080/", "logreg", C=0.5)
    mi.fit(x, y, name="my-model")          # waits until trained
    yhat = mi.predict(x)                   # a DataFrame indexed like x

The seed's own client, unchanged, still works against ml-server's `/{family}`
routes. This one has the same API, sends Parquet to ml-server's own routes
(`/families/{family}/models`, `/models/{model_key}/...`), waits on the event
stream instead of polling every 5 s, and raises every error status as its
`contracts.errors` class (NotFound, InvalidInput with `.fields`, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import requests

from . import _wire
from ._wire import error_from
from .waiting import wait_sync


class GenericModelInterface:
    """One model of one family on an ml-server gateway."""

    def __init__(self, base: str, endpoint: str, *, timeout: float = 60.0, **modkwargs: Any) -> None:
        self._base = base.rstrip("/")
        self._ep = endpoint.strip("/")
        self._mk = modkwargs
        self._key: str | None = None
        self._version: int | None = None  # the version the last fit or update made: what `wait` waits for
        self.timeout = timeout
        self.http = requests.Session()

    # ---- the seed's API ------------------------------------------------------

    def load(self, key: str) -> GenericModelInterface:
        """Work with an existing model."""
        self._key, self._version = key, None
        return self

    @property
    def model_key(self) -> str | None:
        return self._key

    def fit(
        self,
        x: pd.DataFrame,
        y: pd.DataFrame | pd.Series | None = None,
        name: str | None = None,
        wait: bool = True,
        retrain: bool = False,
        backend: str | None = None,
        **algkwargs: Any,
    ) -> GenericModelInterface:
        """Train (sklearn `fit`); `algkwargs` go to the estimator's `fit`.

        `backend` (`joblib`, `skops`, `onnx`) overrides how the family stores the model.
        """
        call = _wire.fit(
            "parquet", self._ep, x, y, name=name, modkwargs=self._mk, algkwargs=algkwargs, retrain=retrain, backend=backend
        )
        accepted = self._do(call)
        self._key = accepted["model_key"]
        self._version = accepted["version"]
        if wait:
            self.wait()
        return self

    def update(self, x: pd.DataFrame, y: pd.DataFrame | pd.Series | None = None, wait: bool = True) -> GenericModelInterface:
        """Update the trained model with new data (`partial_fit`)."""
        accepted = self._do(_wire.update("parquet", self._require_key(), x, y))
        self._version = accepted["version"]
        if wait:
            self.wait()
        return self

    def predict(self, x: pd.DataFrame, as_array: bool = False, **kwargs: Any) -> pd.DataFrame | np.ndarray:
        """Predict; `kwargs` may name another `method` (e.g. `predict_proba`) and its arguments."""
        frame: pd.DataFrame = self._do(_wire.predict("parquet", self._require_key(), x, version=None, kwargs=kwargs))
        if as_array:
            values = frame.to_numpy()
            return values[:, 0] if values.shape[1] == 1 else values
        return frame

    def status(self) -> dict[str, Any]:
        """The latest training session: status, version, error, timings."""
        state: dict[str, Any] = self._do(_wire.status(self._require_key()))
        return state

    def delete(self, model_key: str | None = None) -> dict[str, Any]:
        """Delete the model (this one, or `model_key`) and all its versions."""
        answer: dict[str, Any] = self._do(_wire.delete(model_key or self._require_key()))
        return answer

    def url(self) -> str:
        return f"{self._base}/{self._ep}"

    def add_header(self, k: str, v: str) -> GenericModelInterface:
        """Send this header with every request (e.g. `Authorization`)."""
        self.http.headers[k] = v
        return self

    # ---- waiting -------------------------------------------------------------

    def wait(self, timeout: float | None = 3600.0) -> dict[str, Any]:
        """Block until the latest training session is done; raise TrainingFailed if it failed.

        Follows the gateway's event stream (polling if it has none), without a progress bar.
        """
        key = self._require_key()
        return wait_sync(self.http, self._base, self.status, key, self._version, timeout, progress=False, connect_timeout=self.timeout)

    # ---- plumbing ------------------------------------------------------------

    def _require_key(self) -> str:
        if not self._key:
            raise ValueError("Must call `fit` (or `load`) first!")
        return self._key

    def _do(self, call: _wire.Call) -> Any:
        response = self.http.request(
            call.method, self._base + call.path, params=call.params, data=call.body, headers=call.headers, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise error_from(response.status_code, response.content)
        return call.read(response.content)
