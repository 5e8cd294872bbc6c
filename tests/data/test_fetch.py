"""spawn data fetch / status against a real HTTP server on 127.0.0.1 and real scripts."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spawn_db.project import init_project
from tests.helpers import Result, run_spawn, start_spawn

COUNTRIES = b"code,name\r\nfr,France\r\nde,\"Germany, Federal Republic\"\r\n"
NO_PROXY = {"no_proxy": "*", "NO_PROXY": "*", "http_proxy": "", "https_proxy": "",
            "HTTP_PROXY": "", "HTTPS_PROXY": ""}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """A real HTTP server on 127.0.0.1 in a thread, serving ``files`` and counting requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = init_project(root).config_path
        self.base = self.config.read_text(encoding="utf-8")
        self.data = root / "spawn" / "components" / "data"

    def declare(self, toml: str) -> None:
        self.config.write_text(self.base + "\n" + toml, encoding="utf-8")

    def run(self, *args: str) -> Result:
        return run_spawn(*args, cwd=self.root, env=NO_PROXY)

    def leftovers(self) -> list[str]:
        """Files in components/data/ other than the given ones (temporary files)."""
        return sorted(p.name for p in self.data.iterdir()) if self.data.exists() else []


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_fetch_downloads_checks_and_writes_then_status_is_ok(project: Project,
                                                             server: Server) -> None:
    server.files["/v1/countries.csv?x=1"] = COUNTRIES
    url = server.url("/v1/countries.csv?x=1")
    project.declare(f'[data.countries]\nurl = "{url}"\nsha256 = "{sha(COUNTRIES).upper()}"\n')
    before = project.run("data", "status")
    assert (before.exit_code, before.stdout) == (1, (
        "Source     State    File                           Detail\n"
        "---------  -------  -----------------------------  "
        "-------------------------------------------------\n"
        "countries  missing  components/data/countries.csv  not fetched yet; run "
        "`spawn data fetch countries`\n"))

    fetched = project.run("data", "fetch")
    assert (fetched.exit_code, fetched.stdout, fetched.stderr) == (0, (
        f"Fetched countries: components/data/countries.csv ({len(COUNTRIES)} bytes, sha256 "
        f"{sha(COUNTRIES)}).\n"), "Pin the migrations that read the new data to snapshot it: "
        "`spawn migration pin <migration>`.\n")
    assert (project.data / "countries.csv").read_bytes() == COUNTRIES
    assert project.leftovers() == ["countries.csv"]

    after = project.run("data", "status", "--format", "json")
    assert after.exit_code == 0
    assert json.loads(after.stdout) == {"sources": [{
        "name": "countries", "state": "ok", "path": "components/data/countries.csv",
        "kind": "url", "url": url, "command": None, "declared_sha256": sha(COUNTRIES),
        "sha256": sha(COUNTRIES)}]}

    again = project.run("data", "fetch", "countries")
    assert (again.exit_code, again.stdout, again.stderr) == (
        0, "countries: components/data/countries.csv is up to date (sha256 matches).\n", "")
    assert server.requests == ["/v1/countries.csv?x=1"]


def test_a_hash_mismatch_changes_nothing_and_says_expected_and_got(project: Project,
                                                                  server: Server) -> None:
    server.files["/c.csv"] = COUNTRIES
    old = b"code,name\nfr,France\n"
    project.declare(f'[data.countries]\nurl = "{server.url("/c.csv")}"\nsha256 = "{sha(old)}"\n'
                    '[data.other]\ncommand = ["sh", "-c", "echo a"]\n')
    project.data.mkdir(parents=True)
    (project.data / "countries.csv").write_bytes(b"code,name\nxx,Changed by hand\n")

    stale = project.run("data", "status", "countries")
    assert stale.exit_code == 1
    assert stale.stdout.splitlines()[2].split() == [
        "countries", "stale", "components/data/countries.csv", "sha256",
        sha(b"code,name\nxx,Changed by hand\n") + ",", "spawn.toml", "declares",
        sha(old) + ";", "run", "`spawn", "data", "fetch", "countries`"]

    refused = project.run("data", "fetch")
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"error: data source `countries`: {server.url('/c.csv')} has sha256 {sha(COUNTRIES)}, "
        f"but spawn.toml declares {sha(old)}; nothing was changed (if the new data is "
        "intended, put the new sha256 in [data.countries])\n")
    assert (project.data / "countries.csv").read_bytes() == b"code,name\nxx,Changed by hand\n"
    assert project.leftovers() == ["countries.csv"]


def test_an_unreachable_url_is_one_line_and_exit_1(project: Project) -> None:
    url = f"http://127.0.0.1:{unused_port()}/c.csv"
    project.declare(f'[data.c]\nurl = "{url}"\nsha256 = "{sha(b"")}"\n')
    failed = project.run("data", "fetch", "c")
    assert (failed.exit_code, failed.stdout) == (1, "")
    assert failed.stderr == (
        f"error: data source `c`: cannot download {url}: Connection refused; nothing was "
        "changed (check the address and the network or proxy, then run `spawn data fetch` "
        "again)\n")
    assert project.leftovers() == []


def test_an_http_error_is_named(project: Project, server: Server) -> None:
    project.declare(f'[data.c]\nurl = "{server.url("/gone.json")}"\nsha256 = "{sha(b"")}"\n')
    failed = project.run("data", "fetch")
    assert failed.exit_code == 1
    assert failed.stderr == (
        f"error: data source `c`: cannot download {server.url('/gone.json')}: the server "
        "answered HTTP 404 Not Found; nothing was changed (check the address and the network "
        "or proxy, then run `spawn data fetch` again)\n")
    assert project.leftovers() == []


def test_a_command_source_writes_its_output(project: Project) -> None:
    script = project.root / "export.sh"
    script.write_text('#!/bin/sh\necho "id,name"\necho "1,$(pwd)"\necho progress >&2\n',
                      encoding="utf-8")
    script.chmod(0o755)
    project.declare('[data.people]\ncommand = ["./export.sh"]\npath = "crm/people.csv"\n')
    assert project.run("data", "status").stdout.splitlines()[2].split()[:2] == [
        "people", "missing"]

    fetched = project.run("data", "fetch", "people")
    assert fetched.exit_code == 0, fetched.stderr
    expected = f"id,name\n1,{project.root}\n".encode()
    assert (project.data / "crm" / "people.csv").read_bytes() == expected
    assert fetched.stdout == (f"Fetched people: components/data/crm/people.csv ({len(expected)} "
                              f"bytes, sha256 {sha(expected)}).\n")
    assert fetched.stderr.startswith("progress\n")
    status = project.run("data", "status")
    assert status.exit_code == 0
    assert status.stdout.splitlines()[2].split(None, 3) == [
        "people", "ok", "components/data/crm/people.csv",
        "present (a command's output has no declared sha256 to check)"]


def test_a_failing_command_changes_nothing(project: Project) -> None:
    x_line, y_line = sha(b"x\n"), sha(b"y\n")
    project.declare('[data.people]\ncommand = ["sh", "-c", "echo partial; exit 3"]\n'
                    '[data.gone]\ncommand = ["./no-such-script"]\n'
                    '[data.checked]\ncommand = ["echo", "x"]\n'
                    f'sha256 = "{y_line}"\n')
    project.data.mkdir(parents=True)
    (project.data / "people.csv").write_bytes(b"old\n")
    failed = project.run("data", "fetch", "people")
    assert (failed.exit_code, failed.stderr) == (1, (
        "error: data source `people`: `sh -c echo partial; exit 3` exited with status 3; "
        "nothing was changed (its error output is above)\n"))
    assert (project.data / "people.csv").read_bytes() == b"old\n"
    missing = project.run("data", "fetch", "gone")
    assert (missing.exit_code, missing.stderr) == (1, (
        "error: data source `gone`: cannot run `./no-such-script`: No such file or directory; "
        f"the command runs in {project.root} (check the path and that it is executable)\n"))
    mismatch = project.run("data", "fetch", "checked")
    assert mismatch.exit_code == 1
    assert mismatch.stderr == (
        f"error: data source `checked`: the output of `echo x` has sha256 {x_line}, but "
        f"spawn.toml declares {y_line}; nothing was changed (if the new data is intended, put "
        "the new sha256 in [data.checked])\n")
    assert project.leftovers() == ["people.csv"]


def test_rendering_never_fetches_and_a_pin_keeps_the_data_it_took(project: Project,
                                                                  server: Server) -> None:
    first, second = b"code\nfr\n", b"code\nfr\nde\n"
    server.files["/c.csv"] = first
    source = f'[data.countries]\nurl = "{server.url("/c.csv")}"\nsha256 = "%s"\n'
    project.declare(source % sha(first))
    assert project.run("data", "fetch").exit_code == 0
    new = project.run("migration", "new", "countries")
    folder = next((project.root / "spawn" / "migrations").glob("*-countries"))
    (folder / "up.sql").write_text(
        '{% for c in read_csv("data/countries.csv") %}INSERT INTO c VALUES ({{ c.code }});\n'
        "{% endfor %}", encoding="utf-8")
    assert (new.exit_code, project.run("migration", "pin", folder.name).exit_code) == (0, 0)

    server.files["/c.csv"] = second
    project.declare(source % sha(second))
    assert project.run("data", "fetch").exit_code == 0
    requests = len(server.requests)
    pinned = project.run("migration", "build", folder.name, "--pinned")
    tree = project.run("migration", "build", folder.name)
    assert pinned.stdout == "INSERT INTO c VALUES ('fr');\n\n"  # build ends with a newline
    assert tree.stdout == "INSERT INTO c VALUES ('fr');\nINSERT INTO c VALUES ('de');\n\n"
    assert len(server.requests) == requests


def test_unknown_name_and_no_sources(project: Project) -> None:
    none = project.run("data", "status")
    assert (none.exit_code, none.stdout, none.stderr) == (0, "", (
        "No data sources in spawn.toml; declare one as [data.<name>] with `url` and "
        "`sha256`, or `command` (see docs/data.md).\n"))
    project.declare('[data.a]\ncommand = ["true"]\n')
    unknown = project.run("data", "fetch", "b")
    assert (unknown.exit_code, unknown.stderr) == (2, (
        f"error: no data source `b` in {project.config} (declared: a); add a [data.b] table\n"))


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[data.c]\nurl = "https://example.com/c.csv"\n',
         "[data.c] has a `url` but no `sha256`; add `sha256 = \"<64 hex digits>\"` (run "
         "`sha256sum` on a copy you checked), so a changed download is refused"),
        ('[data.c]\nurl = "ftp://example.com/c.csv"\nsha256 = "' + "a" * 64 + '"\n',
         "[data.c] `url` 'ftp://example.com/c.csv' must be an https:// (or http://) address"),
        ('[data.c]\nurl = "https://example.com/c.csv"\nsha256 = "abc"\n',
         "[data.c] `sha256` must be 64 hex digits (the output of `sha256sum FILE`)"),
        ('[data.c]\ncommand = ["x"]\nurl = "https://e.com/c"\nsha256 = "' + "a" * 64 + '"\n',
         "[data.c] needs exactly one of `url` (a download, with `sha256`) or `command` (a "
         'program whose output is the file, e.g. `command = ["./export.sh"]`)'),
        ("[data.c]\n",
         "[data.c] needs exactly one of `url` (a download, with `sha256`) or `command` (a "
         'program whose output is the file, e.g. `command = ["./export.sh"]`)'),
        ('[data.c]\ncommand = []\n',
         '[data.c] `command` must be a non-empty list of strings, e.g. `command = '
         '["./export.sh"]`'),
        ('[data.c]\ncommand = ["x"]\npath = "../escape.csv"\n',
         "[data.c] `path` '../escape.csv' must be a relative path under components/data/ (no "
         "`..`, no leading `/`)"),
        ('[data."../c"]\ncommand = ["x"]\n',
         '[data."../c"]: a data source name uses letters, digits, `_`, `-` and `.` (it names '
         "the file), e.g. [data.countries]"),
    ],
)
def test_bad_data_tables_are_configuration_errors(project: Project, toml: str,
                                                  problem: str) -> None:
    project.declare(toml)
    failed = project.run("data", "status")
    assert (failed.exit_code, failed.stderr) == (2, f"error: {project.config}: {problem}\n")


def test_default_file_names_and_unknown_keys(project: Project) -> None:
    digest = "a" * 64
    project.declare(f'[data.geo]\nurl = "https://example.com/dl/World%20Map.GeoJSON?v=2"\n'
                    f'sha256 = "{digest}"\n[data.plain]\nurl = "https://example.com/export"\n'
                    f'sha256 = "{digest}"\nsha265 = "typo"\n')
    status = project.run("data", "status", "--format", "json")
    assert [s["path"] for s in json.loads(status.stdout)["sources"]] == [
        "components/data/geo.geojson", "components/data/plain.csv"]
    assert status.stderr == (f"warning: unknown key `sha265` in {project.config} [data.plain] "
                             "(ignored; the closest known key is `sha256`)\n")


def test_a_fetch_killed_midway_leaves_nothing_under_components(project: Project) -> None:
    """SIGKILL cannot clean up: the half-written file must not be where `spawn migration pin`
    looks (the pin store records dot-files too), so the output goes to `.spawn/tmp/`, and
    the next fetch removes what a dead one left there."""
    gate = project.root / "command.pid"
    project.declare('[data.people]\ncommand = ["sh", "-c", '
                    f'"echo id,name; echo 1,ann; echo $$ > {gate}; exec sleep 60"]\n')
    project.data.mkdir(parents=True)
    (project.data / "people.csv").write_bytes(b"old\n")
    fetching = start_spawn("data", "fetch", "people", cwd=project.root, env=NO_PROXY)
    deadline = time.monotonic() + 30
    while not gate.exists() or not gate.read_text().strip():
        assert time.monotonic() < deadline and fetching.poll() is None, "the command never ran"
        time.sleep(0.02)
    temporary = project.root / ".spawn" / "tmp"
    while not any(path.stat().st_size for path in [*temporary.glob(".*"),
                                                     *project.data.glob(".*")]):
        assert time.monotonic() < deadline, "spawn wrote nothing of the command's output"
        time.sleep(0.02)
    fetching.kill()
    os.kill(int(gate.read_text()), signal.SIGKILL)  # holds spawn's stderr pipe open
    fetching.communicate(timeout=30)

    assert project.leftovers() == ["people.csv"]
    assert (project.data / "people.csv").read_bytes() == b"old\n"
    project.declare('[data.people]\ncommand = ["echo", "id"]\n')
    again = project.run("data", "fetch", "people")
    assert again.exit_code == 0, again.stderr
    assert (project.data / "people.csv").read_bytes() == b"id\n"
    assert project.leftovers() == ["people.csv"]
    assert list(temporary.iterdir()) == []
