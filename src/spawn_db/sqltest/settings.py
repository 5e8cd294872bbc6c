"""``tests/<name>/test.toml``: a test's optional settings.

The file is new with this tool (the Rust tool ignores files it does not know
in a test folder). Every key is optional and a missing file means the
defaults. ``freeze_time`` and ``seed`` make a test deterministic (see
``sqltest.determinism``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spawn_db.config import closest_key, toml_error_location
from spawn_db.errors import ConfigError

SETTINGS_FILE = "test.toml"
KEYS = ("freeze_time", "seed")
# setseed() takes a double in [-1, 1]; a seed is any integer that maps into it exactly.
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class TestSettings:
    """What ``test.toml`` says; the defaults when there is none."""

    __test__ = False

    freeze_time: datetime | None = None
    seed: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def deterministic(self) -> bool:
        return self.freeze_time is not None or self.seed is not None


DEFAULT = TestSettings()


def load_test_settings(folder: Path, display: str) -> TestSettings:
    """The settings of the test in ``folder``; ``display`` is how errors name the file."""
    path = folder / SETTINGS_FILE
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return DEFAULT
    except OSError as exc:
        raise ConfigError(f"{display}: cannot be read ({exc.strerror}); fix its permissions"
                          ) from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{display}: not UTF-8 text ({exc.reason}); save it as UTF-8"
                          ) from None
    except tomllib.TOMLDecodeError as exc:
        where = toml_error_location(Path(display), exc)
        raise ConfigError(f"{where}: invalid TOML: {exc}; fix the syntax") from None
    return parse_test_settings(raw, display)


def parse_test_settings(raw: Mapping[str, Any], display: str) -> TestSettings:
    """Checked settings; an unknown key is a warning naming the closest known one."""
    warnings = tuple(
        f"warning: unknown key `{key}` in {display} (ignored; the closest known key is "
        f"`{closest_key(key, KEYS)}`)"
        for key in raw if key not in KEYS
    )
    return TestSettings(_instant(raw, display), _seed(raw, display), warnings)


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
