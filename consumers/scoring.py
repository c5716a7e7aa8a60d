"""Held-out scores of a fit: how good a version is on rows it did not learn from.

After a fit, the same unfitted pipeline is fitted again on part of the rows
and scored on the rest, so the stored model (fitted on every row) comes with
an honest estimate of how it does on new data. `modkwargs["evaluation"]` says
how:

- left out: a held-out share of 20 % (`{"holdout": 0.2}`): one split,
  shuffled with seed 0, stratified by class for classifiers when every class
  has two rows; tried, and left out quietly when the rows are too few;
- `{"holdout": share, "seed": n}`: another share or seed;
- `{"cv": k}`: k folds, scikit-learn's default splitter for the estimator
  (`StratifiedKFold` for classifiers, `KFold` otherwise, not shuffled), as
  `cross_validate(model, x, y, cv=k)` does;
- `false`: none (no second fit);
- `scoring`, beside `holdout` or `cv`: one more metric, a scikit-learn scorer
  name (`neg_log_loss`, `f1_macro`, ...) recorded under that name and sign,
  or `score` (the estimator's own `score`, what `GridSearchCV` ranks by
  without a `scoring`).

An evaluation that was asked for and can't be made (more folds than rows)
fails the fit saying why. The metrics are the ones a user expects of the kind
of model: accuracy, balanced accuracy, log loss and ROC AUC (one-vs-rest for
more than two classes) for classifiers (the last two when the estimator has
`predict_proba`); R², MAE and RMSE for regressors; inertia (the summed squared
distance of the held-out rows to their centre) for k-means. Errors are
positive (lower is better). A metric that can't be computed on a split (a
class missing from a fold) is `None` for that split.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np

from contracts import evaluation
from contracts.errors import InvalidInput

KEY = evaluation.KEY
# Fewer rows than this and the default held-out share is left out (a score of 2 rows says nothing).
MIN_ROWS = 10

# metric name -> (scikit-learn scorer, sign: scorers are "greater is better", errors are reported positive)
CLASSIFIER = {"accuracy": ("accuracy", 1), "balanced_accuracy": ("balanced_accuracy", 1)}
PROBABILISTIC = {"log_loss": ("neg_log_loss", -1)}
REGRESSOR = {"r2": ("r2", 1), "mae": ("neg_mean_absolute_error", -1), "rmse": ("neg_root_mean_squared_error", -1)}


def options(modkwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, bool, dict[str, Any]]:
    """(how to evaluate, or None for not at all; whether it was asked for; the other modkwargs)."""
    how, asked = evaluation.options(modkwargs)
    return how, asked, {k: v for k, v in modkwargs.items() if k != KEY}


def splitter(how: dict[str, Any], model: Any, y: Any) -> Any:
    """The scikit-learn splitter an evaluation uses (what a test gives `cross_validate` to get the same)."""
    from sklearn.base import is_classifier
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit, check_cv

    classifier = y is not None and is_classifier(model)
    if "cv" in how:
        return check_cv(how["cv"], y, classifier=classifier)
    if classifier and np.ndim(y) == 1:
        _, counts = np.unique(np.asarray(y, dtype=object).astype(str), return_counts=True)
        if counts.min() >= 2 and len(counts) <= round(how["holdout"] * len(y)):
            return StratifiedShuffleSplit(n_splits=1, test_size=how["holdout"], random_state=how["seed"])
    return ShuffleSplit(n_splits=1, test_size=how["holdout"], random_state=how["seed"])


def own_score(estimator: Any, x: Any, y: Any = None) -> float:
    """The estimator's own `score` as a scorer (minus the inertia for k-means, accuracy for classifiers)."""
    return float(estimator.score(x) if y is None else estimator.score(x, y))


def metrics(model: Any, y: Any, scoring: str | None = None) -> dict[str, tuple[Any, int]]:
    """metric name -> (scorer, sign) for the model's kind, and `scoring` if asked: what a version's scores hold."""
    from sklearn.metrics import get_scorer_names

    chosen = _metrics(model, y)
    if scoring == "score":
        chosen["score"] = (own_score, 1)
    elif scoring is not None:
        if scoring not in get_scorer_names():
            raise InvalidInput(
                f"modkwargs.{KEY}.scoring: {scoring!r} is not a scikit-learn scorer name (nor `score`)",
                fields={"modkwargs": [f"{KEY}.scoring: unknown scorer"]},
            )
        chosen[scoring] = (scoring, 1)
    return chosen


def _metrics(model: Any, y: Any) -> dict[str, tuple[Any, int]]:
    from sklearn.base import is_classifier, is_regressor

    if y is None:
        return {"inertia": (own_score, -1)} if hasattr(model, "score") else {}
    if is_classifier(model):
        if np.ndim(y) > 1:  # several targets: all of a row's labels right
            return {"accuracy": ("accuracy", 1)}
        chosen: dict[str, tuple[Any, int]] = dict(CLASSIFIER)
        if hasattr(model, "predict_proba"):
            chosen.update(PROBABILISTIC)
            binary = len(np.unique(np.asarray(y, dtype=object).astype(str))) == 2
            chosen["roc_auc"] = ("roc_auc" if binary else "roc_auc_ovr", 1)
        return chosen
    if is_regressor(model):
        return dict(REGRESSOR)
    return {}


def unfitted(model: Any) -> Any:
    """A copy of the model as it is before its fit (scikit-learn's `clone`), or None for an estimator of
    a user's family that can't be cloned (its versions then have no held-out scores)."""
    from sklearn.base import clone

    try:
        return clone(model)
    except Exception:  # not a scikit-learn estimator: scored by nothing rather than failing the fit
        return None


def evaluate(model: Any, x: Any, y: Any, fit_params: dict[str, Any], how: dict[str, Any], asked: bool) -> dict[str, Any] | None:
    """Fit clones of the unfitted `model` on each split's training rows and score them on its held-out
    rows. None when the default held-out share was left out (too few rows or a model that can't be scored)."""
    from sklearn.model_selection import cross_validate

    chosen = metrics(model, y, how.get("scoring"))
    if not chosen:
        return None
    if not asked and len(x) < MIN_ROWS:
        return None
    started = time.perf_counter()
    scoring = {name: scorer for name, (scorer, _) in chosen.items()}
    try:
        split = splitter(how, model, y)
        n_splits = split.get_n_splits(x, y)
        if "cv" in how and n_splits > len(x):
            raise ValueError(f"{n_splits} folds need at least {n_splits} rows; there are {len(x)}")
        with warnings.catch_warnings():
            # Folds of an estimator that warns (convergence, a class with few rows) are scored as they come.
            warnings.simplefilter("ignore")
            result = cross_validate(model, x, y, cv=split, scoring=scoring, params=fit_params or None, error_score=np.nan)
    except ValueError as e:
        if not asked:
            return None
        raise InvalidInput(f"modkwargs.{KEY}: can't evaluate on these rows: {e}", fields={"modkwargs": [KEY]}) from e
    folds = {name: [_finite(sign * s) for s in result[f"test_{name}"]] for name, (_, sign) in chosen.items()}
    out: dict[str, Any] = {"method": "cv" if "cv" in how else "holdout", "splitter": type(split).__name__}
    if how.get("scoring"):
        out["scoring"] = how["scoring"]
    if "cv" in how:
        out["folds"] = n_splits
    else:
        out["holdout"] = how["holdout"]
        out["seed"] = how["seed"]
    out["metrics"] = {name: _mean(values) for name, values in folds.items()}
    out["std"] = {name: _std(values) for name, values in folds.items()}
    out["fold_scores"] = folds
    out["fit_seconds"] = [round(float(t), 6) for t in result["fit_time"]]
    out["seconds"] = round(time.perf_counter() - started, 6)
    return out


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if len(known) == len(values) else None


def _std(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.std(known)) if len(known) == len(values) else None
