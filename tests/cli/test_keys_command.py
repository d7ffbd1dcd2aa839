"""`imagesearch keys`: create prints the key once, list never shows it, revoke stops it."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesearch.auth.keys import KeyFile
from imagesearch.cli import main as cli_main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = str(tmp_path / "keys.json")
    code, out, err = run(
        capsys,
        "keys",
        "--file",
        keys,
        "create",
        "--scope",
        "search",
        "--catalog",
        "shop_a",
        "--name",
        "storefront",
        "--rate",
        "20",
    )
    token = out.strip()
    assert code == 0 and token.startswith("isk_") and "only time it is shown" in err
    assert KeyFile(Path(keys)).load().find(token)[0] is not None

    code, out, _ = run(capsys, "keys", "--file", keys, "list")
    key_id = token.split("_")[1]
    assert code == 0 and key_id in out and "storefront" in out and "shop_a" in out and "20/s" in out
    assert token.split("_", 2)[2] not in out and "active" in out

    code, out, _ = run(capsys, "keys", "--file", keys, "revoke", key_id)
    assert code == 0 and f"revoked {key_id}" in out
    assert "revoked" in run(capsys, "keys", "--file", keys, "list")[1]
    assert KeyFile(Path(keys)).load().find(token)[0] is None


def test_bad_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = str(tmp_path / "keys.json")
    code, _, err = run(capsys, "keys", "--file", keys, "create", "--scope", "search", "--catalog", "Shop-A")
    assert code == 1 and err.startswith("error: catalog must be")
    code, _, err = run(capsys, "keys", "--file", keys, "revoke", "deadbeef")
    assert code == 1 and err.startswith("error: no key file at")
