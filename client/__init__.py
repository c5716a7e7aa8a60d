"""Python client for ml-server."""

from contracts.errors import (
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
