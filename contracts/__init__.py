"""What the gateway, the consumers and the clients must agree on, and nothing else."""

from .errors import (
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
    from_wire,
)
from .frames import JSON, PARQUET, JsonCodec, ParquetCodec, decode_training, encode_training
from .settings import Settings, SettingsError
from .status import Backend, JobKind, Status
from .topology import Header, MessageType, Topology

__all__ = [
    "ArtifactIncompatible",
    "JSON",
    "PARQUET",
    "Backend",
    "DeadlineExceeded",
    "DecodeError",
    "Header",
    "InvalidInput",
    "JobKind",
    "JsonCodec",
    "MLServerError",
    "MessageType",
    "NotFound",
    "NotTrained",
    "ParquetCodec",
    "PayloadTooLarge",
    "Settings",
    "SettingsError",
    "Status",
    "Topology",
    "TrainingFailed",
    "Unavailable",
    "decode_training",
    "encode_training",
    "from_wire",
]
