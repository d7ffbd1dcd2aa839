#!/usr/bin/env python3
"""Variants of tools/finetune_backbone.py (the backbone's last stage trained on synthetic views of a generic
collection), each exported to var/research/finetune/<tag>/model.onnx for research/exp_backbone.py (the bare
network through the services' framing) and research/exp_generic.py (with the generic whitening on top).

    python research/exp_finetune.py var/datasets/generic --epochs 2 --tag e2
    python research/exp_backbone.py ../var/research/finetune/e2/model.onnx --dataset ../../shared/datasets/dev
    python research/exp_generic.py ../var/datasets/generic --model ../var/research/finetune/e2/model.onnx \\
        --dataset ../../shared/datasets/dev --dimension 1024

The training views are cached under var/research/ by collection and options. Not part of the product
(research/README.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import export_model  # noqa: E402  (tools/ is not a package)
import finetune_backbone as tool  # noqa: E402

CACHE = REPO / "var" / "research"


def cached_pixels(folder: Path, options: tool.FinetuneOptions) -> tuple[np.ndarray, np.ndarray]:
    turn = f"-turn{options.turn:g}" if options.turn else ""
    cached = CACHE / f"finetune-pixels-{folder.name}-{options.rounds}-{options.seed}-{options.image_size}{turn}.npz"
    if cached.exists():
        data = np.load(cached)
        return data["clean"], data["views"]
    clean, views = tool.training_pixels(folder, options)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, clean=clean, views=views)
    return clean, views


def main() -> None:
    defaults = tool.FinetuneOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generic", type=Path, help="the collection (tools/build_generic_set.py's var/datasets/generic)")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--l2sp", type=float, default=defaults.l2sp)
    parser.add_argument("--turn", type=float, default=defaults.turn)
    parser.add_argument("--tag", default="default")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    options = replace(defaults, rounds=args.rounds, epochs=args.epochs, lr=args.lr, l2sp=args.l2sp, turn=args.turn)
    clean, views = cached_pixels(args.generic, options)
    net = export_model.load_efficientnet()
    result = tool.finetune(net, clean, views, options, print)
    print(
        f"held-out R@1 {result.held_out_recall_before:.3f} -> {result.held_out_recall_after:.3f}, {result.seconds:.0f} s"
    )
    out = CACHE / "finetune" / args.tag / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    export_model.export_onnx(export_model.build_export_module(net).eval(), out)
    export_model.finalize_model(out, f"finetuned-{args.tag}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
