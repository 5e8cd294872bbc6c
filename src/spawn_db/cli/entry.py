"""The ``spawn`` executable's entry point.

``spawn --version`` is answered before click and the command tree are
imported, so scripts that probe the version pay only for an interpreter start.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from spawn_db import __version__
        from spawn_db.db.pgbin import describe_binaries

        sys.stdout.write(f"spawn {__version__}\n{describe_binaries()}\n")
        return
    from spawn_db.cli.main import main as run

    run()
