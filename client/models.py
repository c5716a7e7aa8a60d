"""`ModelClient` and `AsyncModelClient`: every verb of the gateway, for any family and model.

    client = ModelClient("http://localhost:8080", token="...")
    state = client.fit("logreg", x, y, name="churn", modkwargs={"C": 0.5})   # waits until done
    yhat = client.predict("logreg", state["model_key"], x)                   # a DataFrame indexed like x

Data travels as Parquet (`format="json"` for the seed's JSON) to ml-server's
own routes (`/families/{family}/models`, `/models/{model_key}/...`); every
error answer is raised as its `contracts.errors` class. The wire format lives
in `client._wire`, shared with `GenericModelInterface`; these classes only
carry it. A model key names its model on its own: the `family` argument of
`update`, `predict`, `status` and `delete` is kept so that calls written for
earlier versions still work.
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import Any, Self, TypeAlias, cast

import aiohttp
import numpy as np
import pandas as pd
import requests

from . import _v2, _wire, search, waiting
from ._wire import Call, Format, error_from

Data: TypeAlias = pd.DataFrame | pd.Series | np.ndarray


def _check_format(fmt: str) -> Format:
    if fmt not in _wire.FORMATS:
        raise ValueError(f"format must be one of {_wire.FORMATS}, not {fmt!r}")
    return fmt  # type: ignore[return-value]


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _read_file(file: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(file, bytes):
        return file
    with open(file, "rb") as f:
        return f.read()


class _Registry:
    """The registry's verbs, shared by both clients: each returns what `_do` does (the answer from
    `ModelClient`, an awaitable of it from `AsyncModelClient`)."""

    def _do(self, call: Call) -> Any:
        raise NotImplementedError

    def model(self, model_key: str) -> Any:
        """The model as the registry knows it: description, tags, aliases, serving alias and version, latest version."""
        return self._do(_wire.model(model_key))

    def set_alias(self, model_key: str, alias: str, version: int) -> Any:
        """Point `alias` (`champion`, `challenger`, ...) at a done version; moving it back is a rollback."""
        return self._do(_wire.set_alias(model_key, alias, version))

    def remove_alias(self, model_key: str, alias: str) -> Any:
        return self._do(_wire.remove_alias(model_key, alias))

    def edit_model(self, model_key: str, **changes: Any) -> Any:
        """Change `description`, `tags` (a list) or `serving` (the alias predicts use by default; None:
        the latest done version). Only what is given changes; the model as `GET /models/{key}` shows it."""
        return self._do(_wire.edit_model(model_key, changes))

    def edit_version(self, model_key: str, version: int, **changes: Any) -> Any:
        """Change a version's `description` or `tags`."""
        return self._do(_wire.edit_version(model_key, version, changes))

    def history(self, model_key: str, version: int | None = None) -> Any:
        """Who did what to the model (and its versions), newest first."""
        return self._do(_wire.history(model_key, version))

    def import_model(
        self,
        family: str,
        file: bytes | str | os.PathLike[str],
        *,
        name: str | None = None,
        features: list[str] | None = None,
        types: dict[str, str] | None = None,
    ) -> Any:
        """A model trained elsewhere as a new model: a skops file (`skops.io.dump`) into the family of its
        estimator, or an ONNX graph into `onnx`. `features`/`types` when the file does not name its columns
        or they are not all numbers. `{model_key, status: "done", version}`."""
        return self._do(_wire.import_model(_read_file(file), family=family, name=name, features=features, types=types))

    def import_version(
        self,
        model_key: str,
        file: bytes | str | os.PathLike[str],
        *,
        features: list[str] | None = None,
        types: dict[str, str] | None = None,
    ) -> Any:
        """A model file as the next version of `model_key`."""
        return self._do(_wire.import_model(_read_file(file), model_key=model_key, features=features, types=types))


class ModelClient(_Registry):
    """Blocking client of one gateway (requests)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0, format: str = "parquet") -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.format = _check_format(format)
        self.http = requests.Session()
        self.http.headers.update(_headers(token))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _do(self, call: Call) -> Any:
        response = self.http.request(
            call.method,
            self.base_url + call.path,
            params=call.params,
            data=call.body,
            headers=call.headers,
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            raise error_from(response.status_code, response.content)
        return call.read(response.content)

    def fit(
        self,
        family: str,
        x: Data,
        y: Data | None = None,
        *,
        name: str | None = None,
        modkwargs: dict[str, Any] | None = None,
        algkwargs: dict[str, Any] | None = None,
        retrain: bool = False,
        backend: str | None = None,
        wait: bool = True,
        wait_timeout: float | None = 3600.0,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """Train; with `wait`, the status once the version is done (TrainingFailed if it failed)."""
        call = _wire.fit(
            self.format, family, x, y, name=name, modkwargs=modkwargs, algkwargs=algkwargs, retrain=retrain, backend=backend
        )
        accepted = self._do(call)
        if not wait:
            return cast("dict[str, Any]", accepted)
        return self.wait(family, accepted["model_key"], accepted["version"], timeout=wait_timeout, progress=progress)

    def search(
        self,
        family: str,
        x: Data,
        y: Data | None = None,
        *,
        name: str,
        param_grid: dict[str, list[Any]] | None = None,
        param_distributions: dict[str, list[Any]] | None = None,
        n_iter: int = 10,
        seed: int = 0,
        cv: int = 5,
        scoring: str | None = None,
        alias: str | None = None,
        modkwargs: dict[str, Any] | None = None,
        algkwargs: dict[str, Any] | None = None,
        wait: bool = True,
        wait_timeout: float | None = 3600.0,
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """A hyperparameter search run by the server (`POST /families/{family}/searches`): one fit job per
        candidate, spread over the family's consumers; the best refitted as a new version of `name` (given
        `alias`). The leaderboard, best first, laid out like `GridSearchCV.cv_results_`; the search in
        `.attrs["search"]` (its `id`, `model_key` and `version`). `search.SearchFailed` if it failed."""
        fields = {
            "name": name, "param_grid": param_grid, "param_distributions": param_distributions, "n_iter": n_iter, "seed": seed,
            "cv": cv, "scoring": scoring, "alias": alias, "modkwargs": modkwargs or {}, "algkwargs": algkwargs or {},
        }
        return search.run(self, family, x, y, fields, wait, wait_timeout, progress)

    def search_status(self, search_id: int) -> pd.DataFrame:
        """A search's leaderboard as it is now (the search in `.attrs["search"]`)."""
        return _wire.leaderboard_frame(self._do(_wire.search_status(search_id)))

    def cancel_search(self, search_id: int) -> dict[str, Any]:
        """Cancel a search: candidates not finished are dropped, no winner is refitted."""
        return dict(self._do(_wire.cancel_search(search_id)))

    def update(
        self,
        family: str,
        model_key: str,
        x: Data,
        y: Data | None = None,
        *,
        wait: bool = True,
        wait_timeout: float | None = 3600.0,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """`partial_fit` on the latest done version, making a new version."""
        accepted = self._do(_wire.update(self.format, model_key, x, y))
        if not wait:
            return cast("dict[str, Any]", accepted)
        return self.wait(family, model_key, accepted["version"], timeout=wait_timeout, progress=progress)

    def predict(
        self,
        family: str,
        model_key: str,
        x: Data,
        *,
        method: str = "predict",
        version: int | None = None,
        alias: str | None = None,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """A DataFrame indexed like `x`; `method` picks `predict_proba` etc., `kwargs` go to it. `version` or
        `alias` picks the version (default: the model's serving alias, else its latest done version)."""
        arguments = kwargs if method == "predict" else {"method": method, **kwargs}
        result: pd.DataFrame = self._do(_wire.predict(self.format, model_key, x, version=version, kwargs=arguments, alias=alias))
        return result

    def infer(self, model: str, x: Data, *, version: int | str | None = None, method: str = "predict") -> pd.DataFrame:
        """The same predict over the Open Inference Protocol (`/v2`, binary tensors): `model` a name or a
        model_key, `version` a number or an alias (default: the model's serving version)."""
        result: pd.DataFrame = self._do(_v2.infer(model, x, version=version, method=method))
        return result

    def status(self, family: str, model_key: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self._do(_wire.status(model_key, family)))

    def delete(self, family: str, model_key: str) -> dict[str, Any]:
        return cast("dict[str, Any]", self._do(_wire.delete(model_key)))

    def versions(self, model_key: str, **filters: Any) -> dict[str, Any]:
        """Every version of a model, newest first; filters `status`, `limit`, `offset`."""
        return cast("dict[str, Any]", self._do(_wire.versions(model_key, filters)))

    def scores(self, model_key: str, **filters: Any) -> pd.DataFrame:
        """The held-out scores of a model's versions (`modkwargs["evaluation"]` at fit), one row per version,
        newest first: `status`, `method` (holdout or cv), then each metric's mean (`accuracy`, `r2`, ...) and
        its spread over the folds (`accuracy_std`, ...); filters as `versions`."""
        return _wire.scores_frame(self._do(_wire.versions(model_key, filters)))

    def models(self, **filters: Any) -> dict[str, Any]:
        """Models with their latest version; filters `family`, `name`, `status`, `limit`, `offset`."""
        return cast("dict[str, Any]", self._do(_wire.models(filters)))

    def families(self) -> list[dict[str, Any]]:
        """The families served: name, supervised, supports_update, params, methods."""
        return cast("list[dict[str, Any]]", self._do(_wire.families()))

    def wait(
        self,
        family: str,
        model_key: str,
        version: int | None = None,
        timeout: float | None = 3600.0,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """The status once `version` (default: the latest) is done, following the gateway's event stream
        (polling if it has none); TrainingFailed if it failed, TimeoutError after `timeout` seconds.
        `progress`: a progress bar on stderr (None: only on a terminal)."""
        return waiting.wait_sync(
            self.http, self.base_url, lambda: self.status(family, model_key), model_key, version, timeout, progress, self.timeout
        )


class AsyncModelClient(_Registry):
    """The same API as `ModelClient`, awaited, on one `aiohttp.ClientSession`.

        async with AsyncModelClient("http://localhost:8080") as client:
            state = await client.fit("linreg", x, y)
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0, format: str = "parquet") -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.format = _check_format(format)
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=_headers(self._token), timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    async def _do(self, call: Call) -> Any:
        async with self._http().request(
            call.method, self.base_url + call.path, params=call.params, data=call.body, headers=call.headers
        ) as response:
            body = await response.read()
        if response.status >= 400:
            raise error_from(response.status, body)
        if len(body) > 256 * 1024:
            return await asyncio.to_thread(call.read, body)
        return call.read(body)

    async def fit(
        self,
        family: str,
        x: Data,
        y: Data | None = None,
        *,
        name: str | None = None,
        modkwargs: dict[str, Any] | None = None,
        algkwargs: dict[str, Any] | None = None,
        retrain: bool = False,
        backend: str | None = None,
        wait: bool = True,
        wait_timeout: float | None = 3600.0,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        call = await asyncio.to_thread(
            _wire.fit, self.format, family, x, y,
            name=name, modkwargs=modkwargs, algkwargs=algkwargs, retrain=retrain, backend=backend,
        )
        accepted = await self._do(call)
        if not wait:
            return cast("dict[str, Any]", accepted)
        return await self.wait(family, accepted["model_key"], accepted["version"], timeout=wait_timeout, progress=progress)

    async def update(
        self,
        family: str,
        model_key: str,
        x: Data,
        y: Data | None = None,
        *,
        wait: bool = True,
        wait_timeout: float | None = 3600.0,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        call = await asyncio.to_thread(_wire.update, self.format, model_key, x, y)
        accepted = await self._do(call)
        if not wait:
            return cast("dict[str, Any]", accepted)
        return await self.wait(family, model_key, accepted["version"], timeout=wait_timeout, progress=progress)

    async def predict(
        self,
        family: str,
        model_key: str,
        x: Data,
        *,
        method: str = "predict",
        version: int | None = None,
        alias: str | None = None,
        **kwargs: Any,
    ) -> pd.DataFrame:
        arguments = kwargs if method == "predict" else {"method": method, **kwargs}
        call = _wire.predict(self.format, model_key, x, version=version, kwargs=arguments, alias=alias)
        return cast("pd.DataFrame", await self._do(call))

    async def infer(self, model: str, x: Data, *, version: int | str | None = None, method: str = "predict") -> pd.DataFrame:
        """`ModelClient.infer`: the predict over the Open Inference Protocol."""
        call = await asyncio.to_thread(_v2.infer, model, x, version=version, method=method)
        result: pd.DataFrame = await self._do(call)
        return result

    async def status(self, family: str, model_key: str) -> dict[str, Any]:
        return cast("dict[str, Any]", await self._do(_wire.status(model_key, family)))

    async def delete(self, family: str, model_key: str) -> dict[str, Any]:
        return cast("dict[str, Any]", await self._do(_wire.delete(model_key)))

    async def versions(self, model_key: str, **filters: Any) -> dict[str, Any]:
        return cast("dict[str, Any]", await self._do(_wire.versions(model_key, filters)))

    async def scores(self, model_key: str, **filters: Any) -> pd.DataFrame:
        return _wire.scores_frame(await self._do(_wire.versions(model_key, filters)))

    async def models(self, **filters: Any) -> dict[str, Any]:
        return cast("dict[str, Any]", await self._do(_wire.models(filters)))

    async def families(self) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", await self._do(_wire.families()))

    async def wait(
        self,
        family: str,
        model_key: str,
        version: int | None = None,
        timeout: float | None = 3600.0,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        return await waiting.wait_async(
            self._http(), self.base_url, lambda: self.status(family, model_key), model_key, version, timeout, progress, self.timeout
        )
