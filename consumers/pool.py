"""The fit processes of one consumer process, shared by the families it serves.

A CPU-bound fit on the event loop (or in a thread, under the GIL) starves
aio-pika's heartbeats and the broker drops the connection, so every fit runs
in a process of its own. Those processes are forked from a multiprocessing
forkserver that imported scikit-learn and the families' estimators once,
so a new one costs a fork, not an interpreter start; each runs one fit and
exits (`max_tasks_per_child=1`), so nothing a fit allocated outlives it.

The forkserver is forked from the consumer itself at start (`fork_server`),
after the consumer has imported what fits need and before it starts any
thread or event loop: it costs a fork, not an interpreter start that imports
scikit-learn again, and it shares the consumer's memory pages until either
writes to them. Where that is not possible, multiprocessing starts its own
forkserver with the first fit. Fit processes start with the first fit (or at
once with `warm`). A fit process dies with its consumer, however the
consumer ends (`die_with`), and the forkserver exits once the consumer and
every fit process are gone.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
import multiprocessing
import os
import select
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .families import Family

log = logging.getLogger(__name__)

T = TypeVar("T")

# Imported by the forkserver before it forks any fit process, besides the families' own modules: what a
# fit, an update and an import run (not the consumer's transport: aio-pika, the store, the event loop).
PRELOAD = ("consumers.pool", "consumers.jobs", "consumers.imports")


_consumer: int | None = None


def consumer_pid() -> int:
    """In a fit process: the pid of the consumer process it fits for."""
    assert _consumer is not None, "not a fit process"
    return _consumer


def init_child(consumer: int) -> None:
    """A fit process's first act: die with the consumer, leave Ctrl-C to it, stay quiet."""
    global _consumer
    _consumer = consumer
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with(consumer)
    warnings.simplefilter("ignore")  # sklearn's convergence chatter is not an error


def die_with(pid: int) -> None:
    """SIGKILL this process as soon as process `pid` exits, however it exits.

    A fit process's parent is the forkserver, which itself only exits once
    every fit process has (they hold its "alive" pipe), so the kernel's
    parent-death signal can't be used: a thread waits on a pidfd of the consumer."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)  # gone already

    def watch() -> None:
        select.select([fd], [], [])  # readable once the process has exited
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name=f"die-with-{pid}", daemon=True).start()


def preload(families: Iterable[Family]) -> list[str]:
    """What the forkserver imports before it forks fit processes: PRELOAD and the modules of `families`."""
    return list(dict.fromkeys([*PRELOAD, *(m for family in families for m in family.modules)]))


def fork_server(families: Iterable[Family]) -> int | None:
    """Fork multiprocessing's forkserver from this process, once what fits of `families` need is imported; its pid.

    Call it while the process has no thread but the main one (before any
    event loop, executor or database connection): the forkserver and every
    fit process forked from it start from a copy of this process. Returns
    None, leaving multiprocessing to start its forkserver itself at the first
    fit, where this Python's forkserver is not the one this code knows
    (3.11 to 3.13; 3.14 adds an authentication handshake)."""
    from multiprocessing import connection, forkserver, resource_tracker, util

    server: Any = getattr(forkserver, "_forkserver", None)
    known = ("_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid", "_lock")
    if sys.version_info >= (3, 14) or server is None or not all(hasattr(server, a) for a in known):
        return None
    for module in preload(families):
        try:
            importlib.import_module(module)
        except ImportError:  # as multiprocessing's own preload: the fit that needs it will say why
            pass
    with server._lock:
        if server._forkserver_pid is not None:
            return int(server._forkserver_pid)
        resource_tracker.ensure_running()
        with socket.socket(socket.AF_UNIX) as listener:
            address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
            listener.bind(address)
            if not util.is_abstract_socket_namespace(address):
                os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()  # every client holds the write end: EOF once all are gone
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    os.close(alive_w)
                    forkserver.main(listener.fileno(), alive_r, [])
                except SystemExit:
                    pass
                except BaseException:  # noqa: BLE001 - the forkserver must never return into the consumer's code
                    code = 1
                finally:
                    os._exit(code)
            os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
    return pid


def started() -> int:
    """A no-op job that starts one fit process (and the forkserver, if none runs yet); its pid."""
    return os.getpid()


class FitPool:
    def __init__(self, size: int, families: Iterable[Family] = (), warm: bool = False) -> None:
        self.size = max(1, size)
        self.modules = preload(families)
        self.warm = warm
        self._executor: ProcessPoolExecutor | None = None
        self._starting: asyncio.Lock | None = None
        self._warming: asyncio.Task[ProcessPoolExecutor] | None = None

    @property
    def running(self) -> bool:
        return self._executor is not None

    def start(self) -> None:
        """Kept warm: fork the first fit process now, in the background (the consumer does not wait
        for it; it also starts the forkserver, where `fork_server` could not); otherwise the first
        fit does."""
        if self.warm:
            self._warming = asyncio.create_task(self._ready(), context=contextvars.Context())

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a fit process of its own. BrokenProcessPool when that process died."""
        executor = await self._ready()
        # Forking (and, the first time, waiting for the forkserver's imports) blocks: not on the loop.
        future = await asyncio.to_thread(executor.submit, fn, *args)
        return await asyncio.wrap_future(future)

    def broken(self) -> None:
        """A fit process died and the executor with it: the next fit starts a fresh one."""
        old, self._executor = self._executor, None
        if old is not None:
            self._kill(old)

    def pids(self) -> list[int]:
        executor = self._executor
        return [p.pid for p in (getattr(executor, "_processes", None) or {}).values() if p.pid] if executor else []

    def close(self) -> None:
        """Kill the fit processes: a fit in progress is abandoned, and its job will be redelivered."""
        old, self._executor = self._executor, None
        if old is not None:
            self._kill(old)

    async def _ready(self) -> ProcessPoolExecutor:
        if self._executor is not None:
            return self._executor
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._executor is None:
                # In a context of its own: the start belongs to no job (its log line carries no model key).
                self._executor = await asyncio.create_task(self._start(), context=contextvars.Context())
            return self._executor

    async def _start(self) -> ProcessPoolExecutor:
        executor = await asyncio.to_thread(self._new)
        pid = await asyncio.wrap_future(await asyncio.to_thread(executor.submit, started))
        log.info("fit processes ready (first pid %s, at most %d at once)", pid, self.size)
        return executor

    def _new(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(self.modules)
        return ProcessPoolExecutor(
            self.size, mp_context=context, initializer=init_child, initargs=(os.getpid(),), max_tasks_per_child=1
        )

    @staticmethod
    def _kill(executor: ProcessPoolExecutor) -> None:
        children = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for proc in children:
            try:
                proc.kill()
            except (OSError, ValueError):  # already gone, or closed
                pass
