"""What a model family is, as the gateway and the consumers agree on it, and the built-in ones.

A family's consumer registers its `FamilyInfo` in the store when it starts
(with the estimator's parameter names). The built-in families are known here
without scikit-learn, so the gateway and `ml-server run` can name them and
accept fits for them before their consumer has registered: such a fit waits
in its train queue, and its `modkwargs` are checked by the consumer instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import evaluation
from .errors import InvalidInput

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
NAME = re.compile(NAME_PATTERN)
# Paths the gateway serves itself; a family can't be named like them.
RESERVED = frozenset({"families", "models", "healthz", "readyz", "metrics", "docs", "events", "ui"})
PREDICT_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
# The modkwargs key of the model's preprocessing options (consumers/preprocess.py): not an estimator parameter.
PREPROCESSING = "preprocessing"
# The modkwargs key of how a fit's held-out scores are made (contracts/evaluation.py): not an estimator parameter.
EVALUATION = evaluation.KEY
CLASSIFIER_METHODS = ("predict", "predict_proba")


@dataclass(frozen=True)
class FamilyInfo:
    """What callers of a family need to know. `params` is empty while no consumer has registered it."""

    name: str
    supervised: bool = True
    supports_update: bool = False
    methods: tuple[str, ...] = ("predict",)
    params: tuple[str, ...] = ()
    fits: bool = True  # False: the family serves imported models only (`onnx`)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "supervised": self.supervised,
            "supports_update": self.supports_update,
            "params": list(self.params),
            "methods": list(self.methods),
            "fits": self.fits,
        }

    def check_fits(self) -> None:
        if not self.fits:
            raise InvalidInput(
                f"family {self.name!r} serves imported models only: import one (POST /families/{self.name}/models/import)"
            )

    def check_modkwargs(self, modkwargs: Mapping[str, Any]) -> None:
        """InvalidInput naming every parameter the estimator does not take (nothing to check without `params`),
        or a malformed `evaluation`."""
        evaluation.options(dict(modkwargs))
        unknown = sorted(set(modkwargs) - set(self.params) - {PREPROCESSING, EVALUATION})
        if unknown and self.params:
            raise InvalidInput(
                f"modkwargs: {self.name} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are {', '.join(self.params)}",
                fields={"modkwargs": [f"unknown parameter {name!r}" for name in unknown]},
            )

    def check_target(self, has_y: bool) -> None:
        if self.supervised and not has_y:
            raise InvalidInput(f"family {self.name!r} learns from a target: y is required", fields={"y": ["required"]})
        if not self.supervised and has_y:
            raise InvalidInput(f"family {self.name!r} is unsupervised: send x only", fields={"y": ["not allowed"]})


BUILTIN: dict[str, FamilyInfo] = {
    f.name: f
    for f in (
        FamilyInfo("logreg", methods=(*CLASSIFIER_METHODS, "predict_log_proba", "decision_function")),
        FamilyInfo("linreg"),
        FamilyInfo("ridge"),
        FamilyInfo("nn", methods=CLASSIFIER_METHODS),
        FamilyInfo("nnreg"),
        FamilyInfo("forest", methods=CLASSIFIER_METHODS),
        FamilyInfo("gbm", methods=(*CLASSIFIER_METHODS, "decision_function")),
        FamilyInfo("sgd", supports_update=True, methods=("predict", "decision_function", "predict_proba")),
        FamilyInfo("kmeans", supervised=False, methods=("predict", "transform")),
        # ONNX graphs trained anywhere, imported and served by onnxruntime: predict only.
        FamilyInfo("onnx", supervised=False, methods=CLASSIFIER_METHODS, fits=False),
    )
}
