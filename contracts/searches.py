"""Hyperparameter searches: the request, the answer, and the leaderboard made of the candidates' versions.

A search is a set of fits: each candidate (one set of parameters) is a version
of the search's own candidates model, fitted as any fit is (a job on the
family's train queue) with `evaluation: {"cv": cv, "scoring": scoring}`, so its
fold scores are recorded like every version's. The leaderboard reads them
back; the best candidate is then fitted again as a new version of the model
`name` (and given `alias`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from .schemas import ALIAS_NAME, NAME_LENGTH, POSITIVE_ID, FitParams, Frame, JsonDict, Text, _decode_frames
from .status import Status

# Most candidates one search may have (a grid's product, or n_iter).
MAX_CANDIDATES = 1000
# The evaluation `scoring` that ranks candidates when none is asked for: the estimator's own `score`
# (accuracy for classifiers, R² for regressors, minus the inertia for k-means), as GridSearchCV does.
OWN_SCORE = "score"


class SearchState(StrEnum):
    RUNNING = "running"  # candidates queued or fitting
    REFITTING = "refitting"  # the best candidate fitted on all the rows as a new version of `name`
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({SearchState.DONE, SearchState.FAILED, SearchState.CANCELLED})


class SearchParams(FitParams):
    """What a search is asked with: a fit's fields (`retrain` has no meaning here) and the search's own."""

    name = Text(required=True, validate=NAME_LENGTH)
    param_grid = JsonDict(load_default=None, allow_none=True)
    param_distributions = JsonDict(load_default=None, allow_none=True)
    n_iter = fields.Integer(load_default=10, validate=validate.Range(min=1, max=MAX_CANDIDATES))
    seed = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**32 - 1))
    cv = fields.Integer(load_default=5, validate=validate.Range(min=2, max=100))
    scoring = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$"))
    alias = fields.String(load_default=None, allow_none=True, validate=ALIAS_NAME)

    @validates_schema
    def one_space(self, data: dict[str, Any], **_: Any) -> None:
        grid, dists = data.get("param_grid"), data.get("param_distributions")
        if (grid is None) == (dists is None):
            raise ValidationError("give param_grid or param_distributions (with n_iter and seed)", "param_grid")
        space = grid if grid is not None else dists
        field = "param_grid" if grid is not None else "param_distributions"
        assert space is not None
        if not space:
            raise ValidationError("at least one parameter", field)
        for key, values in space.items():
            if not isinstance(values, list) or not values:
                raise ValidationError(f"{key}: a non-empty list of values", field)
        size = math.prod(len(v) for v in space.values())
        if grid is not None and size > MAX_CANDIDATES:
            raise ValidationError(f"{size} candidates: at most {MAX_CANDIDATES}", field)


class SearchRequest(SearchParams):
    x = Frame(required=True)
    y = Frame(load_default=None, allow_none=True)

    @post_load
    def frames(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return _decode_frames(data, ("x", "y"))


class SearchQuery(Schema):
    id = fields.Integer(required=True, validate=POSITIVE_ID)


class CandidateResponse(Schema):
    rank = fields.Integer(allow_none=True, metadata={"description": "1 is best (ties share a rank); null until scored"})
    params = fields.Dict(metadata={"description": "the candidate's parameters, named as in modkwargs"})
    mean_test_score = fields.Float(allow_none=True)
    std_test_score = fields.Float(allow_none=True)
    split_test_scores = fields.List(fields.Float(allow_none=True))
    mean_fit_time = fields.Float(allow_none=True, metadata={"description": "seconds per fold fit"})
    status = fields.String(metadata={"description": "the candidate's fit: queued, running, done, failed"})
    version = fields.Integer(metadata={"description": "the candidate's version of the candidates model"})
    worker = fields.String(allow_none=True)
    error = fields.String(allow_none=True)


class SearchResponse(Schema):
    id = fields.Integer()
    family = fields.String()
    name = fields.String()
    alias = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "running, refitting, done, failed or cancelled"})
    scoring = fields.String(metadata={"description": "what ranks the candidates (greater is better)"})
    cv = fields.Integer()
    candidates_key = fields.String(metadata={"description": "the model whose versions are the candidates"})
    total = fields.Integer()
    finished = fields.Integer(metadata={"description": "candidates done or failed"})
    best = fields.Nested(CandidateResponse, allow_none=True)
    model_key = fields.String(allow_none=True, metadata={"description": "the model `name`, with the winner as a new version"})
    version = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    leaderboard = fields.List(fields.Nested(CandidateResponse))


class SearchAccepted(Schema):
    id = fields.Integer()
    state = fields.String()
    total = fields.Integer()
    candidates_key = fields.String()


def candidates(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameter sets a search tries, in the order scikit-learn's `GridSearchCV` (`param_grid`) or
    `RandomizedSearchCV` (`param_distributions`, `n_iter`, `seed` as its `random_state`) tries them."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if params.get("param_grid") is not None:
        return [dict(c) for c in ParameterGrid(params["param_grid"])]
    space = params["param_distributions"]
    n_iter = min(params["n_iter"], math.prod(len(v) for v in space.values()))
    return [dict(c) for c in ParameterSampler(space, n_iter, random_state=params["seed"])]


def candidate_row(params: dict[str, Any], version: int, status: Status, scores: dict[str, Any] | None, scoring: str,
                  worker: str | None = None, error: str | None = None) -> dict[str, Any]:
    """One candidate as the leaderboard shows it, from its version's recorded scores."""
    folds = list(((scores or {}).get("fold_scores") or {}).get(scoring) or [])
    complete = bool(folds) and all(f is not None for f in folds)
    times = (scores or {}).get("fit_seconds") or []
    return {
        "params": params,
        "version": version,
        "status": status.value,
        "split_test_scores": folds,
        "mean_test_score": float(sum(folds) / len(folds)) if complete else None,
        "std_test_score": _std(folds) if complete else None,
        "mean_fit_time": float(sum(times) / len(times)) if times else None,
        "worker": worker,
        "error": error,
        "rank": None,
    }


def rank(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ranked as `GridSearchCV` ranks them (the best mean first, ties sharing the lowest rank), the
    unscored after, in candidate order."""
    rows = list(rows)
    scored = sorted((r for r in rows if r["mean_test_score"] is not None), key=lambda r: (-r["mean_test_score"], r["version"]))
    previous, place = None, 0
    for i, row in enumerate(scored, 1):
        if row["mean_test_score"] != previous:
            place, previous = i, row["mean_test_score"]
        row["rank"] = place
    return scored + [r for r in rows if r["mean_test_score"] is None]


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
