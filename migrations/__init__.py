"""Alembic migrations for the autotrain schema."""
