"""The model contract: the configs have one writer, and what it writes is what Triton and the embedder read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagesearch.contracts import model as contract
from imagesearch.contracts.calibration import ScoreCalibration

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = contract.model_dir(REPO / "model_repo")


@pytest.mark.parametrize("path", contract.config_paths(MODEL_DIR), ids=lambda p: p.name)
def test_the_checked_in_configs_are_in_the_writers_form(path: Path) -> None:
    """Edits go through ConfigFile (or match what it would write), so no tool's rewrite surprises anyone."""
    config = contract.ConfigFile.read(path)
    assert config.render() == path.read_text()
    assert config.header.startswith("# image_embedding")


@pytest.mark.parametrize("path", contract.config_paths(MODEL_DIR), ids=lambda p: p.name)
def test_every_config_declares_the_contracts_tensors(path: Path) -> None:
    config = contract.ConfigFile.read(path).config
    assert config.name == contract.MODEL_NAME and config.max_batch_size == 32
    assert [(t.name, t.data_type) for t in config.input] == [(contract.INPUT, 2)]  # TYPE_UINT8
    assert [t.name for t in config.output] == [contract.EMBEDDING, contract.LOGITS, contract.SALIENCY]
    assert contract.calibration_of(config, contract.BASE_VERSION) == ScoreCalibration(32.84, -23.40)
    # Version 3, the generic whitening scripts/bootstrap.sh fits, is served by default: its fit is tracked.
    assert contract.calibration_of(config, 3) is not None


def test_a_versions_calibration_is_replaced_not_repeated_and_the_rest_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    shutil.copy(MODEL_DIR / "config.pbtxt", path)
    before = contract.ConfigFile.read(path)
    for slope in (20.0, 21.5):
        config = contract.ConfigFile.read(path)
        config.set_calibration(7, ScoreCalibration(slope, -11.25))
        config.write()
    after = contract.ConfigFile.read(path)
    assert path.read_text().count(contract.calibration_key(7)) == 1
    assert after.calibration(7) == ScoreCalibration(21.5, -11.25)
    assert after.header == before.header
    del after.config.parameters[contract.calibration_key(7)]
    assert after.config == before.config
    assert not list(tmp_path.glob(".*partial"))


def test_a_refit_within_its_noise_keeps_the_calibration_a_config_carries(tmp_path: Path) -> None:
    """The generic whitening's calibration is tracked and refitted by every bootstrap: a refit a few
    hundredths away (another machine's rounding) must not leave a fresh checkout's configs modified."""
    path = tmp_path / "config.pbtxt"
    shutil.copy(MODEL_DIR / "config.pbtxt", path)
    tracked = contract.ConfigFile.read(path).calibration(3)
    assert tracked is not None
    text = path.read_text()
    config = contract.ConfigFile.read(path)
    refit = ScoreCalibration(tracked.slope + 0.04, tracked.intercept - 0.02)
    assert config.set_calibration(3, refit) == tracked
    config.write()
    assert path.read_text() == text
    # A fit that says something else replaces it, and so does an unusable one.
    other = ScoreCalibration(tracked.slope + 0.5, tracked.intercept)
    assert config.set_calibration(3, other) == other and str(config.calibration(3)) == str(other)
    config.config.parameters[contract.calibration_key(3)].string_value = "broken"
    assert config.set_calibration(3, refit) == refit and str(config.calibration(3)) == str(refit)


def test_the_embedding_width_is_set_only_where_a_config_fixes_it(tmp_path: Path) -> None:
    local = contract.ConfigFile.read(MODEL_DIR / "config.pbtxt")
    gpu = contract.ConfigFile.read(MODEL_DIR / "configs" / "tensorrt.pbtxt")
    # The GPU config states the served version's width: 1024, the generic whitening's (version 3).
    assert (local.embedding_width(), gpu.embedding_width()) == (-1, 1024)
    assert not local.set_embedding_width(1280) and local.embedding_width() == -1
    assert gpu.set_embedding_width(1280) and gpu.embedding_width() == 1280
    assert not gpu.set_embedding_width(1280)


def test_an_unusable_calibration_or_config_is_refused_with_its_name(tmp_path: Path) -> None:
    config = contract.ConfigFile.read(MODEL_DIR / "config.pbtxt").config
    config.parameters[contract.calibration_key(7)].string_value = "-1,2"
    with pytest.raises(ValueError, match="parameter same_product_calibration_v7 needs a finite slope > 0"):
        contract.calibration_of(config, 7)
    assert contract.calibration_of(config, 8) is None
    broken = tmp_path / "config.pbtxt"
    broken.write_text('# header\nname: "image_embedding"\nmax_batch_size: "many"\n')
    with pytest.raises(ValueError, match="not a Triton model config"):
        contract.ConfigFile.read(broken)


def test_the_repository_layout_helpers(tmp_path: Path) -> None:
    directory = contract.model_dir(tmp_path)
    for version in ("2", "10", "3"):
        (directory / version).mkdir(parents=True)
    (directory / "configs").mkdir()
    (directory / ".4.partial").mkdir()
    (directory / "3" / contract.ADAPTATION_RECORD).write_text("{}")
    assert contract.versions(directory) == [2, 3, 10]
    assert contract.is_adapted(directory, 3) and not contract.is_adapted(directory, 2)
