#!/usr/bin/env python3
"""Quality against cost of a model file, offline, exactly as the services would compute it.

For each model file (a version's model.onnx: the base model, another backbone built with
`tools/export_model.py --backbone`, or an adapted version) and each dataset in the dev layout:
the catalog and distractors indexed as the gateway does (each shot as sent and trimmed to its
object), every query through the embedder's localisation and object finding
(`imagesearch.imaging.framing.Framing`, `imagesearch.imaging.detect.find_objects`), exact
product-level search (a product scores its best row), and

* `main`: the main object's crop (what `Search` searches by default);
* `best object`: each product scored by its best match over every object found (free when the
  objects are listed anyway: their crops are embedded in the same batch);
* per kind of variation when the dataset's queries_meta.csv names it;
* the model's cost: median batch-1 milliseconds at 224 and 256 px on this machine, beside the
  base model's when several files are given.

    python research/exp_backbone.py /tmp/lite0.onnx /tmp/lite2.onnx --dataset ../shared/datasets/dev

Vectors are cached under var/research/ (by model file hash and dataset) for further studies.
Not part of the product (research/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from imagesearch.adaptation.embedding import BaseModel
from imagesearch.contracts.model import SALIENCY
from imagesearch.evaluation.dataset import Dataset, load_dataset
from imagesearch.imaging.detect import find_objects
from imagesearch.imaging.framing import Framing
from imagesearch.imaging.sniff import Limits

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "var" / "research"


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def vectors(model: BaseModel, dataset: Dataset, framing: Framing) -> dict[str, np.ndarray]:
    """Index rows (with their product's position), main crops and every object's crop of each query."""
    cached = CACHE / f"{file_hash(model.path)}-{dataset.root.name}.npz"
    if cached.exists():
        return dict(np.load(cached))
    parts, owners = [], []
    for start in range(0, len(dataset.items), 32):
        chunk = [item.image.read_bytes() for item in dataset.items[start : start + 32]]
        parts.append(model.embed(np.stack([framing.plain(c) for c in chunk])))
        parts.append(model.embed(np.stack([framing.trimmed(c) for c in chunk])))
        owners += list(range(start, start + len(chunk))) * 2
    mains, objects, object_query = [], [], []
    for number, query in enumerate(dataset.queries):
        photo = framing.decode_photo(query.image.read_bytes())
        _, saliency = model.run(framing.whole_photo(photo)[None], SALIENCY)
        found = find_objects(photo.image, saliency[0])
        crops = model.embed(np.stack([framing.box(photo, o.box) for o in found]))
        mains.append(crops[0])
        objects.extend(crops)
        object_query += [number] * len(found)
    out = {
        "index": np.concatenate(parts),
        "owner": np.array(owners),
        "main": np.array(mains),
        "objects": np.array(objects),
        "object_query": np.array(object_query),
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **out)
    return out


def product_scores(queries: np.ndarray, index: np.ndarray, owner: np.ndarray, products: int) -> np.ndarray:
    scores = queries @ index.T
    out = np.full((len(queries), products), -9.0, np.float32)
    for product in range(products):
        out[:, product] = scores[:, owner == product].max(1)
    return out


def truths(dataset: Dataset) -> np.ndarray:
    """Each query's product, as its position among the dataset's items (the index's owners)."""
    position = {item.product_id: i for i, item in enumerate(dataset.items)}
    return np.array([position[q.product_id] for q in dataset.queries])


def ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank of the true product, ties in its favour (as `imagesearch eval` counts)."""
    return (scores > scores[np.arange(len(truth)), truth][:, None]).sum(1)


def recalls(rank: np.ndarray, kinds: dict[str, list[int]]) -> dict[str, object]:
    """R@1 and R@10, and R@1 per kind of variation: one result line's figures."""
    return {
        "R@1": round(float(np.mean(rank < 1)), 3),
        "R@10": round(float(np.mean(rank < 10)), 3),
        "kinds": {kind: round(float(np.mean(rank[numbers] < 1)), 3) for kind, numbers in kinds.items()},
    }


def summary(rank: np.ndarray) -> dict[str, float]:
    return {f"R@{k}": float(np.mean(rank < k)) for k in (1, 5, 10)}


def timing(model: BaseModel, size: int, repeats: int = 20) -> float:
    batch = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    model.embed(batch)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.embed(batch)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def queries_by_kind(dataset: Dataset) -> dict[str, list[int]]:
    """The queries' positions by kind of variation (queries_meta.csv's `variation`), kinds sorted."""
    by_kind: dict[str, list[int]] = defaultdict(list)
    for number, query in enumerate(dataset.queries):
        if query.variation:
            by_kind[query.variation].append(number)
    return dict(sorted(by_kind.items()))


def evaluate(model: BaseModel, dataset: Dataset, framing: Framing) -> dict[str, object]:
    v = vectors(model, dataset, framing)
    truth, products = truths(dataset), len(dataset.items)
    main = product_scores(v["main"], v["index"], v["owner"], products)
    per_object = product_scores(v["objects"], v["index"], v["owner"], products)
    best = np.full_like(main, -9.0)
    np.maximum.at(best, v["object_query"], per_object)
    main_rank, best_rank = ranks(main, truth), ranks(best, truth)
    result: dict[str, object] = {"main": summary(main_rank), "best object": summary(best_rank)}
    by_kind = queries_by_kind(dataset)
    result["kinds"] = {
        kind: {
            "queries": len(numbers),
            "main R@1": float(np.mean(main_rank[numbers] < 1)),
            "best R@1": float(np.mean(best_rank[numbers] < 1)),
        }
        for kind, numbers in sorted(by_kind.items())
    }
    return result


def report(line: dict[str, object], out: Path | None) -> None:
    """Print one result line, and append it to `out` when given."""
    print(json.dumps(line))
    if out:
        with out.open("a") as handle:
            handle.write(json.dumps(line) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="model.onnx files")
    parser.add_argument("--dataset", type=Path, action="append", required=True, help="dataset folder (repeatable)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="append one JSON line per model and dataset")
    args = parser.parse_args()
    framing = Framing(limits=Limits(max_bytes=64 << 20))
    base_ms: dict[int, float] = {}
    for path in args.models:
        model = BaseModel(path, threads=args.threads)
        cost = {size: timing(model, size) for size in (224, 256)}
        base_ms = base_ms or cost
        print(
            f"{path}: batch-1 ms 224 px {cost[224]:.1f}, 256 px {cost[256]:.1f} "
            f"(x{cost[224] / base_ms[224]:.2f} / x{cost[256] / base_ms[224]:.2f} the first model's 224 px)"
        )
        for folder in args.dataset:
            result = evaluate(model, load_dataset(folder), framing)
            line = {"model": str(path), "dataset": folder.name, "ms": cost, **result}
            report(line, args.out)


if __name__ == "__main__":
    main()
