"""Preprocessing that is part of the model, chosen per family from the recorded input schema.

The model a fit stores is one scikit-learn `Pipeline`: the preprocessing
fitted on the training frame and the estimator, in one artifact, so a
DataFrame is predicted on as it comes. What the frame gets, after
`contracts.columns.conform` made numbers of integers, booleans and datetimes:

- numbers: missing values imputed with the training median (`SimpleImputer`),
  plus a missing-indicator column for each column that had missing values at
  fit; a missing value at predict in any column is answered the same way;
  then, for the families that need numbers on one scale (`Family.scale`:
  neural networks, gradient descent, k-means, the penalized linear models),
  standardized (`StandardScaler`, the training mean and standard deviation);
- the target of a regressor that learns by gradient descent (`nnreg`,
  `Family.scale_target`): standardized for the fit, predictions turned back
  into its units (`targets`);
- text (strings and categories): linear, neural and clustering families
  one-hot encode it (`OneHotEncoder`, an unseen value becomes all zeros, a
  missing value a category of its own); tree families ordinal-encode it
  (`OrdinalEncoder`, unseen and missing values get codes of their own), and
  HistGradientBoosting treats those codes as categories.

An all-numeric frame without missing values keeps today's speed: its
pipeline is an imputer that changes nothing for complete rows (then the
scaler, if any, and the estimator), and a complete numeric predict skips the
imputer (`array_ready` in the version's metadata).

`modkwargs["preprocessing"]` chooses otherwise: `false` (none: the estimator
gets the conformed frame as it is), or an object with `numbers` (`median`,
`mean`, `most_frequent`), `indicators` (true/false), `scale` and
`scale_target` (true/false; default: the family's) and `text` (`onehot`,
`ordinal`).

A stored version is its fitted pipeline: versions fitted before scaling was a
default have no scaler in their artifact and answer exactly as they did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from marshmallow import Schema, ValidationError, fields, validate

from contracts.columns import InputSchema
from contracts.families import PREPROCESSING
from contracts.errors import InvalidInput

from . import targets

KEY = PREPROCESSING
TEXT_ENCODINGS = ("onehot", "ordinal")


class Options(Schema):
    numbers = fields.String(load_default="median", validate=validate.OneOf(("median", "mean", "most_frequent")))
    # None: add them, unless the model is stored as ONNX (skl2onnx has no converter for them)
    indicators = fields.Boolean(load_default=None, allow_none=True)
    text = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(TEXT_ENCODINGS))
    # None: the family's own choice (`Family.scale`, `Family.scale_target`)
    scale = fields.Boolean(load_default=None, allow_none=True)
    scale_target = fields.Boolean(load_default=None, allow_none=True)


def options(modkwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(preprocessing options, or None for none; the estimator's own modkwargs)."""
    rest = {k: v for k, v in modkwargs.items() if k != KEY}
    raw = modkwargs.get(KEY, True)
    if raw is False:
        return None, rest
    if raw is True or raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"modkwargs.{KEY} must be false or an object", fields={"modkwargs": [f"{KEY}: false or an object"]})
    try:
        return Options().load(raw), rest
    except ValidationError as e:
        raise InvalidInput(f"modkwargs.{KEY}: {e.messages}", fields={"modkwargs": [f"{KEY}: {e.messages}"]}) from e


def model_for(family: Any, schema: InputSchema, modkwargs: dict[str, Any], onnx: bool = False) -> Any:
    """The unfitted model a fit of `family` (a `consumers.Family`) makes for a frame of `schema`: its
    estimator built from `modkwargs` behind the preprocessing the family and `modkwargs` ask for."""
    opts, estimator_kwargs = options(modkwargs)
    family.info().check_modkwargs(estimator_kwargs)  # as the gateway does once the family is registered
    return pipeline(
        schema, family.build(estimator_kwargs), family.encoding, opts, family.trees, onnx, scale=family.scale, scale_target=family.scale_target
    )


def pipeline(
    schema: InputSchema,
    estimator: Any,
    encoding: str,
    opts: dict[str, Any] | None,
    trees: bool,
    onnx: bool = False,
    scale: bool = False,
    scale_target: bool = False,
) -> Any:
    """The model to fit: the estimator behind the preprocessing `schema` needs (or alone, with `opts` None).
    `onnx`: the model will be exported to ONNX, so no missing-indicator columns (InvalidInput if asked for).
    `scale`: standardize the numbers, `scale_target` the target (a regressor's), unless `opts` says otherwise."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if opts is None:
        return estimator
    text_encoding = opts["text"] or encoding
    indicators = opts["indicators"]
    if onnx and indicators:
        raise InvalidInput(
            f"modkwargs.{KEY}.indicators: an ONNX model can't have missing-indicator columns (skl2onnx has no converter "
            "for them); leave it out or use another backend",
            fields={"modkwargs": [f"{KEY}.indicators: not with backend onnx"]},
        )
    indicators = not onnx if indicators is None else indicators
    opts = {**opts, "indicators": indicators}
    scaled = scale if opts.get("scale") is None else bool(opts["scale"])
    if (scale_target if opts.get("scale_target") is None else opts["scale_target"]):
        estimator = targets.scaled(estimator)
    numbers: Any = SimpleImputer(strategy=opts["numbers"], add_indicator=indicators, keep_empty_features=True)
    if not schema.text:
        if scaled:
            return Pipeline([("numbers", numbers), ("scale", StandardScaler()), ("estimator", estimator)])
        return Pipeline([("numbers", numbers), ("estimator", estimator)])
    if scaled:
        numbers = Pipeline([("impute", numbers), ("scale", StandardScaler())])
    if text_encoding == "onehot":
        text: Any = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
    else:
        text = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2, dtype=np.float64)
    columns = ColumnTransformer(
        [("numbers", numbers, schema.numbers), ("text", text, schema.text)],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    if trees and text_encoding == "ordinal" and hasattr(estimator, "categorical_features"):
        # HistGradientBoosting: the ordinal codes are categories, not quantities.
        estimator.set_params(categorical_features=_text_positions(schema, opts["indicators"]))
    return Pipeline([("columns", columns), ("estimator", estimator)])


def _text_positions(schema: InputSchema, indicators: bool) -> list[int]:
    """Where the text columns land in the transformer's output: after the numbers and, with indicators,
    one indicator for each number column that had missing values at fit (what `SimpleImputer` adds)."""
    width = len(schema.numbers)
    if indicators:
        width += sum(1 for c in schema.columns if c.kind.numeric and c.missing)
    return list(range(width, width + len(schema.text)))


def array_ready(model: Any) -> bool:
    """Whether a complete numeric row can skip the imputer: a pipeline of an imputer that adds no
    indicator column (no column had missing values at fit), maybe a scaler, and the estimator."""
    steps = getattr(model, "steps", None)
    if not steps or steps[0][0] != "numbers" or not (len(steps) == 2 or (len(steps) == 3 and steps[1][0] == "scale")):
        return False
    indicator = getattr(steps[0][1], "indicator_", None)
    return indicator is None or len(getattr(indicator, "features_", ())) == 0


def after_imputer(model: Any) -> Any:
    """What complete numeric rows of an `array_ready` model go through: the estimator, or the scaler and
    the estimator (as a pipeline sharing the fitted steps); a model without preprocessing is itself."""
    steps = getattr(model, "steps", None)
    if not steps:
        return model
    return steps[-1][1] if len(steps) == 2 else model[1:]


def estimator_of(model: Any) -> Any:
    """The estimator a model ends with (the model itself when it has no preprocessing)."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def fit_params(model: Any, algkwargs: dict[str, Any]) -> dict[str, Any]:
    """`algkwargs` (the estimator's `fit` arguments) as the model's `fit` takes them (a pipeline routes
    them to its `estimator` step by name)."""
    if getattr(model, "steps", None):
        return {f"estimator__{k}": v for k, v in algkwargs.items()}
    return dict(algkwargs)


def partial_fit(model: Any, x: Any, y: Any) -> None:
    """Update the estimator with rows read through the model's fitted preprocessing (left as it was)."""
    steps = getattr(model, "steps", None)
    if steps:
        x = model[:-1].transform(x)
    estimator = estimator_of(model)
    if y is not None:
        estimator.partial_fit(x, y)
    else:
        estimator.partial_fit(x)


def describe(model: Any) -> dict[str, Any]:
    """What the model does to a frame before its estimator, for the version's metadata."""
    steps = getattr(model, "steps", None)
    if not steps:
        return {"steps": []}
    out: dict[str, Any] = {"steps": [name for name, _ in steps[:-1]]}
    first = steps[0][1]
    scaled = any(name == "scale" for name, _ in steps[:-1])
    transformers = getattr(first, "transformers", None)
    if transformers is not None:
        out["columns"] = {name: {"transformer": type(t).__name__, "columns": list(cols)} for name, t, cols in transformers}
        first = dict((n, t) for n, t, _ in transformers).get("numbers", first)
        inner = getattr(first, "steps", None)
        if inner:  # the numbers' own pipeline: imputer, scaler
            scaled = scaled or any(name == "scale" for name, _ in inner)
            first = inner[0][1]
    out["numbers"] = {
        "impute": getattr(first, "strategy", None),
        "indicators": bool(getattr(first, "add_indicator", False)),
        "scale": "standard" if scaled else None,
    }
    out["target"] = {"scale": "standard" if type(steps[-1][1]).__name__ == "TransformedTargetRegressor" else None}
    return out
