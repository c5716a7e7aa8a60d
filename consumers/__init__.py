"""Consumer processes: fitting and predicting the models of one or more families, from RabbitMQ.

Loaded on first use, so that naming a family (`consumers.families`) does not start the whole consumer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {"BUILTIN": "families", "Estimator": "families", "Family": "families", "load_family": "families", "Consumer": "worker"}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from .families import BUILTIN, Estimator, Family, load_family
    from .worker import Consumer


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'consumers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
