"""``spawn secret ...``: encrypt, decrypt and edit variables files whose values are
age-encrypted; parse, call ``spawn_db.render.encrypted``, print."""

from __future__ import annotations

from pathlib import Path

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.output import echo, note

FILE = click.Path(dir_okay=False, path_type=Path)


@click.group()
def secret() -> None:
    """Encrypt the values of variables files with age ([secrets] recipients in spawn.toml).

    --variables accepts the encrypted file and decrypts it with the identity (key file)
    that SPAWN_AGE_IDENTITY names.
    """


@secret.command()
@click.argument("file", type=FILE)
@click.option("-o", "--output", type=FILE, help="Where to write (default: FILE with .age "
              "before its extension, e.g. vars.age.yaml).")
@pass_app
def encrypt(app: App, file: Path, output: Path | None) -> None:
    """Encrypt every value (not the keys) of a YAML, JSON or TOML variables file."""
    from spawn_db.render.encrypted import encrypt_file

    written = encrypt_file(app.config(), file, output)
    note(f"Wrote {written} (values encrypted; keys readable)")


@secret.command()
@click.argument("file", type=FILE)
@click.option("-o", "--output", type=FILE, help="Write the decrypted file here (private) "
              "instead of printing it.")
def decrypt(file: Path, output: Path | None) -> None:
    """Print (or write) the variables file with its values decrypted (SPAWN_AGE_IDENTITY)."""
    from spawn_db.fsutil import atomic_write_text
    from spawn_db.render.encrypted import decrypt_text

    text = decrypt_text(file)
    if output is None:
        echo(text.rstrip("\n"))
        return
    atomic_write_text(output, text)
    note(f"Wrote {output} (decrypted)")


@secret.command()
@click.argument("file", type=FILE)
@pass_app
def edit(app: App, file: Path) -> None:
    """Decrypt to a private temporary file, open $EDITOR, encrypt the result back."""
    from spawn_db.render.encrypted import edit_file

    if edit_file(app.config(), file):
        note(f"Wrote {file} (values encrypted)")
    else:
        note(f"{file} unchanged")
