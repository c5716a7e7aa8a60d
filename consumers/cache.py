"""Loaded estimators, kept in memory so no predict deserializes a model.

For an ONNX artifact the cached estimator is an `onnx_models.OnnxModel`, which
holds its onnxruntime `InferenceSession`: built once per cache miss, never per
request.

Keyed by model key and training session id; session ids are never reused,
so a model deleted and fitted again under the same key gets new sessions,
never a stale hit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from contracts.columns import InputSchema

from . import preprocess
from .metrics import CACHE_LOOKUPS


@dataclass
class Loaded:
    estimator: Any  # the model: its preprocessing and estimator (an OnnxModel for ONNX artifacts)
    meta: dict[str, Any]
    version: int
    backend: str = "joblib"
    schema: InputSchema | None = None  # None: a version stored before input schemas were recorded
    # An imported model's stored bytes: it is loaded and run in a predict process (`sandbox`), never here.
    artifact: bytes | None = None
    session_id: int = 0

    @property
    def isolated(self) -> bool:
        return self.artifact is not None

    @property
    def array_ready(self) -> bool:
        """Complete numeric rows may go straight to the estimator (see `preprocess.array_ready`)."""
        return bool(self.meta.get("array_ready", self.schema is None))

    @cached_property
    def array_model(self) -> Any:
        """What complete numeric rows go through when `array_ready`: the model after its imputer."""
        return preprocess.after_imputer(self.estimator)


class ModelCache:
    def __init__(self, size: int = 64, family: str = "") -> None:
        self.size = size
        self._hit, self._miss = CACHE_LOOKUPS.labels(family, "hit"), CACHE_LOOKUPS.labels(family, "miss")
        self._items: OrderedDict[tuple[str, int], Loaded] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int]) -> Loaded | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            self._miss.inc()
            return None
        self.hits += 1
        self._hit.inc()
        self._items.move_to_end(key)
        return item

    def put(self, key: tuple[str, int], item: Loaded) -> None:
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def drop(self, model_key: str) -> int:
        """Forget every loaded version of a model."""
        stale = [k for k in self._items if k[0] == model_key]
        for k in stale:
            del self._items[k]
        return len(stale)

    def __len__(self) -> int:
        return len(self._items)


class Resolutions:
    """Which stored version answers for (model_key, version, alias; or the model's default): no SQL on the predict path.

    Dropped for a model when its status events say it was deleted or has a new
    version; entries also expire after `ttl` seconds, in case an event is missed.
    """

    def __init__(self, ttl: float = 5.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._items: dict[tuple[str, int | None, str | None], tuple[float, Any]] = {}

    def get(self, key: tuple[str, int | None, str | None]) -> Any | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, key: tuple[str, int | None, str | None], value: Any) -> None:
        if len(self._items) >= self.size:
            self._items.clear()
        self._items[key] = (time.monotonic() + self.ttl, value)

    def drop(self, model_key: str) -> None:
        for key in [k for k in self._items if k[0] == model_key]:
            del self._items[key]
