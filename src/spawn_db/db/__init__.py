"""Reaching PostgreSQL: psql sessions, the scanner, targets, binaries, the embedded server."""
