"""Reading the tracking tables back, for tests that check what apply recorded."""

from __future__ import annotations

from tests.conftest import TestDatabase


def history(database: TestDatabase, namespace: str = "default") -> list[tuple[str, ...]]:
    """(name, activity, status) of every history row, oldest first."""
    text = database.query(
        "SELECT m.name, h.activity_id_activity, h.status_id_status "
        "FROM _spawn.migration_history h JOIN _spawn.migration m "
        "ON m.migration_id = h.migration_id_migration "
        f"WHERE m.namespace = '{namespace}' ORDER BY h.migration_history_id"
    )
    return [tuple(line.split("|")) for line in text.splitlines()]


def latest(database: TestDatabase) -> dict[str, str]:
    rows = history(database)
    return {name: status for name, _, status in rows}
