"""The example application's tests: each gets its own migrated database (spawn_db)."""

from __future__ import annotations

import psycopg
import pytest
from app import add_customer, add_order, total


def test_total_through_psycopg(spawn_db) -> None:
    with psycopg.connect(spawn_db.dsn) as conn:
        ada = add_customer(conn, "Ada", "Lovelace")
        add_order(conn, ada, "10.50")
        add_order(conn, ada, "4.50")
        assert total(conn, ada) == "15.00"


@pytest.mark.parametrize("run", [1, 2])
def test_every_test_starts_from_an_empty_migrated_database(spawn_db, run: int) -> None:
    assert spawn_db.psql("SELECT count(*) FROM customers") == "0"
    spawn_db.psql("INSERT INTO customers (first_name) VALUES ('Grace')")
    assert spawn_db.psql("SELECT first_name FROM customers") == "Grace"


def test_a_check_constraint_through_psql(spawn_db) -> None:
    from spawn_db.errors import PsqlError

    spawn_db.psql("INSERT INTO customers (first_name) VALUES ('Alan')")
    with pytest.raises(PsqlError, match="orders_amount_check"):
        spawn_db.psql("INSERT INTO orders (customer_id, amount) VALUES (1, -1)")


def test_the_data_migration_splits_full_names(spawn_db_at) -> None:
    db = spawn_db_at("customers")
    db.psql("INSERT INTO customers (full_name) VALUES ('Ada Lovelace'), ('Plato')")
    db.apply("split-names")
    assert db.psql("SELECT first_name, coalesce(last_name, '-') FROM customers "
                   "ORDER BY id") == "Ada|Lovelace\nPlato|-"


def test_the_template_is_named_by_its_inputs(spawn_template, spawn_project) -> None:
    assert spawn_template.name.startswith("spawn_tpl_")
    assert spawn_project.tests() == ("totals",)
