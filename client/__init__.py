"""Python client for ml-server."""

from typing import TYPE_CHECKING, Any

from contracts.errors import (
    ArtifactIncompatible,
    Conflict,
    DeadlineExceeded,
    DecodeError,
    InvalidInput,
    MLServerError,
    NotFound,
    NotTrained,
    PayloadTooLarge,
    TrainingFailed,
    Unavailable,
)

from .client import GenericModelInterface
from .models import AsyncModelClient, ModelClient

if TYPE_CHECKING:
    from .estimator import RemoteClassifier, RemoteEstimator, RemoteRegressor

_ESTIMATORS = ("RemoteClassifier", "RemoteEstimator", "RemoteRegressor")


def __getattr__(name: str) -> Any:
    """The scikit-learn estimators are imported when first asked for: the clients and the command line
    start without scikit-learn."""
    if name in _ESTIMATORS:
        from . import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ArtifactIncompatible",
    "AsyncModelClient",
    "Conflict",
    "DeadlineExceeded",
    "DecodeError",
    "GenericModelInterface",
    "InvalidInput",
    "MLServerError",
    "ModelClient",
    "NotFound",
    "NotTrained",
    "PayloadTooLarge",
    "RemoteClassifier",
    "RemoteEstimator",
    "RemoteRegressor",
    "TrainingFailed",
    "Unavailable",
]
