"""Alembic migrations: the only place where the schema is defined in DDL."""
