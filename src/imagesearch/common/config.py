"""Typed settings read from environment variables, each declared once.

A service's settings are one frozen dataclass whose fields are declared with `setting(...)`:
the field, its default, its environment variable and its help text in one place. `from_env`
reads them (typed by the field's annotation: str, int, float, bool, or a `parse` function),
`variables` lists them for `--help` and the docs, and the dataclass' `__post_init__` holds the
rules between fields. Every error is a `SettingsError` whose message names the variable.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    env: str
    help: str
    parse: Callable[[str], Any] | None = None  # text -> value; a ValueError is reported with the variable
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False  # never shown in repr() or logs
    shown_default: str | None = None  # the default as --help shows it, when not the value itself
    empty_is_a_value: bool = False  # "" is kept (e.g. REDIS_URL="" turns the cache off), not "unset"


def setting(
    default: Any,
    env: str,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    minimum: float | None = None,
    choices: tuple[str, ...] = (),
    secret: bool = False,
    shown_default: str | None = None,
    empty_is_a_value: bool = False,
) -> Any:
    """A dataclass field read from `env`."""
    meta = Setting(env, help, parse, minimum, choices, secret, shown_default, empty_is_a_value)
    if isinstance(default, list | dict | set):
        raise TypeError("settings defaults must be immutable")
    return dataclasses.field(default=default, metadata={"setting": meta})


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered not in _TRUE | _FALSE:
        raise ValueError(f"must be true or false, got {text!r}")
    return lowered in _TRUE


def _parse_int(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise ValueError(f"must be an integer, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"must be a number, got {text!r}") from None


_PARSERS: dict[Any, Callable[[str], Any]] = {bool: _parse_bool, int: _parse_int, float: _parse_float, str: str}


class Settings:
    """Mixin for a frozen dataclass of `setting(...)` fields."""

    # What --help prints about the standard OpenTelemetry variables every service honours.
    OTEL_NOTE: ClassVar[str] = (
        "OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, OTEL_SDK_DISABLED: "
        "standard OpenTelemetry settings"
    )

    @classmethod
    def _declared(cls) -> list[tuple[dataclasses.Field[Any], Setting]]:
        return [
            (f, f.metadata["setting"])
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if "setting" in f.metadata
        ]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f, s in cls._declared():
            raw = env.get(s.env)
            if raw is None:
                continue
            text = raw.strip()
            if not text and not s.empty_is_a_value:
                continue
            parse = s.parse or _PARSERS.get(hints[f.name])
            if parse is None:
                raise TypeError(f"{cls.__name__}.{f.name}: no parser for {hints[f.name]}")
            try:
                value = parse(text)
            except ValueError as err:
                raise SettingsError(f"{s.env} {err}") from None
            values[f.name] = value
        return cls(**values)

    def __post_init__(self) -> None:
        """The per-field rules (minimum, choices); subclasses add the rules between fields."""
        for f, s in self._declared():
            value = getattr(self, f.name)
            if s.minimum is not None and value < s.minimum:
                raise SettingsError(f"{s.env} must be at least {s.minimum:g}, got {value}")
            if s.choices and value not in s.choices:
                raise SettingsError(f"{s.env} must be one of {', '.join(s.choices)}, got {value!r}")

    @classmethod
    def variables(cls) -> list[tuple[str, str, str]]:
        """(variable, default as text, meaning) of every setting, in declaration order."""
        out = []
        for f, s in cls._declared():
            default = s.shown_default if s.shown_default is not None else _text(f.default)
            out.append((s.env, default, s.help))
        return out

    @classmethod
    def help_text(cls) -> str:
        """The environment table `--help` prints."""
        width = max(len(env) for env, _, _ in cls.variables()) + 2
        lines = [
            f"  {env:<{width}}{meaning} (default: {default or 'empty'})" for env, default, meaning in cls.variables()
        ]
        return "environment:\n" + "\n".join(lines) + f"\n  {cls.OTEL_NOTE}"

    def __repr__(self) -> str:  # secrets (tokens, passwords) never reach a log
        shown = []
        for f, s in self._declared():
            value = getattr(self, f.name)
            shown.append(f"{f.name}={'***' if s.secret and value else value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


OptionsT = TypeVar("OptionsT")


def options_from(settings: object, options: type[OptionsT]) -> OptionsT:
    """An options dataclass whose fields are settings of the same names (a core's slice of the settings)."""
    names = [f.name for f in dataclasses.fields(options)]  # type: ignore[arg-type]
    return options(**{name: getattr(settings, name) for name in names})


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
