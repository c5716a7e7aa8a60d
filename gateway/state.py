"""Typed keys for what the application holds for its lifetime."""

from __future__ import annotations

from aiohttp import web

from contracts.settings import Settings

from .batching import Coalescer
from .records import Records
from .registry import Registry
from .rpc import Broker

SETTINGS = web.AppKey("settings", Settings)
RECORDS = web.AppKey("records", Records)
REGISTRY = web.AppKey("registry", Registry)
BROKER = web.AppKey("broker", Broker)
COALESCER = web.AppKey("coalescer", Coalescer)
