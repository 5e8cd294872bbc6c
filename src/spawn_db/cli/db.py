"""``spawn db ...``: manage the project's embedded PostgreSQL server."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.output import emit_json, info

if TYPE_CHECKING:
    from spawn_db.config import TargetConfig
    from spawn_db.db.embedded import Cluster, ServerStatus


@click.group()
def db() -> None:
    """Start, stop and inspect the embedded PostgreSQL server; diff a database's schema.

    start, stop, status and shell manage the selected target's embedded server (the
    target must have `command = { kind = "embedded" }`); diff works on any target.
    """


def _cluster(app: App) -> tuple[TargetConfig, Cluster]:
    from spawn_db.db import embedded

    config = app.config()
    target = embedded.require_embedded(config)
    return target, embedded.project_cluster(config, target)


@db.command()
@pass_app
def start(app: App) -> None:
    """Create the cluster if needed and start the server."""
    from spawn_db.db import embedded

    _, cluster = _cluster(app)
    running = embedded.ensure_running(cluster)
    version = running.bins.version
    if running.created:
        info(f"Created a PostgreSQL {version} cluster in {cluster.data_dir}")
    if running.started:
        info(f"Started PostgreSQL {version} (pid {running.pid}) on socket {running.socket_dir}")
    else:
        info(f"PostgreSQL is already running (pid {running.pid}) on socket "
             f"{running.socket_dir}")


@db.command()
@pass_app
def stop(app: App) -> None:
    """Stop the server (fast shutdown: open sessions are ended, data is kept)."""
    from spawn_db.db import embedded

    _, cluster = _cluster(app)
    pid = embedded.stop(cluster)
    info(f"Stopped PostgreSQL (pid {pid})" if pid else "PostgreSQL is not running")


@db.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@pass_app
def status(app: App, fmt: str) -> None:
    """Show whether the server runs, where its files are, and which binaries it uses."""
    from spawn_db.db import embedded

    target, cluster = _cluster(app)
    found = embedded.status(cluster)
    if fmt == "json":
        emit_json(_status_json(found))
        return
    for label, value in _status_lines(found, target.command.database):
        info(f"{label + ':':<11} {value}")


def _status_lines(found: ServerStatus, database: str) -> list[tuple[str, str]]:
    from spawn_db.db.target import display_command

    cluster = found.cluster
    if found.running:
        state = f"running (pid {found.pid})"
    elif found.initialized:
        state = "stopped (any command that needs the database starts it)"
    else:
        state = "not created yet (any command that needs the database creates it)"
    data = f"{cluster.data_dir}"
    if found.data_version:
        data += f" (PostgreSQL {found.data_version})"
    if found.bins is not None:
        bins = (f"{found.bins.bin_dir} (PostgreSQL {found.bins.version}, "
                f"found via {found.bins.source})")
    else:
        bins = f"none found: {found.bins_error}"
    lines = [
        ("Status", state),
        ("Data dir", data),
        ("Socket", f"{found.socket_dir} (port {cluster.port}, no TCP)"),
    ]
    if found.server_version:
        lines.append(("Server", f"PostgreSQL {found.server_version}"))
    lines += [
        ("Binaries", bins),
        ("Runs as", f"OS user {found.os_user}; superuser role {cluster.superuser}"),
        ("Log", str(cluster.log_path)),
    ]
    lines += [("Note", note) for note in cluster.notes]
    if found.bins is not None:
        argv = [str(found.bins.psql), "-h", str(found.socket_dir), "-p", str(cluster.port),
                "-U", cluster.superuser, "-d", database]
        lines.append(("Connect", f"spawn db shell  (or: {display_command(argv)})"))
    return lines


def _status_json(found: ServerStatus) -> dict[str, Any]:
    cluster = found.cluster
    return {
        "running": found.running,
        "pid": found.pid,
        "initialized": found.initialized,
        "data_dir": str(cluster.data_dir),
        "data_version": found.data_version,
        "socket_dir": str(found.socket_dir),
        "port": cluster.port,
        "server_version": found.server_version,
        "binaries": None if found.bins is None else {
            "bin_dir": str(found.bins.bin_dir),
            "version": found.bins.version,
            "source": found.bins.source,
        },
        "binaries_error": found.bins_error,
        "os_user": found.os_user,
        "superuser": cluster.superuser,
        "log": str(cluster.log_path),
        "notes": list(cluster.notes),
    }


@db.command(context_settings={"ignore_unknown_options": True,
                              "allow_interspersed_args": False})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@pass_app
def shell(app: App, psql_args: tuple[str, ...]) -> None:
    """Open psql on the server (starting it if needed); extra arguments go to psql.

    A first argument that is not an option names the database, as with psql:
    `spawn db shell mydb -c 'select 1'`.
    """
    from spawn_db.db import embedded

    config = app.config()
    target = embedded.require_embedded(config)
    args = list(psql_args)
    argv = embedded.psql_argv_for_target(config, target)
    if args and not args[0].startswith("-"):
        argv[argv.index("-d") + 1] = args.pop(0)
    argv = [a for a in argv if a != "-X"] + args
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
