"""Enums shared by the schemas, the store's columns and the client."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Lifecycle of one training session (one version of a model)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (Status.DONE, Status.FAILED)

    @property
    def seed(self) -> SeedStatus:
        """The name the seed's API gives this status."""
        return SeedStatus(self.value.capitalize())


class SeedStatus(StrEnum):
    """Status names of the seed's API (`/{family}`), as its client's `ModelStatus` enum spells them.

    ml-server answers `Queued`, `Running`, `Done` and `Failed`; the seed's client also knows
    `Cancelled` and `Unknown`, which no ml-server version reaches."""

    QUEUED = "Queued"
    RUNNING = "Running"
    DONE = "Done"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    UNKNOWN = "Unknown"


class JobKind(StrEnum):
    """What a training session does: a full `fit` or a `partial_fit` update."""

    FIT = "fit"
    UPDATE = "update"
    IMPORT = "import"  # a model trained elsewhere, uploaded


class Backend(StrEnum):
    """How a fitted estimator is serialized into the store.

    `joblib`: a pickle, signed with the server's key. `skops`: a load builds
    only types on the server's allowlist and runs no pickled code. `onnx`: an ONNX graph run by
    onnxruntime (float32, only the methods that map onto the graph's outputs).
    """

    JOBLIB = "joblib"
    SKOPS = "skops"
    ONNX = "onnx"
