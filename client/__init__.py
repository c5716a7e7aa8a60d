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

__all__ = [
    "ArtifactIncompatible",
    "DeadlineExceeded",
    "DecodeError",
    "GenericModelInterface",
    "InvalidInput",
    "MLServerError",
    "NotFound",
    "NotTrained",
    "PayloadTooLarge",
    "TrainingFailed",
    "Unavailable",
]
