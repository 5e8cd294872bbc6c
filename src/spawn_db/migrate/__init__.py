"""The migration lifecycle: authoring, apply/adopt/status, the psql runner, the tracking schema."""
