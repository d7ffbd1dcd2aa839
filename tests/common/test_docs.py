"""The docs say what the code does: every service's README lists exactly the settings it declares,
with their defaults, and the README's layout table names folders that exist."""

from __future__ import annotations

import re

import pytest
from support import REPO

from imagesearch_embedder.settings import EmbedderSettings
from imagesearch_gateway.settings import GatewaySettings
from imagesearch_retriever.settings import RetrieverSettings

TABLE_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]*) \|", re.M)


@pytest.mark.parametrize(("service", "settings"), [("embedder", EmbedderSettings), ("retriever", RetrieverSettings)])
def test_a_readme_settings_table_matches_the_declarations(service: str, settings: type) -> None:
    readme = (REPO / "services" / service / "README.md").read_text()
    section = readme[readme.index("## Settings") :].split("\n## ")[0]
    documented = {name: default.strip().strip("`") for name, default in TABLE_ROW.findall(section)}
    declared = {name: default for name, default, _ in settings.variables()}
    assert set(documented) == set(declared)
    for name, default in declared.items():
        assert _same(documented[name], default), (name, documented[name], default)


def _same(shown: str, default: str) -> bool:
    """A documented default reads as the declared one: '10' for 10.0, 'empty' for '', '10485760 (10 MiB)'."""
    if not default:
        return shown == "empty"
    first = shown.split()[0] if shown else ""
    try:
        return float(first) == float(default)
    except ValueError:
        return shown == default or shown.startswith(default)


def test_the_gateway_readme_points_at_its_settings_help() -> None:
    text = (REPO / "services" / "gateway" / "README.md").read_text()
    assert "python -m imagesearch_gateway --help" in text
    assert len(GatewaySettings.variables()) > 10


def test_the_layout_table_names_paths_that_exist() -> None:
    text = (REPO / "README.md").read_text()
    layout = text[text.index("## Layout") :].split("\n## ")[0]
    paths = re.findall(r"^\| `([^`]+)`", layout, re.M)
    assert paths
    for path in paths:
        for part in re.sub(r"\{([^}]*)\}", lambda m: m.group(1).split(",")[0], path).split(", "):
            assert (REPO / part.strip().rstrip("/")).exists(), part
