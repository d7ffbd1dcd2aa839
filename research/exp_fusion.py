#!/usr/bin/env python3
"""Can the whole photo's vector (free: the localisation pass computes it) rescue queries whose crop
misses the product? Reproduces the service's query and index pipeline offline with onnxruntime on a
model version directory (default: an adapted version), then compares rank fusions of the crop's and
the whole photo's result lists.

    python research/exp_fusion.py /path/to/model_repo/image_embedding/3/model.onnx
"""

import csv
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from imagesearch_embedder.imaging import Limits, Preprocessor, ResizeMode
from imagesearch_embedder.localize import subject_box

DEV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dev"
model = sys.argv[1]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
limits = Limits(64 << 20, 40_000_000)
embed_pre = Preprocessor(limits, (256, 256), ResizeMode.CROP)
locate = Preprocessor(limits, (224, 224), ResizeMode.PAD, use_draft=False)
crop_pre = Preprocessor(limits, (256, 256), ResizeMode.PAD, use_draft=False)


def run(batch, outputs=("EMBEDDING",)):
    return session.run(list(outputs), {"IMAGE": np.stack(batch)})


rows = []
for name in ("catalog.csv", "distractors.csv"):
    rows += list(csv.DictReader(open(DEV / name)))
cats = [r["category"] for r in rows]
index, owner = [], []
for start in range(0, len(rows), 32):
    chunk = [(DEV / r["image"]).read_bytes() for r in rows[start : start + 32]]
    index.append(run([embed_pre(c) for c in chunk])[0])
    index.append(run([embed_pre.trimmed_to_object(c) for c in chunk])[0])
    owner += list(range(start, start + len(chunk))) * 2
index = np.concatenate(index)
owner = np.array(owner)
ids = [r["product_id"] for r in rows]
queries = list(csv.DictReader(open(DEV / "queries.csv")))
truth = np.array([ids.index(q["product_id"]) for q in queries])
crop_v, whole_v = [], []
for q in queries:
    data = (DEV / q["image"]).read_bytes()
    decoded = locate.decode(data)
    whole, saliency = run([locate.frame(decoded, (0, 0, 1, 1), ResizeMode.PAD)], ("EMBEDDING", "SALIENCY"))
    box = subject_box(saliency[0], decoded.image.width, decoded.image.height)
    crop_v.append(run([crop_pre.frame(decoded, box, ResizeMode.PAD)])[0][0])
    whole_v.append(whole[0])


def product_scores(vectors):
    s = np.asarray(vectors) @ index.T
    out = np.full((len(vectors), len(rows)), -9.0)
    for j in range(len(rows)):
        out[:, j] = s[:, owner == j].max(1)
    return out


crop_s, whole_s = product_scores(crop_v), product_scores(whole_v)


def report(name, scores):
    order = np.argsort(-scores, 1)
    rank = np.array([list(order[i]).index(truth[i]) for i in range(len(truth))])
    print(f"{name:45s} R@1 {np.mean(rank < 1):.3f} R@5 {np.mean(rank < 5):.3f} R@10 {np.mean(rank < 10):.3f}")


report("crop (service)", crop_s)
report("whole photo", whole_s)
for w in (0.1, 0.2, 0.3, 0.5):
    report(f"score fusion crop + {w} x whole", crop_s + w * whole_s)
for k in (60,):
    rc = np.argsort(np.argsort(-crop_s, 1), 1)
    rw = np.argsort(np.argsort(-whole_s, 1), 1)
    for w in (0.25, 0.5, 1.0):
        report(f"RRF k={k} whole weight {w}", 1 / (k + rc) + w / (k + rw))
# keep the crop's top 7, then fill 8..10 with the whole photo's best not already listed
order_c, order_w = np.argsort(-crop_s, 1), np.argsort(-whole_s, 1)
for keep in (5, 7, 8, 9):
    hit10 = 0
    for i in range(len(truth)):
        top = list(order_c[i][:keep])
        for j in order_w[i]:
            if len(top) == 10:
                break
            if j not in top:
                top.append(j)
        hit10 += truth[i] in top
    print(f"crop top {keep} + whole-photo fill to 10:       R@10 {hit10 / len(truth):.3f}")
(Path(__file__).resolve().parent / "cache").mkdir(exist_ok=True)
np.savez(
    Path(__file__).resolve().parent / "cache" / "fusion.npz",
    crop=crop_s,
    whole=whole_s,
    truth=truth,
    cats=np.array(cats),
    ids=np.array(ids),
)
