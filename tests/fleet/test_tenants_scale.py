"""The tenant half of issue 18's scale test, small: 30 tenants x 3 tenant parts with
``--jobs 4`` use a fixed number of psql sessions (not one per tenant or per migration),
and a second run with nothing to do costs one history query for the whole fleet.

Sessions and queries are counted, not timed: the target's psql is a wrapper that logs
each start and has psql log every query it sends (``psql -L``) to a file per session.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.conftest import DbProject
from tests.fleet.test_tenants import add, set_tenants, tenant_list
from tests.migrate.history import history
from tests.migrate.test_apply_targets import set_target, toml_list

TENANTS = [f"t{i:02d}" for i in range(30)]
# psql -L's frame around each query: `********* QUERY **********` up to PostgreSQL 17,
# `/******** QUERY *********/` from 18 on; a line of stars (or `/***.../`) closes it.
QUERY = re.compile(r"^/?\*+ QUERY \*+/?\n(.*?)\n/?\*+/?$", re.M | re.S)


def counting_psql(project: DbProject, tmp_path: Path) -> Path:
    """Point the target at a wrapper named ``psql`` (so spawn treats it as psql) that
    logs each session's queries into its own file under the returned folder."""
    logs = tmp_path / "psql-logs"
    logs.mkdir()
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "psql"
    real = project.database.psql
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec {shlex.quote(real)} -L {shlex.quote(str(logs))}/session-$$.log "$@"\n',
        encoding="utf-8")
    wrapper.chmod(0o755)
    argv = [str(wrapper), *project.database.psql_argv()[1:]]
    set_target(project, f'{{ kind = "direct", direct = {toml_list(argv)} }}')
    return logs


def sessions_and_queries(logs: Path) -> tuple[int, list[str]]:
    """How many psql sessions started since the last call, and every query they sent;
    the logs are removed so the next run is counted alone."""
    queries: list[str] = []
    files = sorted(logs.glob("session-*.log"))
    for log in files:
        text = log.read_text(encoding="utf-8", errors="replace")
        queries.extend(match.group(1).strip() for match in QUERY.finditer(text))
        log.unlink()
    return len(files), queries


def without_numbers(query: str) -> str:
    return re.sub(r"-?\d+", "N", query)


def test_thirty_tenants_on_four_sessions_then_one_query_when_up_to_date(
        db_project: DbProject, tmp_path: Path) -> None:
    names = [
        add(db_project, "accounts", up="CREATE TABLE public.regions (id int PRIMARY KEY);\n",
            tenant="CREATE TABLE accounts (id bigint PRIMARY KEY, region int "
                   "REFERENCES public.regions);\n"),
        add(db_project, "invoices", tenant="CREATE TABLE invoices (id bigint PRIMARY KEY, "
                                           "account bigint REFERENCES accounts);\n"),
        add(db_project, "owner", tenant="INSERT INTO accounts (id) VALUES (1);\n"
                                        "COMMENT ON TABLE accounts IS {{ tenant }};\n"),
    ]
    logs = counting_psql(db_project, tmp_path)
    set_tenants(db_project, tenant_list(TENANTS))

    first = db_project.run("migration", "apply", "--yes", "--jobs", "4")

    assert first.exit_code == 0, first.stderr
    assert "30 tenants: 30 ok, 0 failed, 0 skipped" in first.stdout
    db = db_project.database
    assert db.query("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_t%'") == "30"
    assert db.query(
        "SELECT count(*) FROM _spawn.migration_history h JOIN _spawn.migration m "
        "ON m.migration_id = h.migration_id_migration WHERE m.namespace LIKE 'tenant:%' "
        "AND h.status_id_status = 'SUCCESS'") == str(30 * 3)
    assert history(db, "tenant:t29") == [(n, "APPLY", s) for n in names
                                         for s in ("ATTEMPTED", "SUCCESS")]
    assert db.query("SELECT obj_description('tenant_t07.accounts'::regclass)") == "t07"
    started, _ = sessions_and_queries(logs)
    # The control session and the shared part's runner, then per worker one control
    # session and one runner: at most 2 + 2 x 4, whatever the number of tenants.
    assert 4 <= started <= 2 + 2 * 4, started

    baseline = db_project.run("migration", "apply", "--yes", "--tenants", "none")
    assert baseline.exit_code == 0, baseline.stderr
    base_sessions, base_queries = sessions_and_queries(logs)

    again = db_project.run("migration", "apply", "--yes", "--jobs", "4")

    assert again.exit_code == 0, again.stderr
    assert again.stdout == "30 tenants: all up to date.\n"
    sessions, queries = sessions_and_queries(logs)
    assert sessions == base_sessions == 1
    # The run key spawn takes with the migration lock is random: compare without numbers.
    extra = [q for q in queries if without_numbers(q) not in map(without_numbers, base_queries)]
    assert len(queries) == len(base_queries) + 1, extra
    assert len(extra) == 1 and "LIKE 'tenant:%'" in extra[0]
