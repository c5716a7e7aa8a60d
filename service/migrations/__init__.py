"""Alembic migrations of the store's schema (`ml-server migrate` applies them)."""
