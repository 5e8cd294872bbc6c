"""Every reader of components/ refuses a symbolic link that leaves it (issue 11, item 2).

The Jinja loader (``include``, ``import``, ``from``, ``extends``), ``read_file`` and
the ``read_json|toml|yaml`` functions and filters all go through the working-tree
source; links that stay inside components/ are followed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spawn_db.errors import OutsideLink
from spawn_db.render.template import WorkingTreeSource, compile_template
from tests.helpers import run_spawn

SECRET_VALUE = "spawn-secret-5d1e02"

READERS = [
    '{% include "{p}" %}',
    '{% import "{p}" as m %}',
    '{% from "{p}" import x %}',
    '{% extends "{p}" %}',
    '{{ read_file("{p}") }}',
    '{{ "{p}" | read_file }}',
    '{{ read_json("{p}") }}',
    '{{ "{p}" | read_toml }}',
    '{{ read_yaml("{p}") }}',
]


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    assert run_spawn("init", cwd=root).exit_code == 0
    components = root / "spawn" / "components"
    (components / "lib").mkdir()
    (components / "lib" / "a.sql").write_text("SELECT 1;\n")
    (components / "data").mkdir()
    (components / "data" / "v.json").write_text('{"n": 1}')
    return root


def build_test(project: Path, template: str) -> tuple[int, str, str]:
    folder = project / "spawn" / "tests" / "t"
    folder.mkdir(exist_ok=True)
    (folder / "test.sql").write_text("SELECT 0;\n" + template)
    result = run_spawn("test", "build", "t", cwd=project, env={"PGPASSWORD": SECRET_VALUE})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("link", "target", "path", "shown"),
    [
        ("passwd.sql", "/etc/passwd", "passwd.sql", "passwd.sql is a symbolic link to /etc/passwd"),
        ("etc", "/etc", "etc/passwd", "etc is a symbolic link to /etc"),
        ("environ", "/proc/self/environ", "environ", "environ is a symbolic link to /proc/"),
        ("lib/up", "../..", "lib/up/spawn.toml", "lib/up is a symbolic link to "),
        ("x.json", "lib/../../../spawn.toml", "x.json", "x.json is a symbolic link to "),
    ],
)
def test_every_reader_refuses_a_link_leaving_components(
    project: Path, reader: str, link: str, target: str, path: str, shown: str
) -> None:
    (project / "spawn" / "components" / link).symlink_to(target)
    code, stdout, stderr = build_test(project, reader.replace("{p}", path))
    assert code == 1
    assert "root:" not in stdout and SECRET_VALUE not in stdout
    assert stderr.startswith(f"error: spawn/tests/t/test.sql:2: components/{shown}"), stderr
    assert stderr.endswith(", outside components/; spawn follows links only inside "
                           "components/ (copy the file into components/ instead)\n"), stderr
    assert SECRET_VALUE not in stderr


def test_migration_build_refuses_the_link_too(project: Path) -> None:
    (project / "spawn" / "components" / "passwd.sql").symlink_to("/etc/passwd")
    made = run_spawn("migration", "new", "m", cwd=project)
    folder = project / "spawn" / "migrations" / made.stdout.strip()
    (folder / "up.sql").write_text('{% include "passwd.sql" %}\n')
    result = run_spawn("migration", "build", made.stdout.strip(), cwd=project)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: spawn/migrations/{folder.name}/up.sql:1: components/passwd.sql is a "
        "symbolic link to /etc/passwd, outside components/; spawn follows links only inside "
        "components/ (copy the file into components/ instead)\n"
    )


@pytest.mark.parametrize("reader", READERS[:2] + READERS[4:7])
def test_links_inside_components_are_followed(project: Path, reader: str) -> None:
    components = project / "spawn" / "components"
    (components / "alias").symlink_to("lib/a.sql")
    (components / "chain").symlink_to("alias")
    (components / "same").symlink_to("./lib/../data")
    target = "chain" if "json" not in reader else "same/v.json"
    linked = build_test(project, reader.replace("{p}", target))
    direct = build_test(project, reader.replace("{p}", "lib/a.sql" if target == "chain"
                                                else "data/v.json"))
    assert linked == direct
    assert linked[0] == 0, linked


def test_a_components_folder_linked_inside_the_project_is_followed(project: Path) -> None:
    spawn = project / "spawn"
    os.rename(spawn / "components", spawn / "shared")
    (spawn / "components").symlink_to("shared")
    assert build_test(project, '{% include "lib/a.sql" %}') == (0, "SELECT 0;\nSELECT 1;\n", "")


def test_a_components_folder_linked_outside_the_project_is_refused(project: Path) -> None:
    spawn = project / "spawn"
    os.rename(spawn / "components", spawn / "old")
    (spawn / "components").symlink_to("/etc")
    code, stdout, stderr = build_test(project, '{% include "passwd" %}')
    assert (code, stdout) == (1, "")
    assert stderr == (
        f"error: spawn/tests/t/test.sql:2: {spawn / 'components'} is a symbolic link to /etc, "
        f"outside {spawn}; spawn reads components only from inside the project (move the "
        "files into it)\n"
    )


def test_a_fifo_or_folder_is_not_read(tmp_path: Path) -> None:
    """A named pipe would block the render forever; it is no component."""
    os.mkfifo(tmp_path / "pipe.sql")
    (tmp_path / "dir.sql").mkdir()
    source = WorkingTreeSource(tmp_path)
    assert source.read(["pipe.sql"]) is None
    assert source.read(["dir.sql"]) is None


def test_the_source_raises_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "secret").symlink_to("/etc/passwd")
    renderer = compile_template('{{ read_file("secret") }}', "up.sql", WorkingTreeSource(tmp_path))
    with pytest.raises(OutsideLink):
        WorkingTreeSource(tmp_path).read(["secret"])
    with pytest.raises(Exception) as info:
        renderer.render({})
    assert "up.sql:1: components/secret is a symbolic link to /etc/passwd" in str(info.value)
