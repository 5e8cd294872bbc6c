"""The pin store, checked against hashes computed here from SPEC §5's format rules."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import xxhash

from spawn_db.config import toml_string
from spawn_db.errors import PinStoreError
from spawn_db.pin.snapshot import StatCache, snapshot
from spawn_db.pin.store import (
    PinnedTree,
    PinStore,
    TreeEntry,
    _parse_canonical_tree,
    _parse_tree_toml,
    parse_tree,
    read_lock,
    tree_text,
    write_lock,
)


def h(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def entry(kind: str, digest: str, name: str) -> str:
    return f'[[entries]]\nkind = "{kind}"\nhash = "{digest}"\nname = "{name}"\n'


@pytest.fixture()
def components(tmp_path: Path) -> Path:
    root = tmp_path / "components"
    (root / "util").mkdir(parents=True)
    (root / "util" / "add_func.sql").write_bytes(b"SELECT 1;\n")
    (root / "util-extra.sql").write_bytes(b"-- dash sorts before slash\n")
    (root / "empty").mkdir()
    (root / ".gitkeep").write_bytes(b"")
    (root / "logo.bin").write_bytes(bytes(range(256)))
    return root


def test_snapshot_hashes_match_the_format_rules(components: Path, tmp_path: Path) -> None:
    blob_add = h(b"SELECT 1;\n")
    blob_extra = h(b"-- dash sorts before slash\n")
    blob_keep = h(b"")
    blob_logo = h(bytes(range(256)))
    util_tree = entry("Blob", blob_add, "add_func.sql").encode()
    empty_tree = b"entries = []\n"
    # b".gitkeep" < b"empty/" < b"logo.bin" < b"util-extra.sql" < b"util/" ('-' < '/')
    root_tree = "\n".join([
        entry("Blob", blob_keep, ".gitkeep"),
        entry("Tree", h(empty_tree), "empty"),
        entry("Blob", blob_logo, "logo.bin"),
        entry("Blob", blob_extra, "util-extra.sql"),
        entry("Tree", h(util_tree), "util"),
    ]).encode()

    store = PinStore(tmp_path / "pinned")
    root = snapshot(store, components)

    assert root == h(root_tree)
    for data in [b"SELECT 1;\n", bytes(range(256)), b"", util_tree, empty_tree, root_tree]:
        digest = h(data)
        assert (tmp_path / "pinned" / digest[:2] / digest[2:]).read_bytes() == data


def test_folder_sorts_as_name_with_slash() -> None:
    entries = [TreeEntry("Tree", "0" * 32, "a"), TreeEntry("Blob", "1" * 32, "a.sql"),
               TreeEntry("Blob", "2" * 32, "a-b")]
    text = tree_text(entries)
    assert [line for line in text.splitlines() if line.startswith("name")] == [
        'name = "a-b"', 'name = "a.sql"', 'name = "a"',
    ]


def test_empty_tree_is_rusts_empty_list() -> None:
    assert tree_text([]) == "entries = []\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("plain.sql", '"plain.sql"'), ('q"uote', '"q\\"uote"'), ("back\\slash", "'back\\slash'"),
     ("tab\there", '"tab\\there"'), ("ünï", '"ünï"')],
)
def test_names_are_written_as_toml_strings(name: str, expected: str) -> None:
    assert toml_string(name) == expected


def test_repin_rewrites_no_object(components: Path, tmp_path: Path) -> None:
    store = PinStore(tmp_path / "pinned")
    first = snapshot(store, components)
    stats = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "pinned").rglob("*")}
    second = snapshot(PinStore(tmp_path / "pinned"), components)
    assert first == second
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "pinned").rglob("*")}
    assert after == stats


def test_pinned_tree_reads_files_by_path(components: Path, tmp_path: Path) -> None:
    store = PinStore(tmp_path / "pinned")
    tree = PinnedTree(store, snapshot(store, components), context="migration m")
    assert tree.read(["util", "add_func.sql"]) == b"SELECT 1;\n"
    assert tree.read(["logo.bin"]) == bytes(range(256))
    assert tree.read(["util"]) is None
    assert tree.read(["nope.sql"]) is None
    assert tree.read(["logo.bin", "x"]) is None


def test_corrupt_and_missing_objects_are_named(components: Path, tmp_path: Path) -> None:
    store = PinStore(tmp_path / "pinned")
    root = snapshot(store, components)
    blob = h(b"SELECT 1;\n")
    path = store.object_path(blob)
    path.write_bytes(b"tampered")
    with pytest.raises(PinStoreError, match=f"pin object {blob} .* is corrupt.*migration m"):
        PinnedTree(store, root, context="migration m").read(["util", "add_func.sql"])
    os.remove(path)
    with pytest.raises(PinStoreError, match=f"pin object {blob} is missing.*migration m"):
        PinnedTree(store, root, context="migration m").read(["util", "add_func.sql"])


def test_lock_file_format(tmp_path: Path) -> None:
    write_lock(tmp_path, "ab" * 16)
    assert (tmp_path / "lock.toml").read_bytes() == b'pin = "' + b"ab" * 16 + b'"\n'
    assert read_lock(tmp_path) == "ab" * 16
    assert read_lock(tmp_path / "nowhere") is None


@pytest.mark.parametrize("text", ['pin = "xyz"\n', "pin = [\n", "other = 1\n"])
def test_invalid_lock_file_is_an_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "lock.toml").write_text(text)
    with pytest.raises(PinStoreError, match=r"lock\.toml"):
        read_lock(tmp_path)


def test_stat_cache_skips_unchanged_files_and_rehashes_edited_ones(
    components: Path, tmp_path: Path
) -> None:
    cache_path = tmp_path / "cache.json"
    time.sleep(0.01)
    cache = StatCache.load(cache_path, racy_ns=0)
    first = snapshot(PinStore(tmp_path / "pinned"), components, cache)
    cache.save()
    assert len(json.loads(cache_path.read_text())["entries"]) == 4

    fresh = StatCache.load(cache_path, racy_ns=0)
    assert snapshot(PinStore(tmp_path / "pinned"), components, fresh) == first
    assert fresh.new == fresh.old

    target = components / "util" / "add_func.sql"
    target.write_bytes(b"SELECT 2;\n")
    edited = snapshot(PinStore(tmp_path / "pinned"), components, StatCache.load(cache_path))
    assert edited != first
    assert snapshot(PinStore(tmp_path / "pinned"), components) == edited


def test_stat_cache_never_records_files_changed_during_the_pin(
    components: Path, tmp_path: Path
) -> None:
    cache = StatCache.load(tmp_path / "cache.json")
    snapshot(PinStore(tmp_path / "pinned"), components, cache)
    assert cache.new == {}


def test_stat_cache_survives_a_garbage_file(components: Path, tmp_path: Path) -> None:
    (tmp_path / "cache.json").write_text("{not json")
    root = snapshot(PinStore(tmp_path / "pinned"), components, StatCache.load(tmp_path / "c.json"))
    assert root == snapshot(PinStore(tmp_path / "p2"), components)


def test_canonical_and_toml_parsers_agree(components: Path, tmp_path: Path) -> None:
    store = PinStore(tmp_path / "pinned")
    root = snapshot(store, components)
    text = store.get(root, context="test")
    assert _parse_canonical_tree(text.decode()) == _parse_tree_toml(text, root)
    odd = tree_text([TreeEntry("Blob", "a" * 32, "back\\slash"), TreeEntry("Blob", "b" * 32, 'q"')])
    assert _parse_canonical_tree(odd) is None
    assert [e.name for e in parse_tree(odd.encode(), "x")] == ["back\\slash", 'q"']
