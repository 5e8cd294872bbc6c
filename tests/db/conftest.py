"""Fixtures for the embedded-server tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spawn_db.config import Overrides, load_config
from spawn_db.db import embedded
from tests.conftest import EmbeddedProject
from tests.helpers import run_spawn


def project_cluster(root: Path) -> embedded.Cluster:
    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    return embedded.project_cluster(config, config.target())


def remove(path: Path) -> None:
    """A link is removed, not followed; a folder with everything in it."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def long_project() -> Iterator[EmbeddedProject]:
    """A project so deep that its socket goes to /tmp/spawn-<hash>; its server is stopped
    and the socket folder removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="spawn-long-", dir="/tmp"))
    os.chmod(base, 0o755)
    root = base / ("deep-" * 12) / ("deeper-" * 8)
    root.mkdir(parents=True)
    for parent in [root, *root.parents]:
        if parent == base:
            break
        os.chmod(parent, 0o755)
    result = run_spawn("init", cwd=root)
    assert result.exit_code == 0, result.stderr
    cluster = project_cluster(root)
    assert cluster.socket_dir.parent == Path("/tmp")
    try:
        yield EmbeddedProject(root)
    finally:
        embedded.stop(cluster)
        shutil.rmtree(base, ignore_errors=True)
        remove(cluster.socket_dir)
