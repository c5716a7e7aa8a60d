"""The tests' gateway and consumer processes, forked from one that imported ml-server once.

The integration tests start about two hundred gateway and consumer processes.
Started as `python -m consumers ...`, a consumer spends about 2 s of CPU on
the interpreter start and on importing scikit-learn, pandas and aio-pika
before it connects to anything; the gateway about 1 s. On a 2-core machine
that is a third of the suite's CPU, and every test waits for it.

So each pytest worker starts one `python -m tests.zygote`, which imports the
gateway's and the consumer's modules and the built-in families' estimators,
then forks a process per request. The forked process runs `python -m MODULE
ARGS` as the interpreter does (`runpy`, as `__main__`), with the test's own
environment, working directory and log file, and exits as the interpreter
does (threads joined, `atexit` handlers run). What runs is the code users run,
from the same entry point, against the real broker and database: only the
interpreter start and the imports are skipped. It is what a consumer does for
its own fit processes (`consumers.pool.fork_server`). The start users make,
`ml-server run`, the console scripts and compose's commands, is tested as
users make it (tests/test_run.py, tests/test_cli.py, tests/test_compose.py).

The server is single-threaded (a fork is only safe from a process with one
thread): it waits on its socket and on a pidfd per child, forks on request,
and reports each child's exit status. The test side (`Zygote`) hands out
`Forked` processes, which answer what the tests ask of a `subprocess.Popen`.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# What the forked processes run, imported before the first fork (with the built-in families' estimators).
PRELOAD = ("gateway.__main__", "consumers.__main__", "tests.families_for_tests")


# ---- the server: `python -m tests.zygote FD` -------------------------------------


def _preload() -> None:
    from consumers import pool
    from consumers.families import BUILTIN, load_family

    for module in [*PRELOAD, *pool.preload(load_family(name) for name in BUILTIN)]:
        importlib.import_module(module)
    for main in ("gateway.__main__", "consumers.__main__"):  # what they import stays; runpy runs them afresh
        del sys.modules[main]


def _run(request: dict[str, Any]) -> None:
    """In the forked process: `python -m MODULE ARGS`, then exit as the interpreter would. Never returns."""
    import runpy

    code = 1
    try:
        out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["module"], *request["args"]]
        if "numpy" in sys.modules:  # a new interpreter seeds NumPy's global generator afresh
            sys.modules["numpy"].random.seed()
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
    try:  # the interpreter's own exit: wait for non-daemon threads, then the atexit handlers
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        if code < 0:  # died of a signal, as an uncaught KeyboardInterrupt makes the interpreter do
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)


def serve(sock: socket.socket) -> None:
    _preload()
    children: dict[int, int] = {}  # pidfd -> pid
    pending = b""

    def send(message: dict[str, Any]) -> None:
        sock.sendall(json.dumps(message).encode() + b"\n")

    while True:
        readable, _, _ = select.select([sock.fileno(), *children], [], [])
        for fd in readable:
            if fd in children:
                pid = children.pop(fd)
                os.close(fd)
                # Said before it is reaped: a test that has not read this yet signals a zombie, never another process.
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                assert info is not None
                send({"exit": pid, "code": info.si_status if info.si_code == os.CLD_EXITED else -info.si_status})
                os.waitpid(pid, 0)
                continue
            data = sock.recv(1 << 16)
            if not data:
                return  # the test process is gone
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    sock.close()
                    for pidfd in children:
                        os.close(pidfd)
                    _run(request)
                children[os.pidfd_open(pid)] = pid
                send({"pid": pid, "id": request["id"]})


# ---- the test side ----------------------------------------------------------------


class Zygote:
    """A `python -m tests.zygote` of this test process: forks gateways and consumers on request."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.zygote", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        theirs.close()
        self._sock = ours
        self._lock = threading.Lock()
        self._pending = b""
        self._started: dict[int, int] = {}  # request id -> pid
        self._exits: dict[int, int] = {}  # pid -> exit code, as Popen.returncode
        self._requests = 0

    def spawn(self, module: str, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Forked:
        """Fork `python -m module *args`, its output to `log`."""
        with self._lock:
            self._requests += 1
            request = self._requests
            message = {"id": request, "module": module, "args": args, "env": env, "cwd": str(cwd), "log": str(log)}
            self._sock.sendall(json.dumps(message).encode() + b"\n")
            deadline = time.monotonic() + 120  # the first request waits for the imports
            while request not in self._started:
                if time.monotonic() > deadline:
                    raise TimeoutError("the test zygote did not fork in 120 s")
                self._read(1.0)
            return Forked(self, self._started.pop(request), [module, *args])

    def exit_code(self, pid: int, timeout: float | None = 0.0) -> int | None:
        """The exit code of a forked process (Popen's convention: -N for signal N), or None while it runs.

        `timeout`: how long to wait for it (None: for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while pid not in self._exits:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self._read(left) and left == 0:
                    break
            return self._exits.get(pid)

    def _read(self, timeout: float | None) -> bool:
        """Read what the server said within `timeout` seconds, if anything (the caller holds the lock)."""
        readable, _, _ = select.select([self._sock], [], [], timeout)
        if not readable:
            return False
        data = self._sock.recv(1 << 16)
        if not data:
            raise RuntimeError(f"the test zygote exited with {self.process.wait()}")
        self._pending += data
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            message = json.loads(line)
            if "exit" in message:
                self._exits[message["exit"]] = message["code"]
            else:
                self._started[message["id"]] = message["pid"]
        return True


class Forked:
    """A process forked by the zygote, with what the tests use of `subprocess.Popen`."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str]) -> None:
        self.zygote = zygote
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # not reported gone, so not reaped: the pid is still this process's
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<Forked pid={self.pid} returncode={self.returncode} args={self.args}>"


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


def zygote() -> Zygote:
    """This test process's zygote, started on first use."""
    global _zygote
    with _zygote_lock:
        if _zygote is None or _zygote.process.poll() is not None:
            _zygote = Zygote()
        return _zygote


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
