"""Any text passed as a variable and rendered with ``{{ v }}`` is stored exactly."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.config import Overrides, load_config
from spawn_db.migrate.apply import apply
from tests.conftest import DbProject

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=200)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=TEXT)
def test_variable_text_round_trips_through_psql(db_project: DbProject, value: str) -> None:
    counter = _counters.setdefault(db_project.root, itertools.count(1))
    n = next(counter)
    if n == 1:
        db_project.database.query("CREATE TABLE vals (id int PRIMARY KEY, v text NOT NULL)")
    name = db_project.add_migration(f"value-{n}",
                                    f"INSERT INTO vals VALUES ({n}, {{{{ variables.v }}}});\n")
    config = load_config(Overrides(config_file=str(db_project.config_path)))

    apply(config, name, variables={"v": value})

    stored = db_project.database.query(
        f"SELECT encode(convert_to(v, 'UTF8'), 'hex') FROM vals WHERE id = {n}")
    assert stored == value.encode("utf-8").hex()


_counters: dict[object, itertools.count[int]] = {}
