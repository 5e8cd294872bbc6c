"""Variables files with age-encrypted values (``spawn secret encrypt|decrypt|edit``), with
real age keys (pyrage) and the real ``spawn`` entry point; no database needed."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pyrage import x25519

from tests.helpers import Result, run_spawn

PLAIN = {"yaml": "db:\n  password: hunter2\n  port: 5432\nname: shop\n",
         "json": '{"db": {"password": "hunter2", "port": 5432}, "name": "shop"}\n',
         "toml": 'name = "shop"\n[db]\npassword = "hunter2"\nport = 5432\n'}


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.identity = x25519.Identity.generate()
        self.key_file = root / "key.txt"
        self.key_file.write_text(f"# created: test\n{self.identity}\n", encoding="utf-8")
        (root / "spawn" / "migrations" / "20240101000000-m").mkdir(parents=True)
        (root / "spawn" / "components").mkdir()
        (root / "spawn" / "migrations" / "20240101000000-m" / "up.sql").write_text(
            "SELECT {{ variables.db.password }}, {{ variables.db.port }};\n", encoding="utf-8")
        (root / "spawn.toml").write_text(
            'spawn_folder = "spawn"\n'
            f'[secrets]\nrecipients = ["{self.identity.to_public()}"]\n', encoding="utf-8")

    def run(self, *args: str, identity: Path | None = None) -> Result:
        env = {"SPAWN_AGE_IDENTITY": str(identity or self.key_file)}
        return run_spawn(*args, cwd=self.root, env=env)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.mark.parametrize("kind", ["yaml", "json", "toml"])
def test_encrypt_keeps_keys_readable_and_build_decrypts(project: Project, kind: str) -> None:
    plain = project.root / f"vars.{kind}"
    plain.write_text(PLAIN[kind], encoding="utf-8")

    encrypted = project.run("secret", "encrypt", f"vars.{kind}")
    written = project.root / f"vars.age.{kind}"

    assert encrypted.exit_code == 0, encrypted.stderr
    assert encrypted.stderr == f"Wrote vars.age.{kind} (values encrypted; keys readable)\n"
    text = written.read_text(encoding="utf-8")
    assert "hunter2" not in text and "5432" not in text and "shop" not in text
    assert "password" in text and "port" in text and text.count("ENC[age,") == 3
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    built = project.run("migration", "build", "20240101000000-m", "--variables",
                        f"vars.age.{kind}")
    assert (built.exit_code, built.stdout) == (0, "SELECT 'hunter2', 5432;\n"), built.stderr
    decrypted = project.run("secret", "decrypt", f"vars.age.{kind}")
    assert decrypted.exit_code == 0, decrypted.stderr
    assert _parsed(decrypted.stdout, kind) == _parsed(PLAIN[kind], kind)


def _parsed(text: str, kind: str) -> object:
    import tomllib

    import yaml

    return {"yaml": yaml.safe_load, "json": json.loads, "toml": tomllib.loads}[kind](text)


def test_a_missing_or_wrong_identity_is_one_line_and_no_output(project: Project,
                                                               tmp_path: Path) -> None:
    (project.root / "vars.yaml").write_text(PLAIN["yaml"], encoding="utf-8")
    assert project.run("secret", "encrypt", "vars.yaml").exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text(f"{x25519.Identity.generate()}\n", encoding="utf-8")

    missing = run_spawn("migration", "build", "20240101000000-m", "--variables",
                        "vars.age.yaml", cwd=project.root, env={"SPAWN_AGE_IDENTITY": ""})
    wrong = project.run("migration", "build", "20240101000000-m", "--variables",
                        "vars.age.yaml", identity=other)
    decrypt = project.run("secret", "decrypt", "vars.age.yaml", identity=other)

    assert (missing.exit_code, missing.stdout) == (2, "")
    assert missing.stderr == ("error: vars.age.yaml has encrypted values and "
                              "SPAWN_AGE_IDENTITY is not set; set it to the path of your age "
                              "identity (key) file\n")
    for result in (wrong, decrypt):
        assert (result.exit_code, result.stdout) == (2, "")
        assert result.stderr == ("error: vars.age.yaml: the identity in SPAWN_AGE_IDENTITY "
                                 "cannot decrypt it (encrypted for other recipients?); use the "
                                 "matching key file\n")


def test_edit_reencrypts_what_the_editor_wrote(project: Project, tmp_path: Path) -> None:
    (project.root / "vars.yaml").write_text(PLAIN["yaml"], encoding="utf-8")
    assert project.run("secret", "encrypt", "vars.yaml").exit_code == 0
    before = (project.root / "vars.age.yaml").read_text(encoding="utf-8").splitlines()
    editor = tmp_path / "editor"
    editor.write_text("#!/bin/sh\nsed -i 's/hunter2/correct-horse/' \"$1\"\n", encoding="utf-8")
    editor.chmod(0o755)

    edited = run_spawn("secret", "edit", "vars.age.yaml", cwd=project.root,
                       env={"SPAWN_AGE_IDENTITY": str(project.key_file), "EDITOR": str(editor)})

    assert edited.exit_code == 0, edited.stderr
    text = (project.root / "vars.age.yaml").read_text(encoding="utf-8")
    assert "correct-horse" not in text and text.count("ENC[age,") == 3
    changed = [i for i, (a, b) in enumerate(zip(before, text.splitlines(), strict=True))
               if a != b]
    assert [text.splitlines()[i].split(":")[0] for i in changed] == ["  password"]
    built = project.run("migration", "build", "20240101000000-m", "--variables",
                        "vars.age.yaml")
    assert built.stdout == "SELECT 'correct-horse', 5432;\n"


def test_encrypt_without_recipients_says_where_to_put_them(project: Project) -> None:
    (project.root / "spawn.toml").write_text('spawn_folder = "spawn"\n', encoding="utf-8")
    (project.root / "vars.yaml").write_text(PLAIN["yaml"], encoding="utf-8")

    result = project.run("secret", "encrypt", "vars.yaml")

    assert result.exit_code == 2
    assert "no age recipients; add `recipients = [\"age1...\"]` under [secrets]" in result.stderr
    assert not (project.root / "vars.age.yaml").exists()
