"""Every service starts the same way: one declaration per setting, `--help` that lists them all,
and a bad setting refused at start-up with exit status 2 and the variable's name."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from imagesearch.common.config import Settings, SettingsError, setting
from imagesearch_embedder.settings import EmbedderSettings
from imagesearch_gateway.settings import GatewaySettings
from imagesearch_retriever.settings import RetrieverSettings

SERVICES = {"gateway": GatewaySettings, "embedder": EmbedderSettings, "retriever": RetrieverSettings}


@pytest.mark.parametrize("name", SERVICES)
def test_help_lists_every_setting_with_its_default(name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", f"imagesearch_{name}", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.startswith(f"usage: imagesearch-{name}")
    for variable, default, meaning in SERVICES[name].variables():
        line = next(line for line in out.splitlines() if line.strip().startswith(variable + " "))
        assert meaning in line and f"(default: {default or 'empty'})" in line, line
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in out


@pytest.mark.parametrize(("name", "variable"), [("gateway", "GATEWAY_PORT"), ("retriever", "HNSW_M")])
def test_a_bad_setting_stops_the_service_before_it_starts(name: str, variable: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"imagesearch_{name}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", variable: "not-a-number"},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"imagesearch-{name}: {variable} must be an integer, got 'not-a-number'"


def test_each_variable_is_declared_once_across_the_services() -> None:
    declared = [variable for settings in SERVICES.values() for variable, _, _ in settings.variables()]
    shared = {"LOG_LEVEL", "LOG_FORMAT"}  # one variable, one meaning, in every service
    assert sorted(v for v in set(declared) if declared.count(v) > 1) == sorted(shared)


@dataclass(frozen=True, repr=False)
class Example(Settings):
    name: str = setting("x", "EX_NAME", "a name")
    count: int = setting(3, "EX_COUNT", "a count", minimum=1)
    ratio: float = setting(0.5, "EX_RATIO", "a ratio")
    on: bool = setting(True, "EX_ON", "a switch")
    mode: str = setting("a", "EX_MODE", "a mode", choices=("a", "b"), parse=str.lower)
    token: str = setting("", "EX_TOKEN", "a secret", secret=True)
    url: str = setting("u", "EX_URL", "empty turns it off", empty_is_a_value=True)


def test_settings_are_typed_by_their_annotation() -> None:
    s = Example.from_env(
        {"EX_NAME": " n ", "EX_COUNT": "1_000", "EX_RATIO": "2.5", "EX_ON": "off", "EX_MODE": "B", "EX_URL": ""}
    )
    assert (s.name, s.count, s.ratio, s.on, s.mode, s.url) == ("n", 1000, 2.5, False, "b", "")
    assert Example.from_env({"EX_NAME": "  ", "EX_URL": "v"}) == Example(
        url="v"
    )  # blank = unset, unless it means something


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EX_COUNT": "many"}, "EX_COUNT must be an integer, got 'many'"),
        ({"EX_COUNT": "0"}, "EX_COUNT must be at least 1, got 0"),
        ({"EX_RATIO": "half"}, "EX_RATIO must be a number, got 'half'"),
        ({"EX_ON": "sometimes"}, "EX_ON must be true or false, got 'sometimes'"),
        ({"EX_MODE": "c"}, "EX_MODE must be one of a, b, got 'c'"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Example.from_env(env)
    assert str(info.value) == message


def test_secrets_never_reach_a_log_and_help_shows_every_variable() -> None:
    assert "hunter2" not in repr(Example.from_env({"EX_TOKEN": "hunter2"}))
    assert "token='***'" in repr(Example.from_env({"EX_TOKEN": "hunter2"}))
    assert [v for v, _, _ in Example.variables()] == [
        "EX_NAME",
        "EX_COUNT",
        "EX_RATIO",
        "EX_ON",
        "EX_MODE",
        "EX_TOKEN",
        "EX_URL",
    ]
    assert "EX_COUNT  a count (default: 3)" in Example.help_text()
