"""Small helpers for reading TOML configs into validated values.

Every config loader in dyadsync (scenario, device, session) reports problems the same
way: a :class:`ConfigError` naming the file, the key, the bad value and what is allowed.
These helpers keep that wording in one place.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from dsp.exceptions import ConfigError


class _Required:
    """Marker default: the key must be present."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, translating I/O and syntax errors into :class:`ConfigError`."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("file does not exist", path=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a folder; give the path of a .toml file", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text; TOML files must be UTF-8", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from None


class Section:
    """A view of one TOML table that validates values as they are read.

    ``source`` names the file (or "<inline>"), ``prefix`` the dotted table name, so an
    error can say exactly which key was wrong.
    """

    __slots__ = ("_data", "_prefix", "_seen", "_source")

    def __init__(self, data: Mapping[str, Any], *, source: str, prefix: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"expected a table, got {type(data).__name__} {data!r}", path=source, key=prefix
            )
        self._data = data
        self._source = source
        self._prefix = prefix
        self._seen: set[str] = set()

    @property
    def source(self) -> str:
        """The file (or "<inline>") this table was read from."""
        return self._source

    def key(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(message, path=self._source, key=self.key(name))

    def _get(self, name: str, default: Any) -> Any:
        self._seen.add(name)
        if name in self._data:
            return self._data[name]
        if default is REQUIRED:
            raise self.error(name, "is required but missing")
        return default

    def number(
        self,
        name: str,
        *,
        default: Any = REQUIRED,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> float:
        """A finite number within [minimum, maximum]; without ``default`` the key is required."""
        value = self._get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(name, f"must be a finite number, got {value!r}")
        low_bad = minimum is not None and (
            value <= minimum if exclusive_minimum else value < minimum
        )
        if low_bad or (maximum is not None and value > maximum):
            low = "(" if exclusive_minimum else "["
            allowed = f"{low}{minimum if minimum is not None else '-inf'}, "
            allowed += f"{maximum if maximum is not None else 'inf'}]"
            raise self.error(name, f"value {value!r} is out of range; allowed: {allowed}")
        return float(value)

    def integer(self, name: str, *, default: Any = REQUIRED, minimum: int | None = None) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"value {value!r} is out of range; allowed: >= {minimum}")
        return value

    def choice(self, name: str, allowed: Collection[str], *, default: Any = REQUIRED) -> str:
        value = self._get(name, default)
        if value not in allowed:
            raise self.error(
                name, f"value {value!r} is not allowed; allowed: {', '.join(sorted(allowed))}"
            )
        return str(value)

    def boolean(self, name: str, *, default: Any = REQUIRED) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"value {value!r} is not allowed; allowed: true, false")
        return value

    def string(self, name: str, *, default: Any = REQUIRED) -> str:
        value = self._get(name, default)
        if not isinstance(value, str) or not value:
            raise self.error(name, f"must be a non-empty string, got {value!r}")
        return value

    def tables(self, name: str) -> list[Section]:
        """An array of tables (``[[name]]``); missing means empty."""
        value = self._get(name, [])
        if not isinstance(value, list):
            raise self.error(name, f"must be an array of tables ([[{name}]]), got {value!r}")
        return [
            Section(item, source=self._source, prefix=f"{self.key(name)}[{index}]")
            for index, item in enumerate(value)
        ]

    def table(self, name: str) -> Section:
        return Section(self._get(name, {}), source=self._source, prefix=self.key(name))

    def locate(self, exc: ConfigError) -> ConfigError:
        """An error raised while building this table's object, located in this table.

        The object only knows its own field names (``episode.lag_s``); this turns the key
        into the table's place in the file (``episode[2].lag_s``).
        """
        field = exc.key.split(".", 1)[1] if exc.key and "." in exc.key else None
        key = self.key(field) if field else self._prefix or None
        return ConfigError(exc.detail, path=self._source, key=key)

    def reject_unknown(self) -> None:
        """Typos must not be ignored silently: an unknown key is an error naming known keys."""
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise self.error(
                unknown[0], f"unknown key; allowed keys here: {', '.join(sorted(self._seen))}"
            )
