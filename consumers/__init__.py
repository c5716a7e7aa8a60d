"""Consumer processes: one model family each, fitting and predicting from RabbitMQ."""

from .families import BUILTIN, Family, load_family
from .worker import Worker

__all__ = ["BUILTIN", "Family", "Worker", "load_family"]
