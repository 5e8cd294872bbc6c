{% from "testing/factories.sql" import customer %}
-- full_name() joins title, first and last name, skipping what is missing.
\set VERBOSITY terse
BEGIN;
{{ customer(100, "Ada", "Lovelace", "ada@example.com", title="Countess") }}
{{ customer(101, "Alan", none, "alan@example.com") }}
SELECT id, full_name(c) AS name FROM customers c WHERE id >= 100 ORDER BY id;
-- A duplicate email is refused; the error is part of the expected output.
{{ customer(102, "Ada", "Again", "ada@example.com") }}
ROLLBACK;
