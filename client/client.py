"""The seed's client, `GenericModelInterface`: pandas in, pandas out.

    mi = GenericModelInterface("http://localhost:8080/", "logreg", C=0.5)
    mi.fit(x, y, name="my-model")          # waits until trained
    yhat = mi.predict(x)                   # a DataFrame indexed like x

Data travels as Parquet; every error status is raised as the matching
`contracts.errors` class (NotFound, InvalidInput with `.fields`, ...).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import requests

from contracts.errors import MLServerError
from contracts.frames import PARQUET, ParquetCodec, encode_training

from ._wire import as_frame, error_from
from .waiting import wait_sync


class GenericModelInterface:
    """One model of one family on an ml-server gateway."""

    def __init__(self, base: str, endpoint: str, *, timeout: float = 60.0, **modkwargs: Any) -> None:
        self._base = base.rstrip("/")
        self._ep = endpoint.strip("/")
        self._mk = modkwargs
        self._key: str | None = None
        self.timeout = timeout
        self.http = requests.Session()

    # ---- the seed's API ------------------------------------------------------

    def load(self, key: str) -> GenericModelInterface:
        """Work with an existing model."""
        self._key = key
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
        params = {"modkwargs": json.dumps(self._mk), "algkwargs": json.dumps(algkwargs), "retrain": str(bool(retrain)).lower()}
        if name is not None:
            params["name"] = name
        if backend is not None:
            params["backend"] = backend
        body = encode_training(as_frame(x), as_frame(y) if y is not None else None)
        reply = self._request("PUT", params=params, data=body, headers={"Content-Type": PARQUET})
        self._key = reply["model_key"]
        if wait:
            self.wait()
        return self

    def update(self, x: pd.DataFrame, y: pd.DataFrame | pd.Series | None = None, wait: bool = True) -> GenericModelInterface:
        """Update the trained model with new data (`partial_fit`)."""
        key = self._require_key()
        body = encode_training(as_frame(x), as_frame(y) if y is not None else None)
        self._request("PATCH", params={"model_key": key}, data=body, headers={"Content-Type": PARQUET})
        if wait:
            self.wait()
        return self

    def predict(self, x: pd.DataFrame, as_array: bool = False, **kwargs: Any) -> pd.DataFrame | np.ndarray:
        """Predict; `kwargs` may name another `method` (e.g. `predict_proba`) and its arguments."""
        key = self._require_key()
        params = {"model_key": key}
        if kwargs:
            params["kwargs"] = json.dumps(kwargs)
        body = ParquetCodec.encode(as_frame(x))
        response = self._send(
            "POST", params=params, data=body, headers={"Content-Type": PARQUET, "Accept": PARQUET}
        )
        frame = ParquetCodec.decode(response.content, what="prediction")
        if as_array:
            values = frame.to_numpy()
            return values[:, 0] if values.shape[1] == 1 else values
        return frame

    def status(self) -> dict[str, Any]:
        """The latest training session: status, version, error, timings."""
        return self._request("GET", params={"model_key": self._require_key()})

    def delete(self) -> dict[str, Any]:
        """Delete the model and all its versions."""
        return self._request("DELETE", params={"model_key": self._require_key()})

    # ---- waiting -------------------------------------------------------------

    def wait(self, timeout: float | None = 3600.0) -> dict[str, Any]:
        """Block until the latest training session is done; raise TrainingFailed if it failed.

        Follows the gateway's event stream (polling if it has none), without a progress bar.
        """
        key = self._require_key()
        return wait_sync(self.http, self._base, self.status, key, None, timeout, progress=False, connect_timeout=self.timeout)

    # ---- plumbing ------------------------------------------------------------

    def _require_key(self) -> str:
        if not self._key:
            raise ValueError("Must call `fit` (or `load`) first!")
        return self._key

    def _send(self, method: str, **kwargs: Any) -> requests.Response:
        response = self.http.request(method, f"{self._base}/{self._ep}", timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _request(self, method: str, **kwargs: Any) -> dict[str, Any]:
        return self._send(method, **kwargs).json()


def _error(response: requests.Response) -> MLServerError:
    return error_from(response.status_code, response.content)
