#!/usr/bin/env python3
"""A small convolutional localiser on the first pass's own features, trained on synthetic views.

research/exp_oracle.py showed that framing is most of the judge set's loss (base model v3: R@1
0.641 with the services' box, 0.858 with the true one; small products 0.24 -> 0.88). The linear
per-cell map (`imagesearch adapt --learned-localisation`) sees one cell at a time; this head sees a
neighbourhood: 1 x 1 convolutions of the last feature map (upsampled to stride 16) and the stride-16
block, ReLU, a 3 x 3 convolution, ReLU, a 3 x 3 convolution to one logit per cell ("on the product").
Trained with torch on views made by `imagesearch.adaptation.synthetic.make_view` of a collection
(by default the generic one, tools/build_generic_set.py: no benchmark's products or photos), whose
true boxes are known. Each query is then framed by several rules on the head's map, its crop
embedded as the service does, searched exactly against research/exp_backbone.py's cached index
vectors; where the dataset records true boxes (the judge set), the boxes' IoU is reported too.

    python research/exp_detector.py model_repo/image_embedding/3/model.onnx --fit var/datasets/generic \\
        --dataset ../shared/datasets/dev --dataset var/datasets/judge

Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from exp_backbone import CACHE, file_hash, product_scores, queries_by_kind, ranks, report, truths, vectors
from exp_generic import embedded_generic
from exp_objectness import Tapped
from exp_oracle import true_boxes
from exp_stack import fit_rounds
from PIL import Image
from scipy import ndimage

from imagesearch.adaptation.embedding import BaseModel
from imagesearch.adaptation.objectness import box_overlap as iou
from imagesearch.adaptation.objectness import cell_labels
from imagesearch.adaptation.synthetic import make_view
from imagesearch.cli.adapt import catalog_images
from imagesearch.evaluation.dataset import load_dataset
from imagesearch.imaging.decode import WHOLE, RelativeBox
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.localize import photo_grid, subject_box
from imagesearch.imaging.objects import cutout
from imagesearch.imaging.sniff import Limits


class Head(torch.nn.Module):
    def __init__(self, channels: int, mid: int, hidden: int) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(channels, hidden, 1)
        self.mid = torch.nn.Conv2d(mid, hidden, 1, bias=False)
        self.context = torch.nn.Conv2d(hidden, hidden, 3, padding=1)
        self.out = torch.nn.Conv2d(hidden, 1, 3, padding=1)

    def forward(self, features: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
        # A 1 x 1 convolution commutes with bilinear upsampling: project first, upsample 64 channels.
        up = torch.nn.functional.interpolate(self.features(features), size=mid.shape[-2:], mode="bilinear")
        h = torch.relu(up + self.mid(mid))
        h = torch.relu(self.context(h))
        return self.out(h)[:, 0]


def training_views(model: Tapped, folder: Path, framing: Framing, views: int, seed: int):
    """(features, mid, on, inside) of `views` synthetic views per image of the collection; cached."""
    cached = CACHE / f"detector-{file_hash(model.model.path)}-{folder.name}-{views}-{seed}.npz"
    if cached.exists():
        data = np.load(cached)
        return data["features"], data["mid"], data["on"], data["inside"]
    images = catalog_images([folder])
    objects = [cutout(Image.open(path).convert("RGB")) for _, path in images]
    clutter = []
    for obj in objects:
        small = obj.copy()
        small.thumbnail((96, 96))
        clutter.append(small)

    def one(position: int):
        obj = objects[position].copy()
        obj.thumbnail((256, 256))
        out = []
        for round_ in range(views):
            view = make_view(obj, np.random.default_rng([seed, round_, position]), clutter, (0.08, 0.95))
            out.append((framing.whole_photo(framing.decode_photo(view.jpeg)), view))
        return out

    features, mids, ons, insides = [], [], [], []
    started = time.time()
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(objects), 32):
            made = [v for per in pool.map(one, range(start, min(start + 32, len(objects)))) for v in per]
            _, f, m = model.run(np.stack([pixels for pixels, _ in made]))
            features.append(f.astype(np.float16))
            mids.append(m.astype(np.float16))
            for _, view in made:
                on, inside = cell_labels(view.width, view.height, view.box, *m.shape[2:])
                ons.append(on)
                insides.append(inside)
    out = np.concatenate(features), np.concatenate(mids), np.array(ons), np.array(insides)
    np.savez(cached, features=out[0], mid=out[1], on=out[2], inside=out[3])
    print(f"{len(out[2])} training views in {time.time() - started:.0f} s", flush=True)
    return out


def train(features, mid, on, inside, hidden: int, epochs: int, seed: int) -> Head:
    torch.manual_seed(seed)
    f = torch.from_numpy(features.astype(np.float32))
    m = torch.from_numpy(mid.astype(np.float32))
    f_mean, f_std = f.mean((0, 2, 3), keepdim=True), f.std((0, 2, 3), keepdim=True) + 1e-3
    m_mean, m_std = m.mean((0, 2, 3), keepdim=True), m.std((0, 2, 3), keepdim=True) + 1e-3
    f, m = (f - f_mean) / f_std, (m - m_mean) / m_std
    target = torch.from_numpy(on.astype(np.float32))
    weight = torch.from_numpy(inside.astype(np.float32))
    positive = float(target[weight > 0].mean())
    weight = weight * torch.where(target > 0, 0.5 / positive, 0.5 / (1 - positive))
    head = Head(f.shape[1], m.shape[1], hidden)
    optimiser = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-3)
    steps = epochs * ((len(f) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    held = torch.arange(len(f)) % 10 == 0
    train_rows = torch.nonzero(~held)[:, 0]
    for epoch in range(epochs):
        order = train_rows[torch.randperm(len(train_rows))]
        total = 0.0
        for start in range(0, len(order), 64):
            rows = order[start : start + 64]
            logit = head(f[rows], m[rows])
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(logit, target[rows], reduction="none")
                * weight[rows]
            ).sum() / weight[rows].sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(rows)
        if epoch % 5 == 4 or epoch == epochs - 1:
            with torch.no_grad():
                p = head(f[held], m[held]) > 0
                mask = weight[held] > 0
                accuracy = float(((p == (target[held] > 0)) & mask).sum() / mask.sum())
            print(
                f"epoch {epoch + 1}: loss {total / len(order):.4f}, held-out cell accuracy {accuracy:.3f}", flush=True
            )
    # Fold the standardisation into the 1 x 1 convolutions: the graph would feed raw features.
    with torch.no_grad():
        w = head.features.weight / f_std.view(1, -1, 1, 1)
        head.features.bias -= (w * f_mean.view(1, -1, 1, 1)).sum((1, 2, 3))
        head.features.weight.copy_(w)
        w = head.mid.weight / m_std.view(1, -1, 1, 1)
        head.features.bias -= (w * m_mean.view(1, -1, 1, 1)).sum((1, 2, 3))
        head.mid.weight.copy_(w)
    return head.eval()


def component_box(level_map: np.ndarray, width: int, height: int, level: float, pick: str) -> RelativeBox:
    """The box of one connected region of cells above `level`: the one with the most mass or the highest peak."""
    fine, (left, top, photo_w, photo_h) = photo_grid(level_map, width, height)
    inside = np.zeros(fine.shape, bool)
    inside[int(np.ceil(top)) : int(top + photo_h), int(np.ceil(left)) : int(left + photo_w)] = True
    labels, count = ndimage.label(inside & (fine > level))
    if count == 0:
        return WHOLE
    index = np.arange(1, count + 1)
    score = ndimage.sum(fine, labels, index) if pick == "mass" else ndimage.maximum(fine, labels, index)
    ys, xs = np.nonzero(labels == index[int(np.argmax(score))])
    return (
        float(max(0.0, (xs.min() - left) / photo_w)),
        float(max(0.0, (ys.min() - top) / photo_h)),
        float(min(1.0, (xs.max() + 1 - left) / photo_w)),
        float(min(1.0, (ys.max() + 1 - top) / photo_h)),
    )


Rule = Callable[[np.ndarray, np.ndarray, int, int], RelativeBox]
RULES: dict[str, Rule] = {
    "saliency (today)": lambda s, p, w, h: subject_box(s, w, h),
    "saliency x p": lambda s, p, w, h: subject_box(s * p, w, h),
    "saliency x p^2": lambda s, p, w, h: subject_box(s * p * p, w, h),
    "saliency x p, mass": lambda s, p, w, h: component_box(s * p, w, h, float(np.mean(s * p) + np.std(s * p)), "mass"),
    "p, m+1s": lambda s, p, w, h: subject_box(p, w, h),
}


def evaluate(
    model: BaseModel,
    tapped: Tapped,
    head: Head,
    folder: Path,
    framing: Framing,
    label: str,
    out: Path | None,
    transform: Callable[[np.ndarray], np.ndarray] = lambda v: v,
) -> None:
    dataset = load_dataset(folder)
    cached = vectors(model, dataset, framing)
    boxes_true = true_boxes(folder) if (folder / "queries_meta.csv").exists() else {}
    crops: dict[str, list[np.ndarray]] = {rule: [] for rule in RULES}
    overlaps: dict[str, list[float]] = {rule: [] for rule in RULES}
    for query in dataset.queries:
        photo = framing.decode_photo(query.image.read_bytes())
        width, height = photo.image.size
        saliency, f, m = tapped.run(framing.whole_photo(photo)[None])
        with torch.no_grad():
            p = torch.sigmoid(head(torch.from_numpy(f), torch.from_numpy(m)))[0].numpy()
        boxes = {rule: fn(saliency[0], p, width, height) for rule, fn in RULES.items()}
        for rule, vector in zip(RULES, model.embed(np.stack([framing.box(photo, boxes[r]) for r in RULES]))):
            crops[rule].append(vector)
            if boxes_true:
                overlaps[rule].append(iou(boxes[rule], boxes_true[query.query_id]))
    truth = truths(dataset)
    kinds = queries_by_kind(dataset)
    for rule in RULES:
        scores = product_scores(
            transform(np.array(crops[rule])), transform(cached["index"]), cached["owner"], len(dataset.items)
        )
        rank = ranks(scores, truth)
        line: dict[str, object] = {
            "head": label,
            "dataset": folder.name,
            "rule": rule,
            "R@1": round(float(np.mean(rank < 1)), 3),
            "R@10": round(float(np.mean(rank < 10)), 3),
        }
        if boxes_true:
            found = np.array(overlaps[rule]) >= 0.5
            line["IoU>=0.5"] = round(float(np.mean(found)), 3)
            line["found by kind"] = {kind: round(float(np.mean(found[n])), 3) for kind, n in kinds.items()}
        line["kinds"] = {kind: round(float(np.mean(rank[n] < 1)), 3) for kind, n in kinds.items()}
        report(line, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--fit", type=Path, required=True, help="the collection whose synthetic views train the head")
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--adapted",
        type=Path,
        help="also measure adapted to each dataset's own catalog: this bare base model (version 2) embeds, "
        "`imagesearch adapt`'s whitening of the catalog applied (research/exp_stack.py's fit)",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    model = BaseModel(args.model, threads=2)
    tapped = Tapped(args.model)
    data = training_views(tapped, args.fit, framing, args.views, args.seed)
    started = time.time()
    head = train(*data, hidden=args.hidden, epochs=args.epochs, seed=args.seed)
    print(f"trained in {time.time() - started:.0f} s", flush=True)
    torch.save(head.state_dict(), CACHE / f"detector-head-{args.fit.name}-{args.views}-{args.hidden}.pt")
    label = f"{args.fit.name} x{args.views} h{args.hidden} e{args.epochs}"
    for folder in args.dataset:
        evaluate(model, tapped, head, folder, framing, label, args.out)
        if args.adapted:
            bare = BaseModel(args.adapted, threads=2)
            whitening = fit_rounds(embedded_generic(bare, folder, 6), 512)
            evaluate(bare, tapped, head, folder, framing, label + " adapted", args.out, whitening.apply)


if __name__ == "__main__":
    main()
