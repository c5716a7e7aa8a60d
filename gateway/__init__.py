"""The REST gateway: aiohttp in front of RabbitMQ and the SQL store."""

from .app import make_app

__all__ = ["make_app"]
