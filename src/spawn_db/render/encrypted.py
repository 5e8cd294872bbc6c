"""``spawn secret encrypt|decrypt|edit``: variables files whose values are age-encrypted.

The file keeps its format and its keys; each value becomes ``ENC[age,...]``
(``secret/age.py``). Files are written atomically and privately; a decrypted copy for
editing lives in a private temporary folder and is removed afterwards.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spawn_db.errors import SecretError, UsageError
from spawn_db.fsutil import atomic_write_text
from spawn_db.render.variables import EXTENSIONS, dump_variables, read_variables
from spawn_db.secret.age import decrypt_values, encrypt_values, encrypted_name, keep_unchanged
from spawn_db.secret.settings import secrets_settings

if TYPE_CHECKING:
    from spawn_db.config import Config


def _checked(path: Path) -> Path:
    if path.suffix.lower() not in EXTENSIONS:
        raise UsageError(f"{path}: a variables file ends in one of {', '.join(EXTENSIONS)}")
    return path


def encrypt_file(config: Config, path: Path, output: Path | None = None) -> Path:
    """Write ``path`` with every value encrypted to the ``[secrets] recipients`` as
    ``output`` (default ``<stem>.age<suffix>``); values already encrypted are kept."""
    value = read_variables(_checked(path))
    encrypted = encrypt_values(value, secrets_settings(config).recipients, str(path))
    target = output or encrypted_name(path)
    atomic_write_text(target, dump_variables(encrypted, target.suffix))
    return target


def decrypt_text(path: Path) -> str:
    """The file with its values decrypted, as text of the same format; all or nothing."""
    value = read_variables(_checked(path))
    return dump_variables(decrypt_values(value, str(path)), path.suffix)


def edit_file(config: Config, path: Path, editor: str | None = None) -> bool:
    """Decrypt into a private temporary file, run ``$EDITOR`` on it, encrypt the result
    back over ``path``; False (nothing written) when the editor changed nothing."""
    import shlex

    command = editor or os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not command:
        raise UsageError("set EDITOR (or VISUAL) to the editor spawn secret edit should run")
    old_encrypted = read_variables(_checked(path))
    old_plain = decrypt_values(old_encrypted, str(path))
    plain = dump_variables(old_plain, path.suffix)
    with tempfile.TemporaryDirectory(prefix="spawn-secret-") as folder:
        os.chmod(folder, 0o700)
        copy = Path(folder) / f"edit{path.suffix}"
        atomic_write_text(copy, plain)
        done = subprocess.run([*shlex.split(command), str(copy)], check=False)
        if done.returncode != 0:
            raise SecretError(f"the editor exited with code {done.returncode}; {path} is "
                              "unchanged")
        edited = copy.read_text(encoding="utf-8")
        if edited == plain:
            return False
        value: Any = keep_unchanged(read_variables(copy), old_plain, old_encrypted)
    encrypted = encrypt_values(value, secrets_settings(config).recipients, str(path))
    atomic_write_text(path, dump_variables(encrypted, path.suffix))
    return True
