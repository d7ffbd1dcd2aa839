"""tools/export_model.py builds any of the EfficientNet-Lite backbones with the base model's contract."""

from __future__ import annotations

from types import ModuleType

import pytest
from support import load_tool


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    return load_tool("export_model")


def test_the_saliency_block_is_the_last_of_the_stride_16_stage(tool: ModuleType) -> None:
    # Lite0's last 112-channel block, found by where the resolution next halves (so that the
    # wider Lite2, 120 channels there, is found the same way).
    module = tool.build_export_module(tool.load_efficientnet())
    blocks = module.backbone._blocks
    assert module.mid_block == 10
    assert blocks[module.mid_block]._project_conv.out_channels == 112
    assert max(blocks[module.mid_block + 1]._depthwise_conv.stride) == 2


def test_the_backbone_is_a_choice_and_lite0_is_the_default(tool: ModuleType) -> None:
    assert tool.parse_args([]).backbone == "efficientnet-lite0"
    assert tool.parse_args(["--backbone", "efficientnet-lite1"]).backbone == "efficientnet-lite1"
    with pytest.raises(SystemExit):
        tool.parse_args(["--backbone", "resnet50"])
