"""One error root with an HTTP status; errors cross the wire as data.

Every error the gateway answers with, and every error a consumer replies with,
is one of these classes. `to_wire()`/`from_wire()` turn them into plain data
and back, so the gateway re-raises exactly what the consumer raised.
"""

from __future__ import annotations

from typing import Any


class MLServerError(Exception):
    """Root of all ml-server errors. `status` is the HTTP status it maps to."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, fields: dict[str, Any] | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or None
        self.retry_after = retry_after  # seconds, answered as `Retry-After` (a 429 or a 503 that will pass)

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidInput(MLServerError):
    """The request is malformed or fails validation (names the field)."""

    status, code = 422, "invalid_input"


class DecodeError(InvalidInput):
    """Bytes that should hold a DataFrame (Parquet or JSON) don't."""

    code = "decode_error"


class NotFound(MLServerError):
    status, code = 404, "not_found"


class NotTrained(MLServerError):
    """The model has no finished version yet."""

    status, code = 409, "not_trained"


class TrainingFailed(MLServerError):
    """The model's latest training failed and it has no usable version."""

    status, code = 409, "training_failed"


class ArtifactIncompatible(MLServerError):
    """The stored model can't be loaded safely by this server: made with another
    scikit-learn version, or holding types the server does not trust."""

    status, code = 409, "artifact_incompatible"


class Conflict(MLServerError):
    """The change contradicts the model's state (removing the alias it serves, importing over a name in use)."""

    status, code = 409, "conflict"


class Unauthorized(MLServerError):
    status, code = 401, "unauthorized"


class Forbidden(MLServerError):
    status, code = 403, "forbidden"


class PayloadTooLarge(MLServerError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(MLServerError):
    status, code = 415, "unsupported_media_type"


class TooManyRequests(MLServerError):
    """The caller holds as many of a resource as one caller may (open event streams)."""

    status, code = 429, "too_many_requests"


class Unavailable(MLServerError):
    """The broker or the store can't be reached right now."""

    status, code = 503, "unavailable"


class DeadlineExceeded(MLServerError):
    """No consumer answered within the request's deadline."""

    status, code = 504, "deadline_exceeded"


_BY_CODE: dict[str, type[MLServerError]] = {
    cls.code: cls
    for cls in (
        MLServerError,
        InvalidInput,
        DecodeError,
        NotFound,
        NotTrained,
        TrainingFailed,
        ArtifactIncompatible,
        Conflict,
        Unauthorized,
        Forbidden,
        PayloadTooLarge,
        UnsupportedMediaType,
        TooManyRequests,
        Unavailable,
        DeadlineExceeded,
    )
}


def from_wire(code: str, message: str, fields: dict[str, Any] | None = None) -> MLServerError:
    """Rebuild the error a peer sent as data; unknown codes become a plain 500."""
    cls = _BY_CODE.get(code, MLServerError)
    return cls(message, fields=fields)
