"""A spawn folder in S3 (issue 19), against a real S3-compatible server (moto in server
mode on 127.0.0.1) and the real ``spawn`` entry point: builds, apply, status, tests and pin
writes through the bucket."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DbProject
from tests.helpers import run_spawn


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    finally:
        server.stop()


def bucket(s3: dict[str, str], name: str) -> Any:
    """An fsspec S3 file system on the test server, with the bucket created."""
    import s3fs

    fs = s3fs.S3FileSystem(key=s3["AWS_ACCESS_KEY_ID"], secret=s3["AWS_SECRET_ACCESS_KEY"],
                           endpoint_url=s3["AWS_ENDPOINT_URL"])
    fs.mkdir(name)
    return fs


def upload(fs: Any, folder: Path, prefix: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"{prefix}/{path.relative_to(folder)}", path.read_bytes())


def to_remote(db_project: DbProject, s3: dict[str, str], name: str) -> Any:
    """Upload the project's spawn folder to s3://NAME/project and point spawn.toml at it;
    the local folder is removed, so every read must come from the bucket."""
    fs = bucket(s3, name)
    upload(fs, db_project.spawn_dir, f"{name}/project")
    text = db_project.config_path.read_text(encoding="utf-8")
    db_project.config_path.write_text(
        text.replace('spawn_folder = "spawn"', f'spawn_folder = "s3://{name}/project"'),
        encoding="utf-8")
    shutil.rmtree(db_project.spawn_dir)
    return fs


def test_pinned_build_from_s3_is_byte_identical_and_apply_and_status_work(
    db_project: DbProject, s3: dict[str, str],
) -> None:
    component = db_project.add_component("greet.sql", "SELECT 'v1' AS version;\n")
    name = db_project.add_migration("greet", "{% include 'greet.sql' %}\n")
    component.write_text("SELECT 'v2' AS version;\n", encoding="utf-8")
    local = db_project.run("migration", "build", name, "--pinned")
    assert local.stdout == "SELECT 'v1' AS version;\n"
    to_remote(db_project, s3, "bytes")

    remote = db_project.run("migration", "build", name, "--pinned", env=s3)
    applied = db_project.run("migration", "apply", "--yes", env=s3)
    status = db_project.run("migration", "status", "--format", "json", env=s3)

    assert (remote.exit_code, remote.stdout) == (0, local.stdout), remote.stderr
    assert applied.exit_code == 0, applied.stderr
    assert '"applied"' in status.stdout or '"Applied"' in status.stdout, status.stdout
    assert db_project.database.query(
        "SELECT count(*) FROM _spawn.migration WHERE namespace = 'default'") == "1"


def test_pin_and_new_write_back_to_the_bucket(db_project: DbProject,
                                              s3: dict[str, str]) -> None:
    db_project.add_component("a.sql", "SELECT 1;\n")
    fs = to_remote(db_project, s3, "writes")

    new = db_project.run("migration", "new", "later", env=s3)
    assert new.exit_code == 0, new.stderr
    folder = next(p.split("/")[-1] for p in fs.ls("writes/project/migrations")
                  if p.endswith("-later"))
    fs.pipe_file(f"writes/project/migrations/{folder}/up.sql", b"{% include 'a.sql' %}\n")
    pinned = db_project.run("migration", "pin", folder, env=s3)

    assert pinned.exit_code == 0, pinned.stderr
    lock = fs.cat_file(f"writes/project/migrations/{folder}/lock.toml").decode()
    assert lock.startswith("pin = ")
    assert fs.find("writes/project/pinned"), "no pin objects were uploaded"
    again = db_project.run("migration", "build", folder, "--pinned", env=s3)
    assert (again.exit_code, again.stdout) == (0, "SELECT 1;\n"), again.stderr


def test_a_golden_test_runs_from_the_bucket(db_project: DbProject, s3: dict[str, str]) -> None:
    test = db_project.add_test("one", "SELECT 1 AS one;\n")
    (test.parent / "expected").write_text(" one \n-----\n   1\n(1 row)\n\n", encoding="utf-8")
    to_remote(db_project, s3, "tests")

    result = db_project.run("test", "compare", env=s3)

    assert result.exit_code == 0, result.stdout + result.stderr
    assert "[PASS] one" in result.stdout


def test_an_unreachable_bucket_is_one_line_naming_it(tmp_path: Path,
                                                     s3: dict[str, str]) -> None:
    (tmp_path / "spawn.toml").write_text('spawn_folder = "s3://no-such-bucket/x"\n',
                                         encoding="utf-8")

    result = run_spawn("migration", "list", cwd=tmp_path, env=s3)

    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot list spawn_folder s3://no-such-bucket/x: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
