"""Model families: what a consumer serves, as data.

A family says how to build the estimator from `modkwargs`, whether it learns
from a target (`supervised`), whether it supports `partial_fit` updates, and
which predict methods callers may ask for. Add your own without touching this
repository:

* an entry point in the `ml_server.families` group pointing at a `Family`, or
* `ml-server-consumer my_package.my_module:my_family` on the command line.

The built-in families name their estimators by import path (`Estimator`), so
importing this module does not import scikit-learn: a consumer imports the
estimators it serves when it first needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from contracts import families as catalog
from contracts.families import PREDICT_METHODS, RESERVED, FamilyInfo
from contracts.status import Backend

ENTRY_POINT_GROUP = "ml_server.families"

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "IMPORT_TRUSTED",
    "Estimator",
    "Family",
    "FamilyError",
    "PREDICT_METHODS",
    "RESERVED",
    "load_family",
]


class FamilyError(LookupError):
    """A family spec that names nothing servable."""


@dataclass(frozen=True)
class Estimator:
    """An estimator class named by its import path (`module:Class`), imported when first called."""

    path: str

    @property
    def qualname(self) -> str:
        """`module.Class`, as skops names the type."""
        return self.path.replace(":", ".")

    @property
    def module(self) -> str:
        return self.path.partition(":")[0]

    def load(self) -> type:
        module, _, name = self.path.partition(":")
        cls: type = getattr(importlib.import_module(module), name)
        return cls

    def __call__(self, **kwargs: Any) -> Any:
        return self.load()(**kwargs)


@dataclass(frozen=True)
class Family:
    """One kind of model served by consumer processes."""

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
    # How text columns are encoded before the estimator (`preprocess`): "onehot", or "ordinal" (trees).
    encoding: str = "onehot"
    # A tree ensemble: ordinal codes of text columns are categories to it (HistGradientBoosting's own).
    trees: bool = False
    # Numbers standardized before the estimator by default (`preprocess`; `modkwargs["preprocessing"]["scale"]`
    # overrides): estimators that fit by gradient descent, measure distances or penalize coefficients.
    scale: bool = False
    # A regressor whose target is standardized for its fit (`targets`): one that learns by gradient descent.
    scale_target: bool = False
    # False: the family serves imported models only (`onnx`); fits and updates are refused.
    fits: bool = True

    def build(self, modkwargs: dict[str, Any]) -> Any:
        return self.factory(**{**self.defaults, **modkwargs})

    def trusted(self) -> frozenset[str]:
        """The skops allowlist for this family's artifacts: fixed in code, never read from an artifact."""
        own = _qualname(self.factory)
        return SKOPS_TRUSTED | frozenset(self.trusted_types) | ({own} if own else set())

    def parameters(self) -> list[str]:
        """Names the estimator accepts as `modkwargs`."""
        if not self.fits:
            return []
        estimator = self.factory(**self.defaults)
        return sorted(estimator.get_params(deep=False)) if hasattr(estimator, "get_params") else []

    def info(self) -> FamilyInfo:
        """What the family registers in the store (this imports its estimator)."""
        return FamilyInfo(self.name, self.supervised, self.supports_update, self.methods, tuple(self.parameters()), self.fits)

    def estimator_class(self) -> type | None:
        """The class a model of this family is (the last step of a pipeline), for imports; None: any."""
        if isinstance(self.factory, Estimator):
            return self.factory.load()
        return self.factory if isinstance(self.factory, type) else None

    @property
    def modules(self) -> tuple[str, ...]:
        """Modules a fit process of this family needs (imported once, before fit processes fork)."""
        if isinstance(self.factory, Estimator):
            return (self.factory.module,)
        module = getattr(self.factory, "__module__", None)
        return (module,) if isinstance(module, str) else ()


def _qualname(factory: Any) -> str:
    if isinstance(factory, Estimator):
        return factory.qualname
    if isinstance(factory, type):
        return f"{factory.__module__}.{factory.__qualname__}"
    return ""


_ESTIMATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "logreg": ("sklearn.linear_model:LogisticRegression", {}),
    "linreg": ("sklearn.linear_model:LinearRegression", {}),
    "ridge": ("sklearn.linear_model:Ridge", {}),
    "nn": ("sklearn.neural_network:MLPClassifier", {}),
    "nnreg": ("sklearn.neural_network:MLPRegressor", {}),
    "forest": ("sklearn.ensemble:RandomForestClassifier", {}),
    "gbm": ("sklearn.ensemble:HistGradientBoostingClassifier", {}),
    "sgd": ("sklearn.linear_model:SGDClassifier", {"loss": "log_loss"}),
    "kmeans": ("sklearn.cluster:KMeans", {"n_init": "auto"}),
}

_TREES = frozenset({"forest", "gbm"})
# Numbers on one scale: neural networks and SGD only converge on them, k-means measures distances in them. Not
# for trees (splits don't care), ordinary least squares (the same predictions either way), nor logistic
# regression and ridge: their solvers converge on raw measurements, and `PUT /logreg` answers as scikit-learn's
# own `LogisticRegression` does on the caller's numbers (the seed's contract); `scale: true` asks for it.
_SCALED = frozenset({"nn", "nnreg", "sgd", "kmeans"})


def _imported_only(**_: Any) -> Any:
    raise FamilyError("the onnx family serves imported ONNX graphs: it fits nothing")


# Every built-in estimator takes a numeric array as it takes the frame it was fitted on.
BUILTIN: dict[str, Family] = {
    info.name: Family(
        info.name,
        Estimator(_ESTIMATORS[info.name][0]),
        supervised=info.supervised,
        supports_update=info.supports_update,
        methods=info.methods,
        defaults=_ESTIMATORS[info.name][1],
        array_input=True,
        encoding="ordinal" if info.name in _TREES else "onehot",
        trees=info.name in _TREES,
        scale=info.name in _SCALED,
        scale_target=info.name == "nnreg",
    )
    for info in catalog.BUILTIN.values()
    if info.fits
}
# ONNX graphs made anywhere, imported (`POST /families/onnx/models/import`) and run by onnxruntime.
BUILTIN["onnx"] = Family(
    "onnx", _imported_only, supervised=False, methods=catalog.BUILTIN["onnx"].methods, backend=Backend.ONNX, fits=False
)

# What skops may build when it loads an artifact, beyond its own defaults (builtins, numpy
# arrays and dtypes, scikit-learn estimators): the built-in estimator classes and the
# scikit-learn helper objects their fitted state holds.
SKOPS_TRUSTED: frozenset[str] = frozenset(
    {q for f in BUILTIN.values() if (q := _qualname(f.factory))}
    | {
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",  # nn, nnreg (solver="adam")
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",  # nn, nnreg (solver="sgd")
        "sklearn.tree._tree.Tree",  # forest
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # gbm
        # the preprocessing every model carries (consumers/preprocess.py)
        "numpy.dtype",  # the encoders' output dtype
        "sklearn.pipeline.Pipeline",
        "sklearn.compose._target.TransformedTargetRegressor",  # nnreg's standardized target (consumers/targets.py)
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.impute._base.SimpleImputer",
        "sklearn.impute._base.MissingIndicator",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        # what imported pipelines commonly hold before their estimator: data only, no callables
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._data.MinMaxScaler",
        "sklearn.preprocessing._data.MaxAbsScaler",
        "sklearn.preprocessing._data.RobustScaler",
        "sklearn.preprocessing._polynomial.PolynomialFeatures",
        "sklearn.decomposition._pca.PCA",
        "sklearn.feature_selection._variance_threshold.VarianceThreshold",
    }
)


# Imported skops files are held to more than skops' own defaults (which take any scikit-learn class
# and any numpy function): every object, type and callable a file names must be on this list or the
# family's `trusted()`, and a file naming a function (`FunctionTransformer(np.log1p)`) is refused.
# These are the scikit-learn helper classes fitted estimators of the built-in families hold.
IMPORT_TRUSTED: frozenset[str] = frozenset(
    {
        "sklearn.tree._classes.DecisionTreeClassifier",  # forest
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",  # gbm
        "sklearn.preprocessing._label.LabelBinarizer",  # nn
        "sklearn.preprocessing._label.LabelEncoder",
        # ColumnTransformer's `remainder="passthrough"`: the class, never a function given to it
        "sklearn.preprocessing._function_transformer.FunctionTransformer",
    }
)
# (The loss and link objects estimators hold are listed by exact name in `skops_names.LOSSES`.)


def registered() -> list[str]:
    """Names of the families installed through the `ml_server.families` entry point group."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


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
    known = sorted(BUILTIN) + registered()
    raise FamilyError(f"unknown family {spec!r}; known: {', '.join(known)} (or give module:attribute)")


def _check(obj: Any, spec: str) -> Family:
    if not isinstance(obj, Family):
        raise FamilyError(f"{spec!r} is a {type(obj).__name__}, not a consumers.Family")
    if not catalog.NAME.match(obj.name):
        raise FamilyError(f"family name {obj.name!r} must match {catalog.NAME_PATTERN}")
    if obj.name in RESERVED:
        raise FamilyError(f"family name {obj.name!r} is reserved by the gateway")
    return obj
