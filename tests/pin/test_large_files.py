"""Large files under components/ are pinned chunk by chunk, not read whole into memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.pin.snapshot import STREAM_MIN_SIZE, snapshot
from spawn_db.pin.store import STREAM_CHUNK, PinStore, read_lock
from tests.helpers import run_spawn, spawn_env

MIB = 1 << 20
PEAK = """\
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def write_random(path: Path, size: int) -> bytes:
    """A file of ``size`` bytes that repeats one random MiB (cheap to write, not sparse)."""
    block = os.urandom(MIB)
    with path.open("wb") as out:
        for offset in range(0, size, MIB):
            out.write(block[: min(MIB, size - offset)])
    return block


def test_pinning_a_large_file_does_not_hold_it_in_memory(tmp_path: Path) -> None:
    """A 160 MiB CSV made `spawn migration pin` peak at 179 MiB of memory; now the
    process stays far below the file's size, and the object is the file, byte for byte."""
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    big = tmp_path / "spawn" / "components" / "big.csv"
    write_random(big, 160 * MIB)
    migration = run_spawn("migration", "new", "load", cwd=tmp_path).stdout.strip()

    peak = subprocess.run(
        [sys.executable, "-c", PEAK, sys.executable, "-m", "spawn_db", "migration", "pin",
         migration], cwd=tmp_path, capture_output=True, text=True, env=spawn_env(),
        check=True)
    exit_code, peak_mib = map(int, peak.stdout.split())

    assert exit_code == 0
    assert peak_mib < 80, f"spawn migration pin peaked at {peak_mib} MiB for a 160 MiB file"
    pinned = tmp_path / "spawn" / "pinned"
    root = read_lock(tmp_path / "spawn" / "migrations" / migration)
    assert root is not None
    store = PinStore(pinned)
    digest = store.read_tree(root, context="test")["big.csv"].hash
    hasher = xxhash.xxh3_128()
    with store.object_path(digest).open("rb") as stored, big.open("rb") as original:
        while chunk := stored.read(MIB):
            assert chunk == original.read(MIB)
            hasher.update(chunk)
        assert original.read(1) == b""
    assert hasher.hexdigest() == digest
    assert oct(store.object_path(digest).stat().st_mode & 0o777) == "0o600"
    assert not [p for p in pinned.rglob(".*") if p.name != ".gitkeep"]


@settings(max_examples=25, deadline=None)
@given(size=st.sampled_from([0, 1, STREAM_CHUNK - 1, STREAM_CHUNK, STREAM_CHUNK + 1,
                             3 * STREAM_CHUNK + 7]), batch=st.booleans())
def test_a_streamed_object_is_the_object_put_would_write(
    tmp_path_factory: pytest.TempPathFactory, size: int, batch: bool
) -> None:
    folder = tmp_path_factory.mktemp("stream")
    source = folder / "data.csv"
    source.write_bytes(os.urandom(size))
    streamed, whole = PinStore(folder / "streamed"), PinStore(folder / "whole")
    if batch:
        with streamed.batch():
            digest = streamed.put_file(str(source))
    else:
        digest = streamed.put_file(str(source))
    assert digest == whole.put(source.read_bytes())
    assert streamed.object_path(digest).read_bytes() == source.read_bytes()
    assert sorted(p.name for p in (folder / "streamed").rglob("*")) == sorted(
        p.name for p in (folder / "whole").rglob("*"))
    assert streamed.put_file(str(source)) == digest  # known: written once


def test_the_same_large_file_pinned_twice_and_beside_a_small_one(tmp_path: Path) -> None:
    components = tmp_path / "components"
    components.mkdir()
    write_random(components / "a.csv", STREAM_MIN_SIZE)
    (components / "b.csv").write_bytes((components / "a.csv").read_bytes())
    (components / "small.sql").write_text("SELECT 1;\n")
    store = PinStore(tmp_path / "pinned")
    first = snapshot(store, components)
    assert snapshot(PinStore(tmp_path / "pinned"), components) == first
    tree = store.read_tree(first, context="test")
    assert tree["a.csv"].hash == tree["b.csv"].hash
    objects = [p for p in (tmp_path / "pinned").rglob("*") if p.is_file()]
    assert len(objects) == 3  # the shared CSV, small.sql, the tree
    assert not [p for p in (tmp_path / "pinned").iterdir() if len(p.name) != 2]

