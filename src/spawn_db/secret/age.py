"""Variables files whose values (not keys) are encrypted with age, through ``pyrage``.

Each value becomes the string ``ENC[age,<base64>]``: the age ciphertext of the value's
JSON text, so a number stays a number. Keys stay readable, so a diff shows which
values changed, and the file keeps its format (YAML, JSON or TOML).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spawn_db.errors import SecretError

IDENTITY_VARIABLE = "SPAWN_AGE_IDENTITY"
_ENCRYPTED = re.compile(r"ENC\[age,([A-Za-z0-9+/=]+)\]")


def encrypted_name(path: Path) -> Path:
    """``vars.yaml`` -> ``vars.age.yaml`` (an already encrypted name stays)."""
    if is_encrypted_name(path):
        return path
    return path.with_name(f"{path.stem}.age{path.suffix}")


def is_encrypted_name(path: Path) -> bool:
    return path.stem.endswith(".age")


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and _ENCRYPTED.fullmatch(value) is not None


def contains_encrypted(value: Any) -> bool:
    if isinstance(value, dict):
        return any(contains_encrypted(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_encrypted(v) for v in value)
    return is_encrypted(value)


def encrypt_values(value: Any, recipients: Sequence[str], where: str) -> Any:
    """Every plain value of ``value`` encrypted to ``recipients``; encrypted ones kept."""
    import pyrage
    from pyrage import x25519

    if not recipients:
        raise SecretError(f"{where}: no age recipients; add `recipients = [\"age1...\"]` under "
                          "[secrets] in spawn.toml (`age-keygen -y KEYFILE` prints one)")
    try:
        keys = [x25519.Recipient.from_str(r) for r in recipients]
    except (pyrage.RecipientError, ValueError) as exc:
        raise SecretError(f"{where}: a recipient under [secrets] is not an age public key "
                          f"({exc})") from None
    return _map_leaves(value, lambda leaf: leaf if is_encrypted(leaf) else _encrypt(leaf, keys,
                                                                                     where))


def keep_unchanged(new: Any, old_plain: Any, old_encrypted: Any) -> Any:
    """``new`` with each value that equals the old one at the same place replaced by its old
    ciphertext, so re-encrypting after an edit changes only the lines that were edited (age
    encryption is randomised: every fresh ciphertext differs)."""
    if isinstance(new, dict) and isinstance(old_plain, dict) and isinstance(old_encrypted,
                                                                             dict):
        return {k: keep_unchanged(v, old_plain.get(k), old_encrypted.get(k))
                for k, v in new.items()}
    if isinstance(new, list) and isinstance(old_plain, list) and isinstance(old_encrypted,
                                                                             list):
        return [keep_unchanged(v, old_plain[i], old_encrypted[i])
                if i < len(old_plain) and i < len(old_encrypted) else v
                for i, v in enumerate(new)]
    if (is_encrypted(old_encrypted) and not isinstance(new, dict | list)
            and type(new) is type(old_plain) and new == old_plain):
        return old_encrypted
    return new


def decrypt_values(value: Any, where: str) -> Any:
    """``value`` with every ``ENC[age,...]`` string decrypted with the identity in
    ``SPAWN_AGE_IDENTITY``; all or nothing."""
    if not contains_encrypted(value):
        return value
    identities = load_identities(where)
    return _map_leaves(value, lambda leaf: _decrypt(leaf, identities, where)
                       if is_encrypted(leaf) else leaf)


def load_identities(where: str) -> list[Any]:
    import pyrage
    from pyrage import x25519

    location = os.environ.get(IDENTITY_VARIABLE)
    if not location:
        raise SecretError(f"{where} has encrypted values and {IDENTITY_VARIABLE} is not set; "
                          "set it to the path of your age identity (key) file")
    try:
        text = Path(location).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"{IDENTITY_VARIABLE}: cannot read {location}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    keys = [line.strip() for line in text.splitlines()
            if line.strip().startswith("AGE-SECRET-KEY-")]
    try:
        identities = [x25519.Identity.from_str(key) for key in keys]
    except (pyrage.IdentityError, ValueError):
        identities = []
    if not identities:
        raise SecretError(f"{IDENTITY_VARIABLE}: {location} holds no age identity "
                          "(a line AGE-SECRET-KEY-1...)")
    return identities


def _map_leaves(value: Any, change: Callable[[Any], Any]) -> Any:
    if isinstance(value, dict):
        return {k: _map_leaves(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_leaves(v, change) for v in value]
    return change(value)


def _encrypt(leaf: Any, keys: list[Any], where: str) -> str:
    import pyrage

    try:
        plain = json.dumps(leaf, ensure_ascii=False).encode("utf-8")
    except TypeError:
        raise SecretError(f"{where}: the value {type(leaf).__name__} cannot be encrypted; "
                          "write it as a string") from None
    return f"ENC[age,{base64.b64encode(pyrage.encrypt(plain, keys)).decode('ascii')}]"


def _decrypt(leaf: str, identities: list[Any], where: str) -> Any:
    import pyrage

    match = _ENCRYPTED.fullmatch(leaf)
    assert match is not None
    try:
        plain = pyrage.decrypt(base64.b64decode(match.group(1), validate=True), identities)
        return json.loads(plain.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        raise SecretError(f"{where}: an encrypted value is damaged; encrypt the file again")\
            from None
    except pyrage.DecryptError:
        raise SecretError(f"{where}: the identity in {IDENTITY_VARIABLE} cannot decrypt it "
                          "(encrypted for other recipients?); use the matching key file")\
            from None
