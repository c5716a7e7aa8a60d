"""Model families: what a consumer serves, as data.

A family says how to build the estimator from `modkwargs`, whether it learns
from a target (`supervised`), whether it supports `partial_fit` updates, and
which predict methods callers may ask for. Add your own without touching this
repository:

* an entry point in the `ml_server.families` group pointing at a `Family`, or
* `ml-server-consumer my_package.my_module:my_family` on the command line.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from sklearn.cluster import KMeans
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor

from marshmallow import ValidationError

from contracts.schemas import FAMILY_NAME
from contracts.status import Backend

ENTRY_POINT_GROUP = "ml_server.families"
# Paths the gateway serves itself; a family can't be named like them.
RESERVED = frozenset({"families", "models", "healthz", "readyz", "metrics", "docs", "events"})
PREDICT_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")


class FamilyError(LookupError):
    """A family spec that names nothing servable."""


@dataclass(frozen=True)
class Family:
    """One kind of model served by one kind of consumer process."""

    name: str
    factory: Callable[..., Any]
    supervised: bool = True
    supports_update: bool = False
    methods: tuple[str, ...] = ("predict",)
    backend: Backend = Backend.JOBLIB
    defaults: dict[str, Any] = field(default_factory=dict)
    # Types (dotted "module.Class" names) a skops artifact of this family may hold besides
    # SKOPS_TRUSTED and the factory's class: for user families with their own helper types.
    trusted_types: tuple[str, ...] = ()
    # The estimator predicts on a plain numeric array as well as on the DataFrame it was fitted
    # on (no column selection by name inside): numeric frames then skip pandas on the predict path.
    array_input: bool = False

    def build(self, modkwargs: dict[str, Any]) -> Any:
        return self.factory(**{**self.defaults, **modkwargs})

    def trusted(self) -> frozenset[str]:
        """The skops allowlist for this family's artifacts: fixed in code, never read from an artifact."""
        own = {_qualname(self.factory)} if isinstance(self.factory, type) else set()
        return SKOPS_TRUSTED | own | frozenset(self.trusted_types)

    def parameters(self) -> list[str]:
        """Names the estimator accepts as `modkwargs`."""
        estimator = self.factory(**self.defaults)
        return sorted(estimator.get_params(deep=False)) if hasattr(estimator, "get_params") else []


_CLASSIFIER = ("predict", "predict_proba")
BUILTIN: dict[str, Family] = {
    f.name: f
    for f in (
        Family("logreg", LogisticRegression, methods=(*_CLASSIFIER, "predict_log_proba", "decision_function")),
        Family("linreg", LinearRegression),
        Family("ridge", Ridge),
        Family("nn", MLPClassifier, methods=_CLASSIFIER),
        Family("nnreg", MLPRegressor),
        Family("forest", RandomForestClassifier, methods=_CLASSIFIER),
        Family("gbm", HistGradientBoostingClassifier, methods=(*_CLASSIFIER, "decision_function")),
        Family(
            "sgd",
            SGDClassifier,
            supports_update=True,
            methods=("predict", "decision_function", "predict_proba"),
            defaults={"loss": "log_loss"},
        ),
        Family("kmeans", KMeans, supervised=False, methods=("predict", "transform"), defaults={"n_init": "auto"}),
    )
}
# Every built-in estimator takes a numeric array as it takes the frame it was fitted on.
BUILTIN = {name: dataclasses.replace(f, array_input=True) for name, f in BUILTIN.items()}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# What skops may build when it loads an artifact, beyond its own defaults (builtins, numpy
# arrays and dtypes, scikit-learn estimators): the built-in estimator classes and the
# scikit-learn helper objects their fitted state holds.
SKOPS_TRUSTED: frozenset[str] = frozenset(
    {_qualname(f.factory) for f in BUILTIN.values() if isinstance(f.factory, type)}
    | {
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",  # nn, nnreg (solver="adam")
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",  # nn, nnreg (solver="sgd")
        "sklearn.tree._tree.Tree",  # forest
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # gbm
    }
)


def load_family(spec: str) -> Family:
    """A built-in name, an entry point name, or `module:attribute`."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec:
            return _check(ep.load(), spec)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise FamilyError(f"cannot load family {spec!r}: {e}") from e
        return _check(obj, spec)
    known = sorted(BUILTIN) + sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise FamilyError(f"unknown family {spec!r}; known: {', '.join(known)} (or give module:attribute)")


def _check(obj: Any, spec: str) -> Family:
    if not isinstance(obj, Family):
        raise FamilyError(f"{spec!r} is a {type(obj).__name__}, not a consumers.Family")
    try:
        FAMILY_NAME(obj.name)
    except ValidationError:
        raise FamilyError(f"family name {obj.name!r} must match {FAMILY_NAME.regex.pattern}") from None
    if obj.name in RESERVED:
        raise FamilyError(f"family name {obj.name!r} is reserved by the gateway")
    return obj
