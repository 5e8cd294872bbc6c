"""A test's optional ``tests/<name>/test.toml``: how that one test differs from the rest.

The file is new with this tool (the Rust tool ignores files it does not know in a
test folder). Every key is optional; each has one parser below and a place in
``TestSettings``, so a new key is one field, one entry in ``KNOWN_KEYS`` and one
line in ``parse_test_settings``. Unknown keys are warnings naming the closest
known key (as in ``spawn.toml``: a typo must not silently change how a test
runs, nor stop a suite written for a newer spawn); a value of the wrong type is a
``ConfigError`` (exit 2) naming the file. ``database`` and ``migrate_to`` choose
the database (``sqltest.fresh``); ``freeze_time`` and ``seed`` make a test
deterministic (``sqltest.determinism``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from spawn_db.config import TEST_DATABASES, closest_key, toml_error_location
from spawn_db.errors import ConfigError

SETTINGS_FILE = "test.toml"
KNOWN_KEYS = ("database", "migrate_to", "freeze_time", "seed")
# setseed() takes a double in [-1, 1]; a seed is any integer that maps into it exactly.
MAX_SEED = 2**31 - 1

TestDatabaseChoice = Literal["target", "fresh"]


@dataclass(frozen=True)
class TestSettings:
    """What ``test.toml`` says; the defaults are a test without one.

    ``database``: None follows ``[tests] database`` in spawn.toml; "target" runs
    this test where the target connects even in fresh mode; "fresh" runs it in
    a fresh copy even when the project's default is "target".
    ``migrate_to``: the last migration of the template this test copies (a data
    migration's test seeds data there, then ``apply_migration``s the next one).
    ``freeze_time``/``seed``: the frozen instant and the random seed.
    """

    __test__ = False

    database: TestDatabaseChoice | None = None
    migrate_to: str | None = None
    freeze_time: datetime | None = None
    seed: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def deterministic(self) -> bool:
        return self.freeze_time is not None or self.seed is not None


DEFAULT = TestSettings()


def load_test_settings(folder: Path, display: str) -> TestSettings:
    """``folder/test.toml`` parsed, or the defaults when there is none; ``display`` is
    the file's name in messages (relative to the project)."""
    path = folder / SETTINGS_FILE
    try:
        text = path.read_bytes().decode("utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return DEFAULT
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{display}: not UTF-8 text ({exc.reason}); save it as UTF-8"
                          ) from None
    except OSError as exc:
        raise ConfigError(f"{display}: cannot be read ({exc.strerror}); check its "
                          "permissions") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = toml_error_location(Path(display), exc)
        raise ConfigError(f"{where}: invalid TOML: {exc}; fix the syntax and try again"
                          ) from None
    return parse_test_settings(raw, display)


def parse_test_settings(raw: Mapping[str, Any], display: str) -> TestSettings:
    """``raw`` (a parsed test.toml) checked key by key."""
    warnings = tuple(
        f"warning: unknown key `{key}` in {display} (ignored; the closest known key is "
        f"`{closest_key(key, KNOWN_KEYS)}`)"
        for key in raw if key not in KNOWN_KEYS
    )
    database = _database(raw, display)
    migrate_to = _migrate_to(raw, display)
    if database == "target" and migrate_to is not None:
        raise ConfigError(
            f"{display}: `migrate_to` builds a fresh database, but `database = \"target\"` "
            "runs the test on the target's; remove one of the two"
        )
    return TestSettings(database=database, migrate_to=migrate_to,
                        freeze_time=_instant(raw, display), seed=_seed(raw, display),
                        warnings=warnings)


def _database(raw: Mapping[str, Any], display: str) -> TestDatabaseChoice | None:
    value = raw.get("database")
    if value is None:
        return None
    if value not in TEST_DATABASES:
        raise ConfigError(
            f"{display}: `database` is {value!r}; use \"target\" (this test runs where the "
            'target connects) or "fresh" (in its own copy of a database built from the '
            "migrations)"
        )
    return "fresh" if value == "fresh" else "target"


def _migrate_to(raw: Mapping[str, Any], display: str) -> str | None:
    value = raw.get("migrate_to")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{display}: `migrate_to` must be a migration's folder name as a string, e.g. "
            f'`migrate_to = "20260101000000-add-users"`, not {value!r}'
        )
    return value


def _instant(raw: Mapping[str, Any], display: str) -> datetime | None:
    """``freeze_time``: a TOML offset date-time or an RFC 3339 string with a time zone."""
    value = raw.get("freeze_time")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            value = None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigError(
            f"{display}: `freeze_time` must be an instant with a time zone, not "
            f"{_shown(raw['freeze_time'])}; write freeze_time = \"2026-01-01T00:00:00Z\"")
    return value.astimezone(UTC)


def _seed(raw: Mapping[str, Any], display: str) -> int | None:
    value = raw.get("seed")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_SEED:
        raise ConfigError(
            f"{display}: `seed` must be an integer between {-MAX_SEED} and {MAX_SEED}, not "
            f"{_shown(value)}; write seed = 42")
    return value


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, datetime) else value.isoformat()
    return text if len(text) <= 60 else text[:57] + "..."
