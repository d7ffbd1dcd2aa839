"""`imagesearch adapt`: a catalog in, a new version of the Triton model out (no servers; tests/adaptation/test_adapted_model_served.py serves it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import BASE_MODEL_FILE, base_model_repository, demo_images, mini_catalog, onnx_session

from imagesearch.adaptation.graph import write_adapted_graph
from imagesearch.adaptation.objectness import Objectness, cell_features, write_tapped
from imagesearch.adaptation.whitening import Whitening
from imagesearch.cli.main import main
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.contracts.model import ConfigFile, model_dir

BASE_ONNX = BASE_MODEL_FILE


def test_the_adapted_graph_is_the_base_graph_followed_by_the_whitening(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    whitening = Whitening(rng.normal(0, 0.01, 1280).astype(np.float32), rng.normal(0, 1, (1280, 64)).astype(np.float32))
    out = tmp_path / "model.onnx"
    write_adapted_graph(BASE_ONNX, out, {"imagesearch.test": "yes"}, whitening)
    images = demo_images(3)
    base = dict(
        zip(
            ["EMBEDDING", "LOGITS", "SALIENCY"],
            onnx_session(BASE_ONNX).run(["EMBEDDING", "LOGITS", "SALIENCY"], {"IMAGE": images}),
        )
    )
    adapted_session = onnx_session(out)
    embedding, logits, saliency = adapted_session.run(["EMBEDDING", "LOGITS", "SALIENCY"], {"IMAGE": images})
    np.testing.assert_allclose(embedding, whitening.apply(base["EMBEDDING"]), atol=2e-5)
    np.testing.assert_allclose(logits, base["LOGITS"], atol=1e-5)  # localisation and logits are untouched
    np.testing.assert_allclose(saliency, base["SALIENCY"], atol=1e-5)
    assert adapted_session.get_modelmeta().custom_metadata_map["imagesearch.test"] == "yes"
    assert [o.name for o in adapted_session.get_outputs()] == [o.name for o in onnx_session(BASE_ONNX).get_outputs()]


def test_a_learned_localisation_map_multiplies_the_base_saliency_in_the_graph(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    whitening = Whitening(np.zeros(1280, np.float32), rng.normal(0, 1, (1280, 32)).astype(np.float32))
    objectness = Objectness(
        rng.normal(0, 0.05, 1280).astype(np.float32), rng.normal(0, 0.05, 112).astype(np.float32), 0.3
    )
    write_adapted_graph(BASE_ONNX, tmp_path / "model.onnx", {}, whitening, objectness)
    taps = write_tapped(BASE_ONNX, tmp_path / "tapped.onnx")
    for images in (demo_images(2), rng.integers(0, 256, (1, 256, 320, 3), dtype=np.uint8)):  # square and not
        saliency, features, mid = onnx_session(tmp_path / "tapped.onnx").run(
            ["SALIENCY", taps.features, taps.mid], {"IMAGE": images}
        )
        [adapted] = onnx_session(tmp_path / "model.onnx").run(["SALIENCY"], {"IMAGE": images})
        expected = saliency * objectness.probability(cell_features(features, mid))
        np.testing.assert_allclose(adapted, expected, rtol=1e-4, atol=1e-3)


def test_adapt_writes_the_next_version_with_how_it_was_made(adapted_repo: Path) -> None:
    version = adapted_repo / "image_embedding" / "3"
    assert sorted(p.name for p in version.iterdir()) == ["adaptation.json", "model.onnx", "model.py"]
    record = json.loads((version / "adaptation.json").read_text())
    assert record["base_version"] == 2 and record["version"] == 3
    assert record["items"] == 12 and record["views"] == 12
    assert record["options"]["dimension"] == 64
    slope, intercept = record["same_product_calibration"]
    assert slope > 0
    local = ConfigFile.read(model_dir(adapted_repo) / "config.pbtxt")
    gpu = ConfigFile.read(model_dir(adapted_repo) / "configs" / "tensorrt.pbtxt")
    for config in (local, gpu):
        assert config.calibration("3") == ScoreCalibration.parse(f"{slope:.2f},{intercept:.2f}")
        assert config.calibration("2") == ScoreCalibration(32.84, -23.40)  # the base keeps its own
    # The GPU config states the served version's width (its backends check it); the local one is open.
    assert (gpu.embedding_width(), local.embedding_width()) == (64, -1)
    [embedding] = onnx_session(version / "model.onnx").run(["EMBEDDING"], {"IMAGE": demo_images(1)})
    assert embedding.shape == (1, 64)
    # The localisation map learned from the views' true boxes is in the adapted SALIENCY.
    localisation = record["learned_localisation"]
    assert localisation["in_saliency"] and "cells" in localisation["note"]
    assert 0 <= localisation["found"]["adapted"] <= 1
    [base_saliency] = onnx_session(BASE_ONNX).run(["SALIENCY"], {"IMAGE": demo_images(2)})
    [saliency] = onnx_session(version / "model.onnx").run(["SALIENCY"], {"IMAGE": demo_images(2)})
    assert saliency.shape == base_saliency.shape and not np.allclose(saliency, base_saliency)


def test_adapting_again_builds_on_the_base_not_on_the_adaptation(adapted_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(adapted_repo, repo, symlinks=True)
    catalog = mini_catalog(tmp_path, 4)
    assert (
        main(
            [
                "adapt",
                str(catalog),
                "--model-repo",
                str(repo),
                "--views",
                "1",
                "--dimension",
                "16",
                "--no-progress",
                "--version",
                "9",
            ]
        )
        == 0
    )
    record = json.loads((repo / "image_embedding" / "9" / "adaptation.json").read_text())
    assert record["base_version"] == 2
    # No localisation map unless asked for: the base model's SALIENCY as it was.
    assert not record["learned_localisation"]["in_saliency"]
    [base_saliency] = onnx_session(BASE_ONNX).run(["SALIENCY"], {"IMAGE": demo_images(2)})
    [saliency] = onnx_session(repo / "image_embedding" / "9" / "model.onnx").run(
        ["SALIENCY"], {"IMAGE": demo_images(2)}
    )
    np.testing.assert_allclose(saliency, base_saliency, atol=1e-5)
    assert not list((repo / "image_embedding").glob(".*partial"))


def test_an_adapted_version_is_refused_as_a_base_before_any_fitting(
    adapted_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fresh clone's version 3 (the generic whitening) is adapted too: it is not a base to adapt from.
    catalog = mini_catalog(tmp_path, 2)
    argv = ["adapt", str(catalog), "--model-repo", str(adapted_repo), "--base-version", "3", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "version 3" in err and "is itself adapted" in err and "adapting" not in err
    assert sorted(p.name for p in (adapted_repo / "image_embedding").iterdir()) == ["2", "3", "config.pbtxt", "configs"]


def test_a_missing_catalog_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = base_model_repository(tmp_path / "repo")
    assert main(["adapt", str(tmp_path / "nope.csv"), "--model-repo", str(repo)]) == 2
    assert "nope.csv: no such file or folder" in capsys.readouterr().err


def test_a_repository_without_a_base_model_says_how_to_build_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "image_embedding").mkdir()
    (tmp_path / "image_embedding" / "config.pbtxt").write_text('name: "image_embedding"\n')
    assert main(["adapt", str(mini_catalog(tmp_path, 2)), "--model-repo", str(tmp_path)]) == 1
    assert "build the base model first" in capsys.readouterr().err


def test_one_image_is_too_few_to_adapt_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = base_model_repository(tmp_path / "repo")
    assert main(["adapt", str(mini_catalog(tmp_path, 1)), "--model-repo", str(repo), "--no-progress"]) == 1
    assert "need at least 2 catalog images" in capsys.readouterr().err
    assert sorted(p.name for p in (repo / "image_embedding").iterdir()) == ["2", "config.pbtxt", "configs"]
