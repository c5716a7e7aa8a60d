"""Models a careful data scientist would build, through the real stack, on the Palmer penguins.

The families that need numbers on one scale get them standardized, and answer
like the same pipeline fitted in-process (and better than without scaling);
every fit records held-out scores equal to what scikit-learn's
`cross_validate` gives on the same pipeline and folds; a version fitted
without scaling answers as it did.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit, cross_validate
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from client import ModelClient, TrainingFailed
from consumers import preprocess
from consumers.families import BUILTIN
from contracts.columns import conform, infer

from .stack import Stack

pytestmark = [pytest.mark.integration]

TEXT = ["island", "sex"]
CLASSIFIER_SCORING = {"accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy", "log_loss": "neg_log_loss", "roc_auc": "roc_auc_ovr"}
REGRESSOR_SCORING = {"r2": "r2", "mae": "neg_mean_absolute_error", "rmse": "neg_root_mean_squared_error"}
NEGATED = {"log_loss", "mae", "rmse"}


def penguins() -> tuple[pd.DataFrame, pd.Series]:
    df = load_penguins()
    return df.drop(columns=["species"]), df["species"]


def seed_fit(stack: Stack, family: str, x: pd.DataFrame, y: pd.Series, name: str, modkwargs: dict[str, Any]) -> str:
    """A fit as the seed's client sends it (`PUT /{family}`, JSON), waited on until done."""
    body = {"x": x.to_json(), "y": y.to_frame().to_json(), "orient": "columns", "name": name, "modkwargs": modkwargs}
    r = requests.put(stack.family_url(family), json=body, timeout=60)
    assert r.status_code == 200, r.text
    key: str = r.json()["model_key"]
    assert ModelClient(stack.url).wait(family, key)["status"] == "done"
    return key


def seed_predict(stack: Stack, family: str, key: str, rows: pd.DataFrame) -> np.ndarray:
    r = requests.post(stack.family_url(family), json={"model_key": key, "x": rows.to_json(), "as_array": True}, timeout=60)
    assert r.status_code == 200, r.text
    return np.asarray(json.loads(r.json()["data"]))


def by_hand(estimator: Any, numbers: list[str], scale: bool, text: list[str] = TEXT) -> Pipeline:
    """What docs/families.md says the scaled families do, written out in scikit-learn."""
    imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    return Pipeline([
        ("columns", ColumnTransformer([
            ("numbers", make_pipeline(imputer, StandardScaler()) if scale else imputer, numbers),
            ("text", OneHotEncoder(handle_unknown="ignore", sparse_output=False), text),
        ], verbose_feature_names_out=False)),
        ("estimator", estimator),
    ])


def fitted(model: Any, x: pd.DataFrame, y: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence, unscaled
        return model.fit(x, y)


ESTIMATORS = {
    "nn": lambda: MLPClassifier(random_state=0),
    "sgd": lambda: SGDClassifier(loss="log_loss", random_state=0),
    "nnreg": lambda: MLPRegressor(random_state=0),
}


@pytest.mark.parametrize("family", ["nn", "sgd", "nnreg"])
def test_scaled_families_answer_like_the_pipeline_in_process_and_better_than_unscaled(stack: Stack, family: str) -> None:
    df = load_penguins()
    if family == "nnreg":  # the body mass, in grams, from the rest
        df = df.dropna(subset=["body_mass_g"])
        x, y = df.drop(columns=["body_mass_g"]), df["body_mass_g"]
        train, test = next(ShuffleSplit(n_splits=1, test_size=0.3, random_state=1).split(x, y))
        metric: Any = r2_score
    else:
        x, y = df.drop(columns=["species"]), df["species"]
        train, test = next(StratifiedShuffleSplit(n_splits=1, test_size=0.3, random_state=1).split(x, y))
        metric = accuracy_score
    xtr, ytr, xte, yte = x.iloc[train], y.iloc[train], x.iloc[test], y.iloc[test]
    key = seed_fit(stack, family, xtr, ytr, f"scaled-{family}-{stack.namespace}", {"random_state": 0})
    served = metric(yte, seed_predict(stack, family, key, xte))

    text = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c])]  # the species too, for nnreg
    numbers = [c for c in x.columns if c not in text]
    estimator = ESTIMATORS[family]
    schema = infer(xtr)
    cols = numbers + text
    # What docs/families.md says: numbers standardized, and nnreg's target too.
    scaled_estimator = TransformedTargetRegressor(estimator(), transformer=StandardScaler()) if family == "nnreg" else estimator()
    scaled = fitted(by_hand(scaled_estimator, numbers, scale=True, text=text), conform(xtr, schema)[cols], ytr)
    unscaled = fitted(by_hand(estimator(), numbers, scale=False, text=text), conform(xtr, schema)[cols], ytr)
    in_process = metric(yte, scaled.predict(conform(xte, schema)[cols]))
    before = metric(yte, unscaled.predict(conform(xte, schema)[cols]))
    assert abs(served - in_process) <= 0.02, (served, in_process)
    assert served >= (0.8 if family == "nnreg" else 0.95) and served > before, (served, before)

    version = ModelClient(stack.url).versions(key)["versions"][0]
    assert version["metadata"]["preprocessing"]["numbers"]["scale"] == "standard"
    assert version["metadata"]["preprocessing"]["target"]["scale"] == ("standard" if family == "nnreg" else None)

    # Switched off, the family fits as it did before scaling was its default.
    off = {"random_state": 0, "preprocessing": {"scale": False, "scale_target": False}}
    key_off = seed_fit(stack, family, xtr, ytr, f"unscaled-{family}-{stack.namespace}", off)
    assert ModelClient(stack.url).versions(key_off)["versions"][0]["metadata"]["preprocessing"]["numbers"]["scale"] is None
    got_off, want_off = seed_predict(stack, family, key_off, xte), unscaled.predict(conform(xte, schema)[cols])
    if family == "nnreg":
        np.testing.assert_allclose(got_off.astype(float), want_off, rtol=1e-6)
    else:
        np.testing.assert_array_equal(got_off, want_off)


def expected_scores(model: Any, x: pd.DataFrame, y: Any, cv: Any, scoring: dict[str, str] | None) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cross_validate(model, x, y, cv=cv, scoring=scoring)
    if scoring is None:  # k-means: its score is minus the inertia
        return {"inertia": float(-np.mean(result["test_score"]))}
    return {name: float((-1 if name in NEGATED else 1) * np.mean(result[f"test_{name}"])) for name in scoring}


def assert_scores(recorded: dict[str, Any], expected: dict[str, float]) -> None:
    assert set(recorded["metrics"]) == set(expected), recorded
    for name, value in expected.items():
        assert recorded["metrics"][name] == pytest.approx(value, abs=1e-9), name


def test_recorded_scores_are_cross_validates_on_the_same_pipeline_and_folds(stack: Stack) -> None:
    x, y = penguins()
    client = ModelClient(stack.url)
    schema = infer(x)
    conformed = conform(x, schema)

    # cv folds asked for: StratifiedKFold(5), not shuffled, as cross_validate(cv=5) splits a classifier's rows.
    state = client.fit("logreg", x, y, name=f"scores-cv-{stack.namespace}", modkwargs={"evaluation": {"cv": 5}})
    recorded = client.versions(state["model_key"])["versions"][0]["scores"]
    assert recorded["method"] == "cv" and recorded["folds"] == 5 and recorded["splitter"] == "StratifiedKFold"
    model = preprocess.model_for(BUILTIN["logreg"], schema, {})
    assert_scores(recorded, expected_scores(model, conformed, y.to_numpy(), StratifiedKFold(5), CLASSIFIER_SCORING))
    assert len(recorded["fold_scores"]["accuracy"]) == 5 and recorded["std"]["accuracy"] >= 0

    # Left out: a stratified fifth held out, seed 0.
    state = client.fit("nn", x, y, name=f"scores-holdout-{stack.namespace}", modkwargs={"random_state": 0})
    recorded = client.versions(state["model_key"])["versions"][0]["scores"]
    assert recorded["method"] == "holdout" and recorded["holdout"] == 0.2
    model = preprocess.model_for(BUILTIN["nn"], schema, {"random_state": 0})
    split = StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=0)
    assert_scores(recorded, expected_scores(model, conformed, y.to_numpy(), split, CLASSIFIER_SCORING))
    table = client.scores(state["model_key"])
    assert table.loc[1, "method"] == "holdout" and table.loc[1, "accuracy"] == recorded["metrics"]["accuracy"]

    # A regressor: KFold(3), R², MAE and RMSE; another held-out share and seed.
    reg = load_penguins().dropna(subset=["body_mass_g"])
    xr, yr = reg.drop(columns=["body_mass_g"]), reg["body_mass_g"]
    rschema = infer(xr)
    model = preprocess.model_for(BUILTIN["ridge"], rschema, {})
    for evaluation, cv in (({"cv": 3}, KFold(3)), ({"holdout": 0.25, "seed": 7}, ShuffleSplit(1, test_size=0.25, random_state=7))):
        state = client.fit("ridge", xr, yr, name=f"scores-ridge-{cv}-{stack.namespace}", modkwargs={"evaluation": evaluation})
        recorded = client.versions(state["model_key"])["versions"][0]["scores"]
        assert_scores(recorded, expected_scores(model, conform(xr, rschema), yr.to_numpy(), cv, REGRESSOR_SCORING))

    # k-means: the held-out rows' inertia.
    state = client.fit("kmeans", x, name=f"scores-kmeans-{stack.namespace}", modkwargs={"n_clusters": 3, "random_state": 0, "evaluation": {"cv": 4}})
    recorded = client.versions(state["model_key"])["versions"][0]["scores"]
    model = preprocess.model_for(BUILTIN["kmeans"], schema, {"n_clusters": 3, "random_state": 0})
    assert_scores(recorded, expected_scores(model, conformed, None, KFold(4), None))


def test_evaluation_is_checked_and_can_be_switched_off(stack: Stack) -> None:
    x, y = penguins()
    client = ModelClient(stack.url)
    for bad in ({"cv": 1}, {"holdout": 1.5}, {"cv": 5, "holdout": 0.2}, "lots"):
        r = requests.put(stack.family_url("logreg"), json={"x": x.to_json(), "y": y.to_frame().to_json(), "modkwargs": {"evaluation": bad}}, timeout=30)
        assert r.status_code == 422 and "evaluation" in r.json()["error"]["message"], r.text
    state = client.fit("logreg", x, y, name=f"scores-off-{stack.namespace}", modkwargs={"evaluation": False})
    assert client.versions(state["model_key"])["versions"][0]["scores"] is None
    # More folds than rows: the fit fails saying why, nothing stored.
    with pytest.raises(TrainingFailed, match="evaluation"):
        client.fit("logreg", x.iloc[[0, 1, 2, 4, 200, 201, 202, 203]], y.iloc[[0, 1, 2, 4, 200, 201, 202, 203]], name=f"scores-few-{stack.namespace}", modkwargs={"evaluation": {"cv": 20}})
    # Too few rows for the default held-out share: a version without scores, not a failed fit.
    state = client.fit("logreg", x.iloc[[0, 1, 200, 201]], y.iloc[[0, 1, 200, 201]], name=f"scores-tiny-{stack.namespace}")
    assert state["status"] == "done" and client.versions(state["model_key"])["versions"][0]["scores"] is None


def test_a_numeric_frame_without_scaling_answers_as_before_and_with_it_through_the_scaler(stack: Stack) -> None:
    """Complete numeric rows skip only the imputer: a version fitted without a scaler (as every version was
    before scaling was a default) goes straight to its estimator, a scaled one through its scaler."""
    rng = np.random.default_rng(3)
    x = pd.DataFrame({"grams": rng.normal(4000, 800, 300), "mm": rng.normal(40, 5, 300)})
    y = pd.Series(np.where(x["grams"] / 800 - x["mm"] / 5 > -3, "big", "small"), name="size")
    client = ModelClient(stack.url)
    rows = x.iloc[:20]
    schema = infer(x)
    for scale in (False, True):
        params = {"random_state": 0, "preprocessing": {"scale": scale}}
        key = client.fit("nn", x, y, name=f"numeric-{scale}-{stack.namespace}", modkwargs=params)["model_key"]
        meta = client.versions(key)["versions"][0]["metadata"]
        assert meta["array_ready"] is True and meta["preprocessing"]["steps"] == (["numbers", "scale"] if scale else ["numbers"])
        model = fitted(preprocess.model_for(BUILTIN["nn"], schema, params), conform(x, schema), y)
        np.testing.assert_allclose(
            client.predict("nn", key, rows, method="predict_proba").to_numpy(), model.predict_proba(conform(rows, schema)), rtol=1e-6, atol=1e-9
        )


def test_what_complete_numeric_rows_go_through() -> None:
    """Pure logic: the imputer is skipped, the scaler never; a model without preprocessing is itself."""
    x = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [10.0, 0.0, 30.0, 20.0]})
    y = np.array([0, 0, 1, 1])
    schema = infer(x)
    old = fitted(preprocess.model_for(BUILTIN["sgd"], schema, {"preprocessing": {"scale": False}}), x, y)
    assert preprocess.after_imputer(old) is old.steps[-1][1]
    new = fitted(preprocess.model_for(BUILTIN["sgd"], schema, {}), x, y)
    assert preprocess.array_ready(new) and [name for name, _ in preprocess.after_imputer(new).steps] == ["scale", "estimator"]
    np.testing.assert_array_equal(preprocess.after_imputer(new).predict_proba(x.to_numpy()), new.predict_proba(x))
    bare = fitted(preprocess.model_for(BUILTIN["logreg"], schema, {"preprocessing": False}), x, y)
    assert preprocess.after_imputer(bare) is bare
    assert not preprocess.array_ready(fitted(preprocess.model_for(BUILTIN["forest"], schema, {"preprocessing": {"indicators": True}}), x.assign(a=[1.0, None, 3.0, 4.0]), y))
