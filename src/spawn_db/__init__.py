"""Spawn: a database build system for PostgreSQL."""

__version__ = "0.1.0"
