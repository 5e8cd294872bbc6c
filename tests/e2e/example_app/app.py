"""The example application: a little code that talks to the database spawn migrates."""

from __future__ import annotations

import psycopg


def add_customer(conn: psycopg.Connection, first_name: str, last_name: str | None) -> int:
    row = conn.execute(
        "INSERT INTO customers (first_name, last_name) VALUES (%s, %s) RETURNING id",
        (first_name, last_name)).fetchone()
    assert row is not None
    return int(row[0])


def add_order(conn: psycopg.Connection, customer: int, amount: str) -> None:
    conn.execute("INSERT INTO orders (customer_id, amount) VALUES (%s, %s)", (customer, amount))


def total(conn: psycopg.Connection, customer: int) -> str:
    row = conn.execute("SELECT customer_total(%s)::text", (customer,)).fetchone()
    assert row is not None
    return str(row[0])
