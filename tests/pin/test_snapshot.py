"""Pinning a components tree: parallel reads, staged fan-out folders, clean failures."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import xxhash

from spawn_db.errors import PinStoreError
from spawn_db.pin.snapshot import PARALLEL_MIN_FILES, _read, snapshot
from spawn_db.pin.store import STAGING_PREFIX, PinStore


def store_contents(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture()
def many_files(tmp_path: Path) -> Path:
    """More files than the parallel threshold, with repeated contents and empty files."""
    root = tmp_path / "components"
    for n in range(PARALLEL_MIN_FILES + 150):
        folder = root / f"group{n % 7}" / f"sub{n % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        body = b"" if n % 50 == 0 else f"SELECT {n % 40};\n".encode() * (n % 9 + 1)
        (folder / f"f{n}.sql").write_bytes(body)
    return root


def test_parallel_and_serial_pins_write_the_same_store(many_files: Path, tmp_path: Path) -> None:
    serial = snapshot(PinStore(tmp_path / "serial"), many_files, workers=1)
    parallel = snapshot(PinStore(tmp_path / "parallel"), many_files, workers=4)
    assert serial == parallel
    objects = store_contents(tmp_path / "parallel")
    assert objects == store_contents(tmp_path / "serial")
    assert all(xxhash.xxh3_128_hexdigest(data) == name.replace("/", "")
               for name, data in objects.items())
    assert not [p for p in (tmp_path / "parallel").iterdir() if len(p.name) != 2]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_pin_leaves_no_object_and_no_staging_folder(
    many_files: Path, tmp_path: Path, workers: int
) -> None:
    (many_files / "group3" / "zz-broken.sql").write_bytes(b"the object that cannot be written")
    pinned = tmp_path / "pinned"
    pinned.mkdir()
    with pytest.raises(PinStoreError) as failure:
        snapshot(FailingStore(pinned, b"the object that cannot be written"), many_files,
                 workers=workers)
    assert failure.value.message == "cannot write this object (the test's failure)"
    assert list(pinned.iterdir()) == []


class FailingStore(PinStore):
    """A real store that fails on one object, as a full disk would, mid-pin.

    (A link to ``/proc/self/mem``, whose read fails even for root, is now refused by
    the walk before anything is stored: it leaves components/.)
    """

    def __init__(self, root: Path, poison: bytes) -> None:
        super().__init__(root)
        self.poison = poison

    def put(self, data: bytes, digest: str | None = None) -> str:
        if data == self.poison:
            raise PinStoreError("cannot write this object (the test's failure)")
        return super().put(data, digest)


def test_an_abandoned_staging_folder_is_removed_and_a_live_one_kept(
    tmp_path: Path, many_files: Path
) -> None:
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    pinned = tmp_path / "pinned"
    abandoned = pinned / f"{STAGING_PREFIX}{dead_pid.pid}-0a0a0a0a" / "ab"
    live = pinned / f"{STAGING_PREFIX}{os.getppid()}-0b0b0b0b" / "cd"
    for folder in (abandoned, live):
        folder.mkdir(parents=True)
        (folder / ("0" * 30)).write_bytes(b"half")
    snapshot(PinStore(pinned), many_files)
    assert not abandoned.parent.exists()
    assert live.parent.exists()


def test_a_fan_out_folder_made_during_the_batch_is_merged_into(tmp_path: Path) -> None:
    first = b"first object"
    prefix = xxhash.xxh3_128_hexdigest(first)[:2]
    second = next(
        data for n in range(100_000)
        if xxhash.xxh3_128_hexdigest(data := f"other {n}".encode())[:2] == prefix
    )
    pinned = tmp_path / "pinned"
    pinner = PinStore(pinned)
    with pinner.batch():
        staged = pinner.put(first)
        assert not (pinned / prefix).exists()
        other = PinStore(pinned).put(second)  # another pin creates the folder meanwhile
    assert pinner.get(staged, context="test") == first
    assert pinner.get(other, context="test") == second
    assert sorted(p.name for p in pinned.iterdir()) == [prefix]


def test_a_file_that_grew_after_the_walk_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "grown.sql"
    path.write_bytes(b"x" * 3_000_000)
    assert _read(str(path), 10) == b"x" * 3_000_000
    assert _read(str(path), 3_000_000) == b"x" * 3_000_000
