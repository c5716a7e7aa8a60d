"""What the gateway, the consumers and the clients must agree on, and nothing else.

The names below are loaded on first use, so that a process that only needs
the settings or the topology (the `ml-server` command line, `ml-server run`)
does not import pandas and pyarrow for the frame codecs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ArtifactIncompatible": "errors",
    "DeadlineExceeded": "errors",
    "DecodeError": "errors",
    "InvalidInput": "errors",
    "MLServerError": "errors",
    "NotFound": "errors",
    "NotTrained": "errors",
    "PayloadTooLarge": "errors",
    "TrainingFailed": "errors",
    "Unavailable": "errors",
    "from_wire": "errors",
    "JSON": "frames",
    "PARQUET": "frames",
    "JsonCodec": "pandas_json",
    "ParquetCodec": "frames",
    "decode_training": "frames",
    "encode_training": "frames",
    "FamilyInfo": "families",
    "Settings": "settings",
    "SettingsError": "settings",
    "Backend": "status",
    "JobKind": "status",
    "Status": "status",
    "EventKind": "topology",
    "Header": "topology",
    "MessageType": "topology",
    "Topology": "topology",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:
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
    from .families import FamilyInfo
    from .frames import JSON, PARQUET, ParquetCodec, decode_training, encode_training
    from .pandas_json import JsonCodec
    from .settings import Settings, SettingsError
    from .status import Backend, JobKind, Status
    from .topology import EventKind, Header, MessageType, Topology


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'contracts' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
