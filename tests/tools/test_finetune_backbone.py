"""tools/finetune_backbone.py trains the backbone's last stage on synthetic views and writes it as a base version
with the base model's contract: the same tensors, a record of how it was made, its own calibration."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from support import base_model_repository, ensure_base_model, mini_catalog, onnx_session

from imagesearch.contracts import model as contract


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    from support import load_tool

    return load_tool("finetune_backbone")


def test_every_item_is_in_exactly_one_batch_with_its_look_alikes(tool: ModuleType) -> None:
    neighbours = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0], [3, 4, 0], [4, 3, 1], [5, 4, 3], [6, 5, 4]])
    batches = tool._look_alike_batches(neighbours, size=4, group=2, rng=np.random.default_rng(0))
    items = np.concatenate(batches)
    assert sorted(items.tolist()) == list(range(7))
    assert all(len(b) >= 4 for b in batches[:-1])


def test_a_fine_tuned_version_is_a_base_with_the_contract_and_its_own_calibration(
    tool: ModuleType, tmp_path: Path
) -> None:
    ensure_base_model()
    repo = base_model_repository(tmp_path / "repo")
    catalog = mini_catalog(tmp_path, 12)
    options = replace(tool.FinetuneOptions(), rounds=2, epochs=1, batch=8)
    clean, views = tool.training_pixels(catalog, options)
    assert clean.shape == (12, 256, 256, 3) and views.shape == (12, 2, 256, 256, 3) and views.dtype == np.uint8
    net = tool.export_model.load_efficientnet()
    before = [p.detach().clone() for p in net._conv_head.parameters()]
    result = tool.finetune(net, clean, views, options, lambda line: None)
    assert any(not (p == q).all() for p, q in zip(net._conv_head.parameters(), before))  # it trained
    assert 0.0 <= result.held_out_recall_after <= 1.0
    target = tool.write_version(net, repo, 4, {"weights": "test", "method": "test"}, result.calibration)

    model_dir = contract.model_dir(repo)
    assert target == model_dir / "4" and (target / contract.RUNNER).is_file()
    assert json.loads((target / tool.RECORD).read_text())["version"] == 4
    assert not contract.is_adapted(model_dir, 4)  # `imagesearch adapt` fits from it
    config = contract.ConfigFile.read(model_dir / contract.CONFIG_FILE)
    written = config.calibration(4)
    assert written is not None and written.agrees_with(result.calibration)
    session = onnx_session(target / contract.MODEL_FILE)
    outputs = [o.name for o in session.get_outputs()]
    assert outputs == [contract.EMBEDDING, contract.LOGITS, contract.SALIENCY]
    vector, _, saliency = session.run(None, {contract.INPUT: clean[:2]})
    assert vector.shape == (2, 1280) and np.allclose(np.linalg.norm(vector, axis=1), 1, atol=1e-5)
    assert saliency.shape == (2, 16, 16)
    with pytest.raises(FileExistsError, match="never replaced"):
        tool.write_version(net, repo, 4, {"weights": "test"}, result.calibration)
