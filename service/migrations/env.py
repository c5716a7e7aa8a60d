"""Alembic environment: runs against the connection `service.schema` hands over."""

from __future__ import annotations

from alembic import context

from contracts.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
