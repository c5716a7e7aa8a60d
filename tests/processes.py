"""The processes below a consumer, read from /proc: its forkserver and fit processes.

A consumer forks its forkserver from itself at start (same command line), so
the processes below it are told apart by their parents, not their names: the
resource tracker is multiprocessing's own interpreter, everything else is the
forkserver (the consumer's child) or a fit process (the forkserver's child)."""

from __future__ import annotations

from pathlib import Path


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def parent(pid: int) -> int | None:
    st = _stat(pid)
    return st[1] if st is not None else None


def descendants(pid: int) -> dict[int, str]:
    """pid -> command line of every live process below `pid`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[1], []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        todo.extend(children.get(child, []))
    return found


def running(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def fit_processes(below: dict[int, str]) -> list[int]:
    """The forkserver and the fit processes forked from it, among `descendants(...)`."""
    return [pid for pid, cmd in below.items() if "multiprocessing.resource_tracker" not in cmd]


def forked_fits(consumer: int, below: dict[int, str]) -> list[int]:
    """The fit processes alone (children of the consumer's forkserver), among `descendants(consumer)`."""
    servers = {pid for pid in fit_processes(below) if parent(pid) == consumer}
    return [pid for pid in below if parent(pid) in servers]
