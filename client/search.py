"""`ModelClient.search`: a hyperparameter search run by the server, waited on with a progress bar."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm import tqdm

from . import _wire

if TYPE_CHECKING:
    from .models import ModelClient

# Searches end in one of these states.
FINISHED = frozenset({"done", "failed", "cancelled"})
POLL_SECONDS = 0.5


class SearchFailed(RuntimeError):
    """The search ended failed or cancelled; `.search` is its last state."""

    def __init__(self, message: str, search: dict[str, Any]) -> None:
        super().__init__(message)
        self.search = search


def run(
    client: ModelClient,
    family: str,
    x: Any,
    y: Any,
    fields: dict[str, Any],
    wait: bool,
    timeout: float | None,
    progress: bool | None,
) -> pd.DataFrame:
    accepted = client._do(_wire.search(client.format, family, x, y, fields))
    if not wait:
        return _wire.leaderboard_frame(client._do(_wire.search_status(accepted["id"])))
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = tqdm(total=accepted["total"], desc=f"search {accepted['id']}", unit="candidate", disable=None if progress is None else not progress)
    try:
        while True:
            state = client._do(_wire.search_status(accepted["id"]))
            bar.n = state["finished"]
            best = state["best"]
            bar.set_postfix_str(f"{state['state']}" + (f", best {best['mean_test_score']:.4f}" if best and best["mean_test_score"] is not None else ""))
            if state["state"] in FINISHED:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"search {accepted['id']} still {state['state']} after {timeout}s")
            time.sleep(POLL_SECONDS)
    finally:
        bar.close()
    if state["state"] != "done":
        raise SearchFailed(f"search {state['id']} {state['state']}: {state['error']}", state)
    return _wire.leaderboard_frame(state)
