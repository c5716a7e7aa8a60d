"""How a fit is scored on rows it did not learn from: `modkwargs["evaluation"]`, as both sides read it.

The gateway refuses a malformed one (422) before anything is queued; the
consumer (`consumers/scoring.py`) makes the scores.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from .errors import InvalidInput

# The modkwargs key (not an estimator parameter).
KEY = "evaluation"
# What a fit gets when `evaluation` is left out: a fifth of the rows held out, shuffled with seed 0.
DEFAULT_HOLDOUT = 0.2
DEFAULT = {"holdout": DEFAULT_HOLDOUT, "seed": 0}


class Evaluation(Schema):
    holdout = fields.Float(validate=validate.Range(min=0, max=1, min_inclusive=False, max_inclusive=False))
    cv = fields.Integer(strict=True, validate=validate.Range(min=2, max=100))
    seed = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=2**32 - 1))
    # One more metric, recorded under its own name as scikit-learn gives it (greater is better): a scorer
    # name (`get_scorer_names()`, checked by the consumer) or `score`, the estimator's own `score` method
    # (what `GridSearchCV` ranks by when given no `scoring`).
    scoring = fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$", error="a scikit-learn scorer name"))

    @validates_schema
    def one_of(self, data: dict[str, Any], **_: Any) -> None:
        if ("holdout" in data) == ("cv" in data):
            raise ValidationError("give holdout (a share of the rows) or cv (a number of folds)", "holdout")


def options(modkwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """(how to evaluate, or None for not at all; whether the caller asked for it). InvalidInput naming
    `modkwargs` when `evaluation` is neither false nor `{"holdout": share}` / `{"cv": folds}` (and `seed`)."""
    raw = modkwargs.get(KEY)
    if raw is None or raw is True:
        return dict(DEFAULT), False
    if raw is False:
        return None, True
    if not isinstance(raw, dict):
        raise InvalidInput(
            f'modkwargs.{KEY} must be false or an object like {{"cv": 5}} or {{"holdout": 0.2}}',
            fields={"modkwargs": [f"{KEY}: false or an object"]},
        )
    try:
        return Evaluation().load(raw), True
    except ValidationError as e:
        raise InvalidInput(f"modkwargs.{KEY}: {e.messages}", fields={"modkwargs": [f"{KEY}: {e.messages}"]}) from e
