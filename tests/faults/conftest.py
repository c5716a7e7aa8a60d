"""Fixtures of the fault tests: where figures go, and a private RabbitMQ node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .broker import PrivateBroker


@pytest.fixture(scope="session")
def figures_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One JSON line per fault test, under the run's pytest tmp dir (quoted by the README's Reliability section)."""
    return tmp_path_factory.getbasetemp() / "fault-figures.jsonl"


@pytest.fixture
def private_broker() -> Iterator[PrivateBroker]:
    broker = PrivateBroker()
    try:
        yield broker
    finally:
        broker.delete()
