"""``spawn schema flatten|export|import`` (issue 18) through the real entry point, on the
project's embedded server: a baseline has no drift against the migrations it replaces,
renders for other variables, and the dump alone round-trips."""

from __future__ import annotations

import stat

from spawn_db.db.catalog import CatalogObject, catalog_query, parse_catalog
from spawn_db.migrate.schema_drift import compare
from tests.conftest import EmbeddedProject

TARGETS = """
[targets.fresh]
engine = "postgres-psql"
command = { kind = "embedded", database = "fresh" }

[targets.copy]
engine = "postgres-psql"
command = { kind = "embedded", database = "copy" }
"""
OWNED = """\
CREATE SCHEMA {{ variables.owner | escape_identifier }};
CREATE TABLE {{ variables.owner | escape_identifier }}.t (
    id int PRIMARY KEY, note text DEFAULT {{ variables.owner }});
COMMENT ON TABLE {{ variables.owner | escape_identifier }}.t IS {{ "owned by " ~ variables.owner }};
CREATE FUNCTION public.who() RETURNS text LANGUAGE sql AS $$ SELECT {{ variables.owner }}::text $$;
"""
MORE = """\
CREATE TABLE public.u (id serial PRIMARY KEY, n numeric CHECK (n > {{ variables.limit }}));
CREATE INDEX u_n ON public.u (n);
CREATE VIEW public.v AS SELECT id, '{"a": 1}'::jsonb AS j FROM public.u;
"""


def setup(project: EmbeddedProject, *migrations: str) -> list[str]:
    """Targets ``fresh`` and ``copy`` beside ``local``, two variables files, the migrations
    written and pinned."""
    config = project.root / "spawn.toml"
    config.write_text(config.read_text(encoding="utf-8") + TARGETS, encoding="utf-8")
    (project.root / "acme.yaml").write_text("owner: acme\nlimit: 5\n", encoding="utf-8")
    (project.root / "globex.yaml").write_text("owner: globex\nlimit: 5\n", encoding="utf-8")
    names = []
    for index, sql in enumerate(migrations):
        name = f"2024010100000{index}-m{index}"
        folder = project.root / "spawn" / "migrations" / name
        folder.mkdir(parents=True)
        (folder / "up.sql").write_text(sql, encoding="utf-8")
        assert project.run("migration", "pin", name).exit_code == 0
        names.append(name)
    return names


def catalog(project: EmbeddedProject, target: str) -> dict[str, CatalogObject]:
    from spawn_db.config import Overrides, load_config
    from spawn_db.db.engine import engine_for

    config = load_config(Overrides(config_file=str(project.root / "spawn.toml"), target=target))
    chosen = config.target()
    session = engine_for(config, chosen).control_session(None)
    try:
        return parse_catalog(session.query(catalog_query((chosen.spawn_schema,)),
                                           what="read the schema"))
    finally:
        session.close()


def migrations(project: EmbeddedProject) -> list[str]:
    return sorted(p.name for p in (project.root / "spawn" / "migrations").iterdir()
                  if p.is_dir())


def ok(project: EmbeddedProject, *args: str) -> str:
    result = project.run(*args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_a_baseline_matches_its_migrations_and_renders_with_other_variables(
    embedded_project: EmbeddedProject,
) -> None:
    project = embedded_project
    old = setup(project, OWNED, MORE)
    ok(project, "migration", "apply", "--yes", "--variables", "acme.yaml")
    dry = project.run("schema", "flatten", "--dry-run", "--variables", "acme.yaml")
    assert dry.exit_code == 0, dry.stderr
    assert "CREATE SCHEMA {{ variables.owner | escape_identifier }};" in dry.stdout
    assert dry.stderr.endswith("Dry run: the baseline of 2 migrations (variables: "
                               "variables.owner); nothing written.\n")
    assert migrations(project) == old

    flattened = project.run("schema", "flatten", "--variables", "acme.yaml")

    assert flattened.exit_code == 0, flattened.stderr
    base = flattened.stdout.strip()
    assert base.endswith("-baseline") and base > old[-1]
    folder = project.root / "spawn" / "migrations" / base
    up = (folder / "up.sql").read_text(encoding="utf-8")
    assert "CREATE SCHEMA {{ variables.owner | escape_identifier }};" in up
    assert "note text DEFAULT {{ variables.owner }}::text" in up
    assert 'IS {{ "owned by " ~ variables.owner }};' in up
    assert up.startswith("BEGIN;\n\nSET check_function_bodies = false;\n")
    assert up.endswith("\nRESET check_function_bodies;\n\nCOMMIT;\n")
    assert "acme" not in up and "spawnvar" not in up and "\\restrict" not in up
    assert "_spawn" not in up and "OWNER TO" not in up
    assert (folder / "migration.toml").read_text(encoding="utf-8").startswith("baseline = true\n")
    assert (folder / "lock.toml").is_file()
    assert flattened.stderr == (
        "warning: variables.limit is not a string: where a migration uses it, the baseline "
        f"holds its value, not the variable\nWrote baseline {base}: the schema of 2 "
        "migrations, pinned (variables: variables.owner). It replaces them: an empty "
        "database runs only the baseline, an existing one adopts it.\n")

    # The database built by the migrations adopts the baseline, and drift rebuilds it from
    # the baseline: no difference.
    ok(project, "migration", "apply", "--yes", "--variables", "acme.yaml")
    drift = project.run("migration", "drift", "--variables", "acme.yaml")
    assert (drift.exit_code, drift.stdout) == (0, ""), drift.stderr
    assert drift.stderr == "No drift: database postgres matches the 1 applied migration.\n"

    # A new database runs only the baseline; with acme it is the same schema as the one
    # the migrations built, with globex the same with other names.
    ok(project, "--target", "copy", "migration", "apply", "--yes", "--variables", "acme.yaml")
    assert compare(catalog(project, "local"), catalog(project, "copy")) == []
    ok(project, "--target", "fresh", "migration", "apply", "--yes", "--variables",
       "globex.yaml")
    fresh = catalog(project, "fresh")
    assert "table globex.t" in fresh and "table acme.t" not in fresh
    assert fresh["column globex.t.note"].attrs["default"] == "'globex'::text"
    drift = project.run("--target", "fresh", "migration", "drift", "--variables", "globex.yaml")
    assert drift.exit_code == 0, drift.stdout + drift.stderr


def test_export_writes_a_private_dump_that_import_runs_in_one_transaction(
    embedded_project: EmbeddedProject,
) -> None:
    project = embedded_project
    setup(project, OWNED, MORE)
    ok(project, "migration", "apply", "--yes", "--variables", "acme.yaml")
    dump = project.root / "schema.sql"
    dump.write_text("old", encoding="utf-8")
    dump.chmod(0o644)

    exported = project.run("schema", "export", str(dump), "--variables", "acme.yaml")

    assert exported.exit_code == 0, exported.stderr
    assert exported.stderr == f"Exported the schema of 2 migrations to {dump}.\n"
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    text = dump.read_text(encoding="utf-8")
    assert "CREATE TABLE acme.t (" in text and "_spawn" not in text
    assert "\\restrict" not in text and "SET statement_timeout" not in text

    imported = project.run("--target", "copy", "schema", "import", str(dump))

    assert imported.exit_code == 0, imported.stderr
    assert imported.stderr == f"Imported {dump} into database copy.\n"
    live = catalog(project, "local")
    assert compare({k: v for k, v in live.items() if "_spawn" not in k},
                   catalog(project, "copy")) == []

    # A second import fails on the first object, and keeps nothing of what it ran.
    broken = project.root / "broken.sql"
    broken.write_text("CREATE TABLE public.kept (id int);\n" + text, encoding="utf-8")
    again = project.run("--target", "copy", "schema", "import", str(broken))
    assert again.exit_code == 1
    assert again.stderr.startswith(f"error: importing {broken} into target copy failed, and "
                                   "nothing of it was kept (one transaction); fix the file "
                                   "or the database:\n")
    assert 'schema "acme" already exists' in again.stderr
    assert "table public.kept" not in catalog(project, "copy")


def test_errors_name_what_to_fix(embedded_project: EmbeddedProject) -> None:
    project = embedded_project
    (project.root / "acme.yaml").write_text("owner: acme\n", encoding="utf-8")

    empty = project.run("schema", "flatten")
    assert (empty.exit_code, empty.stdout) == (1, "")
    assert empty.stderr == (
        f"error: there are no migrations to build the schema from in "
        f"{project.root / 'spawn' / 'migrations'}; create one with `spawn migration new "
        "<name>` (drafts are left out)\n")

    good, bad = setup(project, "CREATE TABLE public.t (id int);\n",
                      "CREATE TABLE public.t (id int);\n")
    failing = project.run("schema", "flatten")
    assert (failing.exit_code, failing.stdout) == (1, "")
    assert failing.stderr.startswith(
        f"error: migration {bad} failed on the scratch database, so the schema of the "
        "migrations cannot be dumped; fix what psql reports:\n")
    assert 'relation "t" already exists' in failing.stderr
    assert "Traceback" not in failing.stderr
    left = project.run("db", "shell", input="SELECT count(*) FROM pg_database "
                       "WHERE datname LIKE 'spawn_flatten_%';\n")
    assert left.stdout.split()[2] == "0", left.stdout  # the scratch database was dropped

    folder = project.root / "spawn" / "migrations" / bad
    (folder / "up.sql").write_text(
        "COMMENT ON TABLE public.t IS {{ variables.owner | upper }};\n", encoding="utf-8")
    ok(project, "migration", "pin", bad, "--force")
    upper = project.run("schema", "flatten", "--variables", "acme.yaml")
    assert (upper.exit_code, upper.stdout) == (1, "")
    assert upper.stderr.startswith(
        "error: variables.owner reaches the schema transformed (by a filter such as upper")
    assert migrations(project) == [good, bad]

    # A variable that decides a condition: the sentinel takes the other branch, and the
    # check of the baseline against the migrations finds it.
    (folder / "up.sql").write_text(
        '{% if variables.owner == "acme" %}CREATE TABLE public.acme_only (id int);{% endif %}\n',
        encoding="utf-8")
    ok(project, "migration", "pin", bad, "--force")
    branch = project.run("schema", "flatten", "--variables", "acme.yaml")
    assert (branch.exit_code, branch.stdout) == (1, "")
    assert branch.stderr.startswith(
        "error: the baseline, rendered with these variables, does not build what the "
        "migrations build with them (+ only the migrations', - only the baseline's: + table "
        "public.acme_only); a variable decides a condition")
    assert migrations(project) == [good, bad]

    bad_name = project.run("schema", "flatten", "--name", "no/slash")
    assert bad_name.exit_code == 2
    missing = project.run("schema", "import", "nowhere.sql")
    assert missing.exit_code == 2 and "nowhere.sql" in missing.stderr

