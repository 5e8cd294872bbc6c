"""Parsing of variables files and of the ``parse_*`` / ``read_*`` template filters."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from spawn_db.errors import VariablesError

EXTENSIONS = (".json", ".toml", ".yaml", ".yml")


def parse_json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VariablesError(
            f"{origin}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def parse_toml(text: str, origin: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VariablesError(f"{origin}: invalid TOML: {exc}") from None


def parse_yaml(text: str, origin: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise VariablesError(f"{origin}: invalid YAML{where}: {problem}") from None


PARSERS = {".json": parse_json, ".toml": parse_toml, ".yaml": parse_yaml, ".yml": parse_yaml}


def load_variables(path: Path | str | None) -> Any:
    """The parsed ``--variables`` file, chosen by extension, its encrypted values
    decrypted (``SPAWN_AGE_IDENTITY``); empty mapping when None."""
    if path is None:
        return {}
    value = read_variables(Path(path))
    from spawn_db.secret.age import decrypt_values

    return decrypt_values(value, str(path))


def read_variables(path: Path) -> Any:
    """The file parsed as written (encrypted values stay encrypted)."""
    parser = PARSERS.get(path.suffix.lower())
    if parser is None:
        raise VariablesError(
            f"variables file {path} has extension {path.suffix or '(none)'!r}; use one of "
            f"{', '.join(EXTENSIONS)}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VariablesError(f"variables file {path} does not exist; check --variables") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VariablesError(f"cannot read variables file {path}: {exc}") from None
    value = parser(text, str(path))
    return {} if value is None else value


def dump_variables(value: Any, suffix: str) -> str:
    """``value`` as the text of a variables file of type ``suffix`` (to write back a file
    whose values spawn changed, e.g. encrypted them)."""
    suffix = suffix.lower()
    if suffix == ".json":
        return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    if suffix == ".toml":
        import tomli_w

        if not isinstance(value, dict):
            raise VariablesError("a TOML variables file holds a table at the top")
        return tomli_w.dumps(value)
    import yaml

    return str(yaml.safe_dump(value, sort_keys=False, allow_unicode=True))
