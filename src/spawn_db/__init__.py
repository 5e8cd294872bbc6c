"""Spawn: a database build system for PostgreSQL."""

# The only place the version is written: pyproject.toml reads it from here when the
# package is built (``dynamic = ["version"]``), and ``spawn --version`` prints it
# without the cost of importlib.metadata.
__version__ = "0.1.0"
