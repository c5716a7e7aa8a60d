"""Imported models predict in processes of their own, under a deadline that is enforced.

A model trained elsewhere passed the import's checks, but no check proves
that its predict ends: a tree whose nodes loop, a graph that runs for hours.
So a consumer never runs an imported model's predict itself. It hands the
request (its checked Parquet) to one of a few predict processes (`PredictProcesses`),
forked like fit processes from the forkserver that already imported
scikit-learn, and waits at most `deadline` seconds. A predict that outlives
it is stopped with its process (SIGKILL; the next predict starts a fresh one)
and answered with a 504 naming the model; the consumer's event loop, its
other families and the built-in models (which predict in the consumer itself,
at no extra cost) never wait for it.

Each predict process keeps the models it loaded (`_MODELS`, a small LRU), so
an artifact crosses the process boundary once per process, not per predict;
the request's Parquet and the answer's Parquet are what cross it each time.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import multiprocessing
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from contracts.columns import InputSchema
from contracts.errors import DeadlineExceeded, MLServerError
from contracts.frames import ParquetCodec, check_table

from . import backends, pool
from .cache import Loaded
from .families import load_family

log = logging.getLogger(__name__)

# Models one predict process keeps loaded.
MODELS_PER_PROCESS = 16

_MODELS: OrderedDict[tuple[str, int], Loaded] = OrderedDict()


class NotLoaded(Exception):
    """The predict process does not hold this model (it was started since, or dropped it): send the artifact."""


class ModelCrashed(MLServerError):
    """An imported model's predict killed its process."""


def predict_isolated(
    spec: str,
    cache_key: tuple[str, int],
    artifact: bytes | None,
    backend: str,
    key: bytes,
    meta: dict[str, Any],
    version: int,
    body: bytes,
    method: str,
    kwargs: dict[str, Any],
) -> bytes:
    """In a predict process: load the model unless it is held already (`artifact` None: it should be), predict, answer Parquet."""
    from .runtime import predict_table  # the consumer's own predict, run here

    family = load_family(spec)
    loaded = _MODELS.get(cache_key)
    if loaded is None:
        if artifact is None:
            raise NotLoaded()
        estimator = backends.load(artifact, key, backend, trusted=family.trusted(), versions=meta.get("versions"))
        schema = InputSchema.from_list(meta["schema"]) if "schema" in meta else None
        loaded = Loaded(estimator, meta, version, backend, schema)
        _MODELS[cache_key] = loaded
        while len(_MODELS) > MODELS_PER_PROCESS:
            _MODELS.popitem(last=False)
    _MODELS.move_to_end(cache_key)
    table = check_table(ParquetCodec.decode_table(body))
    return predict_table(family, loaded, table, method, kwargs)


def _started() -> int:
    return os.getpid()


class _Slot:
    """One predict process and the models it holds (as far as the consumer knows)."""

    def __init__(self) -> None:
        self.executor: ProcessPoolExecutor | None = None
        self.pid: int | None = None
        self.holds: set[tuple[str, int]] = set()

    def kill(self) -> int | None:
        """Stop the process (whatever it is doing); the next predict on this slot starts a fresh one."""
        executor, pid = self.executor, self.pid
        self.executor, self.pid = None, None
        self.holds.clear()
        if executor is not None:
            pool.FitPool._kill(executor)
        return pid


class PredictProcesses:
    """`size` predict processes of one consumer, started on demand, for imported models."""

    def __init__(self, size: int, deadline: float, modules: list[str]) -> None:
        self.deadline = deadline
        self.modules = modules
        self._slots = [_Slot() for _ in range(max(1, size))]
        self._free: asyncio.Queue[_Slot] | None = None

    def pids(self) -> list[int]:
        return [s.pid for s in self._slots if s.pid is not None]

    async def predict(
        self, spec: str, cache_key: tuple[str, int], loaded: Loaded, key: bytes, body: bytes, method: str, kwargs: dict[str, Any], what: str
    ) -> bytes:
        """Predict with `loaded` (an imported model: its artifact, not an estimator) in a predict process;
        DeadlineExceeded naming `what` (the model) when it does not answer within the deadline."""
        if self._free is None:
            self._free = asyncio.Queue()
            for slot in self._slots:
                self._free.put_nowait(slot)
        slot = await self._free.get()
        try:
            return await self._run(slot, spec, cache_key, loaded, key, body, method, kwargs, what)
        finally:
            self._free.put_nowait(slot)

    async def _run(
        self, slot: _Slot, spec: str, cache_key: tuple[str, int], loaded: Loaded, key: bytes, body: bytes, method: str, kwargs: dict[str, Any], what: str
    ) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline
        send = None if cache_key in slot.holds else loaded.artifact
        while True:
            executor = await self._ready(slot)
            future = executor.submit(
                predict_isolated, spec, cache_key, send, loaded.backend, key, loaded.meta, loaded.version, body, method, kwargs
            )
            try:
                answer = await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - loop.time()))
            except NotLoaded:
                slot.holds.discard(cache_key)
                send = loaded.artifact
                continue
            except (asyncio.TimeoutError, TimeoutError):
                pid = slot.kill()
                log.warning("%s: predict ran past the %gs deadline; its process %s was killed", what, self.deadline, pid)
                raise DeadlineExceeded(
                    f"{what}: the predict did not finish within the {self.deadline:g} s deadline "
                    "(ML_SERVER_PREDICT_DEADLINE); it was stopped",
                    fields={"model_key": [f"predict exceeded the {self.deadline:g} s deadline"]},
                ) from None
            except BrokenProcessPool:
                pid = slot.kill()
                log.error("%s: the predict process %s died", what, pid)
                raise ModelCrashed(f"{what}: the predict process died while this model predicted") from None
            slot.holds.add(cache_key)
            return answer

    async def _ready(self, slot: _Slot) -> ProcessPoolExecutor:
        if slot.executor is not None:
            return slot.executor
        # In a context of its own: the start belongs to no request (its log line carries no model key).
        started, slot.pid = await asyncio.create_task(self._start(), context=contextvars.Context())
        slot.executor = started
        return started

    async def _start(self) -> tuple[ProcessPoolExecutor, int]:
        executor = await asyncio.to_thread(self._new)
        pid = await asyncio.wrap_future(await asyncio.to_thread(executor.submit, _started))
        log.info("predict process %s started for imported models", pid)
        return executor, pid

    def _new(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(self.modules)
        return ProcessPoolExecutor(1, mp_context=context, initializer=pool.init_child, initargs=(os.getpid(),))

    def close(self) -> None:
        for slot in self._slots:
            slot.kill()
