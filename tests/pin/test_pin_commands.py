"""``spawn pin validate | diff | checkout | report`` on real stores, damaged ones included.

The example project (``spawn init --example``) gives three pinned migrations:
the first and third pin different versions of ``customers/full_name.sql``.
None of these commands needs a database.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from spawn_db.pin.store import hash_bytes
from tests.helpers import run_spawn

FIRST = "20260101090000-create-customers"
THIRD = "20260103090000-customer-titles"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    result = run_spawn("init", "--example", "shop", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    return tmp_path / "shop"


def pin_of(root: Path, migration: str) -> str:
    text = (root / "spawn" / "migrations" / migration / "lock.toml").read_text()
    return text.split('"')[1]


def object_path(root: Path, digest: str) -> Path:
    return root / "spawn" / "pinned" / digest[:2] / digest[2:]


def blob_of(root: Path, relpath: str) -> str:
    return hash_bytes((root / "spawn" / "components" / relpath).read_bytes())


def builds(root: Path) -> dict[str, str]:
    names = sorted(p.name for p in (root / "spawn" / "migrations").iterdir() if p.is_dir())
    return {n: run_spawn("migration", "build", n, "--pinned", cwd=root).stdout for n in names}


# -- validate ------------------------------------------------------------------------------


def test_validate_a_clean_store(example: Path) -> None:
    result = run_spawn("pin", "validate", cwd=example)
    data = json.loads(run_spawn("pin", "validate", "--format", "json", cwd=example).stdout)

    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == f"Pin store OK: {data['checked']} reachable objects checked.\n"
    assert data["ok"] is True and data["bad_objects"] == [] and data["checked"] > 5


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing"])
def test_validate_names_a_damaged_object_and_every_migration_using_it(
    example: Path, damage: str,
) -> None:
    digest = blob_of(example, "customers/full_name.sql")  # the third pin's version
    path = object_path(example, digest)
    data = path.read_bytes()
    if damage == "flipped byte":
        path.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()

    result = run_spawn("pin", "validate", cwd=example)
    report = json.loads(run_spawn("pin", "validate", "--format", "json", cwd=example).stdout)

    assert result.exit_code == 1
    problem = "missing" if damage == "missing" else "corrupt (its bytes hash to " \
        f"{hash_bytes(path.read_bytes())})"
    assert result.stderr == f"error: pin object {digest} is {problem}; used by {THIRD}\n"
    assert report["bad_objects"] == [{"object": digest, "problem": problem,
                                      "migrations": [THIRD]}]


def test_validate_reports_a_shared_object_with_all_its_users(example: Path) -> None:
    digest = blob_of(example, "reports/customer_list.sql")
    object_path(example, digest).write_bytes(b"changed\n")

    report = json.loads(run_spawn("pin", "validate", "--format", "json", cwd=example).stdout)

    assert report["bad_objects"][0]["migrations"] == sorted(
        p.name for p in (example / "spawn" / "migrations").iterdir() if p.is_dir())
    assert len(report["bad_objects"][0]["migrations"]) == 3


def test_validate_rejects_a_tree_not_in_the_canonical_format(example: Path) -> None:
    """Same entries, other spelling: the hash must name the exact bytes the Rust tool wrote,
    so such a tree cannot have been written by either tool."""
    root = example / "spawn"
    tree = b'entries = []\n# comment\n'
    digest = hash_bytes(tree)
    object_path(example, digest).parent.mkdir(exist_ok=True)
    object_path(example, digest).write_bytes(tree)
    (root / "migrations" / FIRST / "lock.toml").write_text(f'pin = "{digest}"\n')

    result = run_spawn("pin", "validate", cwd=example)

    assert result.exit_code == 1
    assert result.stderr == (f"error: pin object {digest} is a tree object not in the "
                             f"canonical format (SPEC §5); used by {FIRST}\n")


def test_validate_reports_a_bad_lock_file(example: Path) -> None:
    lock = example / "spawn" / "migrations" / FIRST / "lock.toml"
    lock.write_text("pin = 1\n")

    result = run_spawn("pin", "validate", cwd=example)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {lock}: `pin` must be a 32-digit hex hash")


def test_all_objects_also_rehashes_unreachable_ones(example: Path) -> None:
    stray = b"not used by anyone\n"
    digest = hash_bytes(stray)
    object_path(example, digest).parent.mkdir(exist_ok=True)
    object_path(example, digest).write_bytes(b"tampered\n")

    reachable = run_spawn("pin", "validate", cwd=example)
    everything = run_spawn("pin", "validate", "--all-objects", cwd=example)

    assert reachable.exit_code == 0
    assert everything.exit_code == 1
    assert everything.stderr == (
        f"error: pin object {digest} is corrupt (its bytes hash to "
        f"{hash_bytes(b'tampered' + bytes([10]))}); used by no migration (unreachable)\n")


# -- diff ----------------------------------------------------------------------------------


def test_diff_between_the_first_and_third_migration_shows_the_component_edit(
    example: Path,
) -> None:
    result = run_spawn("pin", "diff", FIRST, THIRD, cwd=example)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[:3] == [
        "--- a/customers/full_name.sql", "+++ b/customers/full_name.sql", "@@ -2,4 +2,4 @@"]
    assert "-AS $$ SELECT c.first_name || ' ' || coalesce(c.last_name, '') $$;" \
        in result.stdout.splitlines()
    assert "+AS $$ SELECT concat_ws(' ', c.title, c.first_name, c.last_name) $$;" \
        in result.stdout.splitlines()
    assert result.stderr == (f"--- {FIRST} ({pin_of(example, FIRST)})\n"
                             f"+++ {THIRD} ({pin_of(example, THIRD)})\n")


def test_diff_stat_name_only_exit_code_and_worktree(example: Path) -> None:
    components = example / "spawn" / "components"
    (components / "new.sql").write_text("SELECT 1;\n")
    (components / "blob.bin").write_bytes(b"\x00\xff")
    (components / "data" / "customers.yaml").unlink()

    names = run_spawn("pin", "diff", THIRD, "WORKTREE", "--name-only", "--exit-code",
                      cwd=example)
    stat = run_spawn("pin", "diff", "customer-titles", "WORKTREE", "--stat", cwd=example)
    same = run_spawn("pin", "diff", FIRST, pin_of(example, FIRST)[:6], "--exit-code",
                     cwd=example)

    assert (names.exit_code, names.stdout) == (1, "blob.bin\ndata/customers.yaml\nnew.sql\n")
    assert stat.exit_code == 0
    assert stat.stdout.splitlines() == [
        " blob.bin            | binary (added)",
        " data/customers.yaml | +0 -4 (removed)",
        " new.sql             | +1 -0 (added)",
    ]
    assert (same.exit_code, same.stdout, same.stderr.splitlines()[-1]) == (
        0, "", "No differences.")


def test_an_unknown_or_ambiguous_ref_exits_2_naming_candidates(example: Path) -> None:
    unknown = run_spawn("pin", "diff", "nope", FIRST, cwd=example)
    digest = pin_of(example, FIRST)
    twin = digest[:6] + ("0" if digest[6] != "0" else "1") + digest[7:]
    object_path(example, twin).write_bytes(b"x")

    ambiguous = run_spawn("pin", "diff", digest[:6], FIRST, cwd=example)
    unique = run_spawn("pin", "diff", digest[:7], FIRST, "--exit-code", cwd=example)

    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: 'nope' is neither a migration, nor a pin object")
    close = run_spawn("pin", "checkout", "create-customer", cwd=example)
    assert close.exit_code == 2
    assert close.stderr.startswith(f"error: 'create-customer' is neither a migration (did you "
                                   f"mean {FIRST} or ")
    assert ambiguous.exit_code == 2
    assert ambiguous.stderr == (f"error: '{digest[:6]}' is the start of 2 pin objects "
                                f"({', '.join(sorted([digest, twin]))}); type more digits\n")
    assert unique.exit_code == 0, unique.stderr


# -- checkout ------------------------------------------------------------------------------


def test_checkout_then_repin_gives_the_same_root(example: Path, tmp_path: Path) -> None:
    target = tmp_path / "old-components"

    result = run_spawn("pin", "checkout", FIRST, "--to", str(target), cwd=example)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{target}\n"
    assert "SELECT c.first_name || ' '" in (target / "customers" / "full_name.sql").read_text()
    assert os.stat(target / "customers" / "full_name.sql").st_mode & 0o077 == 0
    from spawn_db.pin.snapshot import snapshot
    from spawn_db.pin.store import PinStore

    assert snapshot(PinStore(tmp_path / "other-store"), target) == pin_of(example, FIRST)


def test_checkout_default_folder_and_refusal_of_a_non_empty_target(example: Path,
                                                                   tmp_path: Path) -> None:
    default = run_spawn("pin", "checkout", THIRD, cwd=example)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine\n")

    refused = run_spawn("pin", "checkout", THIRD, "--to", str(busy), cwd=example)
    forced = run_spawn("pin", "checkout", THIRD, "--to", str(busy), "--force", cwd=example)

    assert default.stdout == f"{example / '.spawn' / 'checkout' / pin_of(example, THIRD)}\n"
    assert refused.exit_code == 2
    assert refused.stderr == (f"error: {busy} exists and is not empty; choose another --to, "
                              "or pass --force to replace its contents\n")
    assert forced.exit_code == 0 and not (busy / "keep.txt").exists()


def test_checkout_in_place_pins_the_current_tree_first_and_says_how_to_return(
    example: Path,
) -> None:
    components = example / "spawn" / "components"
    (components / "scratch.sql").write_text("-- unsaved idea\n")

    result = run_spawn("pin", "checkout", FIRST, "--in-place", cwd=example)

    assert result.exit_code == 0, result.stderr
    assert not (components / "scratch.sql").exists()
    back = result.stderr.splitlines()[-1].split("to bring it back: ")[1]
    assert back.startswith("spawn pin checkout ") and back.endswith(" --in-place")
    cleaned = run_spawn("pin", "report", "--unused", "--delete", cwd=example)
    assert cleaned.exit_code == 0, cleaned.stderr
    undo = run_spawn(*back.split()[1:], cwd=example)
    assert undo.exit_code == 0, undo.stderr
    assert (components / "scratch.sql").read_text() == "-- unsaved idea\n"


# -- report --unused -----------------------------------------------------------------------


def test_report_then_delete_unused_keeps_every_pinned_build_identical(example: Path) -> None:
    before = builds(example)
    assert all("CREATE" in text or "INSERT" in text for text in before.values()), before
    components = example / "spawn" / "components"
    (components / "orphan.sql").write_text("SELECT 'orphan';\n")
    made = run_spawn("migration", "new", "tmp", cwd=example).stdout.strip()
    assert run_spawn("migration", "pin", made, cwd=example).exit_code == 0
    orphan_root = pin_of(example, made)
    subprocess.run(["rm", "-r", str(example / "spawn" / "migrations" / made)], check=True)
    staging = example / "spawn" / "pinned" / ".staging-999999999-dead"
    (staging / "ab").mkdir(parents=True)

    listed = run_spawn("pin", "report", "--unused", "--format", "json", cwd=example)
    deleted = run_spawn("pin", "report", "--unused", "--delete", cwd=example)

    unused = {o["object"] for o in json.loads(listed.stdout)["objects"]}
    assert orphan_root in unused
    assert hash_bytes(b"SELECT 'orphan';\n") in unused
    assert json.loads(listed.stdout)["staging"] == [".staging-999999999-dead"]
    assert deleted.exit_code == 0, deleted.stderr
    assert deleted.stderr.startswith(f"Deleted {len(unused)} objects, ")
    assert not object_path(example, orphan_root).exists()
    assert not staging.exists()
    assert run_spawn("pin", "validate", "--all-objects", cwd=example).exit_code == 0
    assert builds(example) == before
    again = json.loads(run_spawn("pin", "report", "--unused", "--format", "json",
                                 cwd=example).stdout)
    assert again["objects"] == [] and again["staging"] == []


def test_keep_protects_a_snapshot_and_a_damaged_store_refuses_delete(example: Path) -> None:
    (example / "spawn" / "components" / "orphan.sql").write_text("SELECT 2;\n")
    made = run_spawn("migration", "new", "tmp", cwd=example).stdout.strip()
    run_spawn("migration", "pin", made, cwd=example)
    kept = pin_of(example, made)
    subprocess.run(["rm", "-r", str(example / "spawn" / "migrations" / made)], check=True)

    with_keep = run_spawn("pin", "report", "--unused", "--delete", "--keep", kept[:8],
                          cwd=example)

    assert with_keep.exit_code == 0, with_keep.stderr
    assert object_path(example, kept).exists()

    digest = blob_of(example, "customers/full_name.sql")
    object_path(example, digest).unlink()
    refused = run_spawn("pin", "report", "--unused", "--delete", cwd=example)
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"error: refusing to delete unused objects while a pin is damaged (pin object "
        f"{digest} is missing); run `spawn pin validate` and repair it first\n")
    assert object_path(example, kept).exists()


def test_delete_waits_for_a_pin_in_progress(example: Path) -> None:
    """The pinner and ``--delete`` share a lock on pinned/: while a pin holds it (here, this
    test holding it as a pin does), nothing is deleted."""
    from spawn_db.fsutil import folder_lock
    from tests.helpers import start_spawn

    stray = b"-- about to be used by a pin\n"
    digest = hash_bytes(stray)
    object_path(example, digest).parent.mkdir(exist_ok=True)
    object_path(example, digest).write_bytes(stray)
    with folder_lock(example / "spawn" / "pinned"):
        proc = start_spawn("pin", "report", "--unused", "--delete", cwd=example)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)
        assert object_path(example, digest).exists()
    proc.communicate(timeout=30)

    assert proc.returncode == 0
    assert not object_path(example, digest).exists()


def test_check_rehashes_every_object_a_pin_reaches(example: Path) -> None:
    digest = blob_of(example, "reports/customer_list.sql")
    assert run_spawn("check", cwd=example).exit_code == 0
    object_path(example, digest).write_bytes(b"-- tampered\n")

    result = run_spawn("check", "--format", "json", cwd=example)

    assert result.exit_code == 1
    found = json.loads(result.stdout)["warnings"]
    assert [(w["migration"], w["kind"]) for w in found] == [
        ("20260101090000-create-customers", "broken"), ("20260102090000-seed-customers", "broken"),
        (THIRD, "broken")]
    assert found[0]["message"] == (
        f"migration 20260101090000-create-customers needs pin object {digest}, which is corrupt "
        f"(its bytes hash to {hash_bytes(b'-- tampered' + bytes([10]))}); restore pinned/ from "
        "version control (`spawn pin validate` lists every damaged object)")


def test_diff_used_keeps_only_what_the_migrations_render_reads(example: Path) -> None:
    components = example / "spawn" / "components"
    for rel in ("testing/factories.sql", "customers/full_name.sql"):
        with open(components / rel, "a") as file:
            file.write("-- edited\n")

    everything = run_spawn("pin", "diff", THIRD, "WORKTREE", "--name-only", cwd=example)
    used = run_spawn("pin", "diff", THIRD, "WORKTREE", "--name-only", "--used", cwd=example)
    no_migration = run_spawn("pin", "diff", pin_of(example, THIRD), "WORKTREE", "--used",
                             cwd=example)

    assert everything.stdout == "customers/full_name.sql\ntesting/factories.sql\n"
    assert (used.exit_code, used.stdout) == (0, "customers/full_name.sql\n")
    assert no_migration.exit_code == 2
    assert no_migration.stderr.startswith("error: --used needs a migration on at least one side")
