"""Hyperparameter searches run by the server, through the real stack, on the Palmer penguins.

The leaderboard's mean fold scores are `GridSearchCV`'s on the same pipeline, grid and folds; the
winner is refitted as a new version of the named model and given the alias; a cancelled search
stops queueing its candidates and refits nothing.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pytest
import requests
from palmerpenguins import load_penguins
from sklearn.model_selection import GridSearchCV

from client import ModelClient
from client.search import SearchFailed
from consumers import preprocess
from consumers.families import BUILTIN
from contracts.columns import conform, infer

from .stack import Stack

pytestmark = [pytest.mark.integration]


def wait_for(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {what} within {seconds}s")


def test_a_search_ranks_like_grid_search_cv_and_refits_the_winner(stack: Stack) -> None:
    df = load_penguins()
    x, y = df.drop(columns=["species"]), df["species"]
    grid = {"C": [0.001, 0.01, 1.0], "fit_intercept": [True, False]}
    name = f"search-logreg-{stack.namespace}"
    client = ModelClient(stack.url)
    board = client.search("logreg", x, y, name=name, param_grid=grid, cv=5, scoring="balanced_accuracy", alias="best", progress=False)
    search = board.attrs["search"]
    assert search["state"] == "done" and search["total"] == 6 == len(board) and search["finished"] == 6

    schema = infer(x)
    model = preprocess.model_for(BUILTIN["logreg"], schema, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = GridSearchCV(model, {f"estimator__{k}": v for k, v in grid.items()}, cv=5, scoring="balanced_accuracy")
        reference.fit(conform(x, schema), y)
    results = reference.cv_results_
    for i, params in enumerate(results["params"]):
        row = board[board["params"].map(lambda p: p == {k.removeprefix("estimator__"): v for k, v in params.items()})]
        assert len(row) == 1, params
        assert row["mean_test_score"].iloc[0] == pytest.approx(results["mean_test_score"][i], abs=1e-9)
        assert row["std_test_score"].iloc[0] == pytest.approx(results["std_test_score"][i], abs=1e-9)
        assert row["rank_test_score"].iloc[0] == results["rank_test_score"][i]
        np.testing.assert_allclose(row[[f"split{k}_test_score" for k in range(5)]].to_numpy()[0], [results[f"split{k}_test_score"][i] for k in range(5)], atol=1e-9)
    assert board["mean_test_score"].is_monotonic_decreasing
    winner = {k.removeprefix("estimator__"): v for k, v in reference.best_params_.items()}
    assert board["params"].iloc[0] == winner

    # The winner, fitted on every row, is a new version of the named model, with the alias and the same folds' scores.
    model_state = client.model(search["model_key"])
    assert model_state["name"] == name and model_state["aliases"] == {"best": search["version"]}
    version = client.versions(search["model_key"])["versions"][0]
    assert version["params"]["modkwargs"]["C"] == winner["C"]
    assert version["scores"]["metrics"]["balanced_accuracy"] == pytest.approx(reference.best_score_, abs=1e-9)
    rows = x.iloc[::17]
    expected = reference.best_estimator_.predict(conform(rows, schema))
    np.testing.assert_array_equal(client.predict("logreg", search["model_key"], rows, alias="best")["species"].to_numpy(), expected)


def test_a_search_is_checked_before_anything_is_queued(stack: Stack) -> None:
    df = load_penguins()
    x, y = df.drop(columns=["species"]), df["species"]
    url = f"{stack.url}/families/logreg/searches"
    body = {"x": x.to_json(), "y": y.to_frame().to_json(), "name": "refused"}
    for extra, field in (
        ({}, "param_grid"),
        ({"param_grid": {"C": 1.0}}, "param_grid"),
        ({"param_grid": {"colour": ["blue"]}}, "modkwargs"),
        ({"param_grid": {"C": [1.0]}, "cv": 1}, "cv"),
    ):
        r = requests.post(url, json={**body, **extra}, timeout=30)
        assert r.status_code == 422, r.text
        assert field in r.json()["error"]["message"] or field in (r.json()["error"].get("fields") or {}), r.text
    assert requests.get(f"{stack.url}/searches/999999", timeout=10).status_code == 404


def test_a_cancelled_search_drops_its_queued_candidates_and_refits_nothing(stack: Stack) -> None:
    df = load_penguins()
    x, y = df.drop(columns=["species"]), df["species"]
    name = f"search-cancel-{stack.namespace}"
    grid = {"hidden_layer_sizes": [[50], [60], [70], [80]], "alpha": [0.0001, 0.001, 0.01, 0.1]}
    client = ModelClient(stack.url)
    started = client.search("nn", x, y, name=name, param_grid=grid, modkwargs={"max_iter": 400, "random_state": 0}, wait=False)
    search_id = started.attrs["search"]["id"]
    cancelled = client.cancel_search(search_id)
    assert cancelled["state"] == "cancelled" and cancelled["total"] == 16

    def ended() -> dict[str, Any] | None:
        state = requests.get(f"{stack.url}/searches/{search_id}", timeout=10).json()
        return state if all(c["status"] in ("done", "failed") for c in state["leaderboard"]) else None

    state = ended() or wait_for(ended, 120, "candidate still queued or running")
    dropped = [c for c in state["leaderboard"] if c["status"] == "failed"]
    assert dropped and all("cancelled" in c["error"] for c in dropped)
    assert state["state"] == "cancelled" and state["model_key"] is None
    # Nothing refitted: no model of that name.
    assert not client.models(name=name)["models"]
    # Dropped candidates stay dropped: their queued jobs were acked without a fit.
    again = requests.get(f"{stack.url}/searches/{search_id}", timeout=10).json()
    assert [c["status"] for c in again["leaderboard"]] == [c["status"] for c in state["leaderboard"]]
    with pytest.raises(SearchFailed):
        few = [0, 1, 2, 3, 4, 5, 200, 201, 202, 203, 204, 205]  # more folds than rows: every candidate fails
        client.search("nn", x.iloc[few], y.iloc[few], name=f"{name}-few", param_grid={"alpha": [0.1]}, cv=20, progress=False)


def test_candidates_run_on_two_consumers_at_once_and_a_consumer_killed_mid_search_loses_none(fresh_stack: Stack) -> None:
    stack = fresh_stack
    first = stack.start_consumer("nn", wait=False)
    second = stack.start_consumer("nn", wait=False)
    stack.start_gateway()
    stack.wait_consumers("nn", count=2)
    df = load_penguins()
    x, y = df.drop(columns=["species"]), df["species"]
    # Slow enough candidates (every iteration run) that both consumers hold one at the same time.
    slow = {"max_iter": 600, "tol": 0.0, "n_iter_no_change": 10_000, "random_state": 0}
    client = ModelClient(stack.url)
    started = client.search("nn", x, y, name="two-consumers", param_grid={"alpha": [0.0001, 0.001, 0.01, 0.1]}, cv=3, modkwargs=slow, wait=False)
    search_id = started.attrs["search"]["id"]

    def two_running() -> list[dict[str, Any]] | None:
        board = requests.get(f"{stack.url}/searches/{search_id}", timeout=10).json()["leaderboard"]
        running = [c for c in board if c["status"] == "running" and c["worker"]]
        return running if len({c["worker"] for c in running}) == 2 else None

    running = wait_for(two_running, 240, "two candidates running on two consumers at once")
    pids = {int(c["worker"].rsplit(":", 1)[1]): c["version"] for c in running}
    assert set(pids) == {first.pid, second.pid}
    stack.kill(first)  # mid-fit: its candidate goes back to the queue and to the other consumer
    lost = pids[first.pid]

    def finished() -> dict[str, Any] | None:
        state = requests.get(f"{stack.url}/searches/{search_id}", timeout=10).json()
        return state if state["state"] in ("done", "failed", "cancelled") else None

    state = wait_for(finished, 600, "the search finished")
    assert state["state"] == "done", state
    assert [c["status"] for c in state["leaderboard"]] == ["done"] * 4
    redone = next(c for c in state["leaderboard"] if c["version"] == lost)
    assert redone["worker"].endswith(f":{second.pid}") and len(redone["split_test_scores"]) == 3
    assert client.versions(state["model_key"])["versions"][0]["status"] == "done"
