"""Python client for ml-server."""

from contracts.errors import (
    ArtifactIncompatible,
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
from .estimator import RemoteClassifier, RemoteEstimator, RemoteRegressor
from .models import AsyncModelClient, ModelClient

__all__ = [
    "ArtifactIncompatible",
    "AsyncModelClient",
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
