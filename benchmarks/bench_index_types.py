#!/usr/bin/env python3
"""Which ANN index: FLAT vs IVF_FLAT vs HNSW in Milvus, on random vectors and on the real dev-set embeddings.

    python benchmarks/bench_index_types.py                   # N=50k random + the dev set: ~5 min on 2 cores
    python benchmarks/bench_index_types.py --n 20000 --queries 200
    python benchmarks/bench_index_types.py --skip-random     # only the dev-set embeddings
    python benchmarks/bench_index_types.py --embeddings-cache /tmp/dev_emb.npz   # embed once, reuse

Two data sets, each loaded into one Milvus collection per index type (so all
of them are loaded at once and queried in turn, query by query, in a rotating
order: background load on a shared machine hits every index alike):

  * real: the dev benchmark's catalog + distractors (1,495 images) as the
    collection and its 299 shopper photos as queries, embedded once here with
    raw onnxruntime on model_repo/image_embedding/<version>/model.onnx and the
    embedder's own preprocessing (imagesearch.imaging.frame.Preprocessor,
    default settings: 224 px centre crop). Besides recall against FLAT it
    reports the product Recall@1/@10 against the dev set's ground truth;
  * random: N L2-normalised Gaussian vectors (--dim, 1280 by default) with
    fresh random unit queries: the worst case for any ANN index (no cluster
    structure, every distance alike), and the scale at which build time and
    latency start to differ.

Indexes (metric IP; vectors are unit length, so IP = cosine):
FLAT (exact, the reference), IVF_FLAT (nlist 128, nprobe 16),
HNSW (M 16, efConstruction 200, the retriever's defaults; searched with ef 64 and 128).

Per index: build time (create_index after the data is inserted and flushed,
until Milvus reports every row indexed), load time, and per-query latency
(top-10, batch 1, ids only, --consistency Session by default) as p50/p95/mean,
recall@10 = |ANN top-10 ∩ FLAT top-10| / 10, averaged over the queries.
FLAT itself is checked against an exact numpy search.

Without --milvus-uri a private Milvus (imagesearch.stack.milvus.LocalMilvus)
is started in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from shared import pct
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]


def _latest_model_file(model_dir: Path = REPO / "model_repo" / "image_embedding") -> Path:
    """<model dir>/<highest numeric version>/model.onnx: the version Triton serves by default."""
    versions = sorted(
        (int(d.name) for d in model_dir.glob("[0-9]*") if d.name.isdigit() and (d / "model.onnx").is_file()),
        reverse=True,
    )
    return model_dir / str(versions[0] if versions else 1) / "model.onnx"


MODEL_FILE = _latest_model_file()
DEFAULT_DEV_SET = Path(os.environ.get("IMAGESEARCH_DEV_SET", REPO.parent / "shared" / "datasets" / "dev"))
PREFIX = "bench_index"


@dataclass(frozen=True)
class IndexSpec:
    label: str
    index_type: str
    build: dict
    search: dict
    collection_key: str  # configurations that share an index share a collection


@dataclass
class Outcome:
    spec: IndexSpec
    build_s: float = 0.0
    load_s: float = 0.0
    ms: list[float] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)


def index_specs(args: argparse.Namespace) -> list[IndexSpec]:
    specs = [
        IndexSpec("FLAT (exact)", "FLAT", {}, {}, "flat"),
        IndexSpec(
            f"IVF_FLAT nlist {args.nlist} / nprobe {args.nprobe}",
            "IVF_FLAT",
            {"nlist": args.nlist},
            {"nprobe": args.nprobe},
            "ivf",
        ),
    ]
    for ef in args.ef:
        specs.append(
            IndexSpec(
                f"HNSW M {args.hnsw_m} efC {args.ef_construction} / ef {ef}",
                "HNSW",
                {"M": args.hnsw_m, "efConstruction": args.ef_construction},
                {"ef": ef},
                "hnsw",
            )
        )
    return specs


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return f"{platform.machine()}, {os.cpu_count()} CPUs{', ' + model if model else ''}, Python {platform.python_version()}"


def load_average() -> str:
    """The 1/5/15-minute load averages: on a shared machine they say how busy it was."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------- data


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def embed_dev_set(dev: Path, cache: Path | None) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """(catalog vectors, their product ids, query vectors, the queries' true product ids)."""
    items = read_rows(dev / "catalog.csv") + read_rows(dev / "distractors.csv")
    queries = read_rows(dev / "queries.csv")
    item_ids, query_truth = [r["product_id"] for r in items], [q["product_id"] for q in queries]
    stat = MODEL_FILE.stat()
    model_key = f"{MODEL_FILE} {stat.st_size} {stat.st_mtime_ns}"
    print(f"model: {MODEL_FILE.relative_to(REPO)}")
    if cache is not None and cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if (
            list(data["item_ids"]) == item_ids
            and list(data["query_truth"]) == query_truth
            and "model_key" in data.files
            and str(data["model_key"]) == model_key
        ):
            print(f"dev-set embeddings from {cache}")
            return data["items"], item_ids, data["queries"], query_truth
    import onnxruntime as ort

    from imagesearch.imaging.frame import Preprocessor
    from imagesearch.imaging.sniff import Limits

    pre = Preprocessor(Limits(), (224, 224))  # the embedder's default limits and resize mode
    options = ort.SessionOptions()  # as model_repo/image_embedding/<version>/model.py sets them
    options.intra_op_num_threads = 0
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(MODEL_FILE), options, providers=["CPUExecutionProvider"])
    paths = [dev / r["image"] for r in items] + [dev / q["image"] for q in queries]
    vectors = []
    with (
        ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool,
        tqdm(total=len(paths), unit="img", desc="embed dev set (onnxruntime)") as bar,
    ):
        for start in range(0, len(paths), 32):
            pixels = list(pool.map(lambda p: pre(p.read_bytes()), paths[start : start + 32]))
            vectors.append(session.run(["EMBEDDING"], {"IMAGE": np.stack(pixels)})[0])
            bar.update(len(pixels))
    all_vectors = unit(np.concatenate(vectors))
    item_vectors, query_vectors = all_vectors[: len(items)], all_vectors[len(items) :]
    if cache is not None:
        np.savez(
            cache,
            items=item_vectors,
            queries=query_vectors,
            item_ids=np.array(item_ids),
            query_truth=np.array(query_truth),
            model_key=np.array(model_key),
        )
    return item_vectors, item_ids, query_vectors, query_truth


# ---------------------------------------------------------------------------- milvus


def create_and_fill(client, name: str, vectors: np.ndarray, label: str) -> float:  # type: ignore[no-untyped-def]
    from pymilvus import DataType, MilvusClient

    if client.has_collection(name):
        client.drop_collection(name)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    client.create_collection(name, schema=schema)
    batch = max(1, (8 << 20) // (4 * vectors.shape[1]))  # ~8 MB per insert
    start = time.perf_counter()
    with tqdm(total=len(vectors), unit="vec", desc=f"insert {label}", leave=False) as bar:
        for i in range(0, len(vectors), batch):
            chunk = vectors[i : i + batch]
            client.insert(name, [{"id": i + j, "embedding": v.tolist()} for j, v in enumerate(chunk)])
            bar.update(len(chunk))
    client.flush(name)
    return time.perf_counter() - start


def build_index(client, name: str, spec: IndexSpec, rows: int, timeout: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Create the index on flushed data and wait until it covers every row; then load. (build s, load s)"""
    params = client.prepare_index_params()
    params.add_index(field_name="embedding", index_type=spec.index_type, metric_type="IP", params=spec.build)
    start = time.perf_counter()
    client.create_index(name, params)
    deadline = time.monotonic() + timeout
    while True:
        info = client.describe_index(name, "embedding")
        if (
            int(info.get("indexed_rows", 0)) >= rows
            and int(info.get("pending_index_rows", 0)) == 0
            and info.get("state", "Finished") in ("Finished", 3, "3")
        ):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{spec.index_type} index on {name} not built within {timeout:.0f} s: {info}")
        time.sleep(0.05)
    built = time.perf_counter() - start
    start = time.perf_counter()
    client.load_collection(name)
    return built, time.perf_counter() - start


def run_dataset(client, label: str, data: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> list[Outcome]:  # type: ignore[no-untyped-def]
    specs = index_specs(args)
    outcomes = [Outcome(s) for s in specs]
    names: dict[str, str] = {}
    for key in dict.fromkeys(s.collection_key for s in specs):
        name = f"{PREFIX}_{label}_{key}"
        insert_s = create_and_fill(client, name, data, f"{label}/{key}")
        spec = next(s for s in specs if s.collection_key == key)
        build_s, load_s = build_index(client, name, spec, len(data), args.index_timeout)
        print(
            f"  {label}: {spec.index_type:8s} insert+flush {insert_s:6.1f} s, build {build_s:6.1f} s, "
            f"load {load_s:5.1f} s",
            flush=True,
        )
        names[key] = name
        for o in outcomes:
            if o.spec.collection_key == key:
                o.build_s, o.load_s = build_s, load_s

    def search(o: Outcome, q: np.ndarray) -> tuple[float, list[int]]:
        params = {"metric_type": "IP", "params": o.spec.search}
        t0 = time.perf_counter()
        [page] = client.search(
            names[o.spec.collection_key],
            data=[q.tolist()],
            limit=args.top_k,
            search_params=params,
            consistency_level=args.consistency,
        )
        return (time.perf_counter() - t0) * 1000, [int(hit["id"]) for hit in page]

    for q in queries[: args.warmup]:
        for o in outcomes:
            search(o, q)
    for i, q in enumerate(tqdm(queries, unit="query", desc=f"search {label} ({len(outcomes)} configs)", leave=False)):
        shift = i % len(outcomes)  # rotate who goes first
        for o in outcomes[shift:] + outcomes[:shift]:
            ms, ids = search(o, q)
            o.ms.append(ms)
            o.ids.append(ids)
    if not args.keep_collections:
        for name in names.values():
            client.drop_collection(name)
    return outcomes


def report(
    label: str,
    outcomes: list[Outcome],
    data: np.ndarray,
    queries: np.ndarray,
    args: argparse.Namespace,
    truth: tuple[list[str], list[str]] | None = None,
) -> None:
    exact = np.argsort(-(queries @ data.T), axis=1)[:, : args.top_k]
    flat = outcomes[0]
    flat_vs_numpy = statistics.fmean(len(set(f) & set(e.tolist())) / args.top_k for f, e in zip(flat.ids, exact))
    print(
        f"\n{label}: {len(data)} x {data.shape[1]}-d vectors, {len(queries)} queries, top-{args.top_k}, "
        f"{args.consistency} consistency; FLAT vs exact numpy recall@{args.top_k} {flat_vs_numpy:.4f}"
    )
    head = f"{'index':36s}{'build s':>9s}{'load s':>8s}{'p50 ms':>8s}{'p95 ms':>8s}{'mean ms':>9s}{'recall@10':>11s}"
    if truth:
        head += f"{'R@1':>7s}{'R@10':>7s}"
    print(head)
    print("-" * len(head))
    for o in outcomes:
        recall = statistics.fmean(len(set(a) & set(f)) / args.top_k for a, f in zip(o.ids, flat.ids))
        line = (
            f"{o.spec.label:36s}{o.build_s:9.2f}{o.load_s:8.2f}{statistics.median(o.ms):8.2f}{pct(o.ms, 95):8.2f}"
            f"{statistics.fmean(o.ms):9.2f}{recall:11.4f}"
        )
        if truth:
            item_ids, query_truth = truth
            ranked = [[item_ids[i] for i in ids] for ids in o.ids]
            r1 = statistics.fmean(r[:1] == [t] for r, t in zip(ranked, query_truth))
            r10 = statistics.fmean(t in r for r, t in zip(ranked, query_truth))
            line += f"{r1:7.3f}{r10:7.3f}"
        print(line)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50_000, help="random vectors (default 50000)")
    p.add_argument("--dim", type=int, default=1280, help="dimension of the random vectors (default 1280)")
    p.add_argument("--queries", type=int, default=300, help="random queries (default 300)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--nlist", type=int, default=128)
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", default="64,128", help="HNSW search ef values (default 64,128)")
    p.add_argument("--consistency", choices=("Session", "Bounded", "Eventually", "Strong"), default="Session")
    p.add_argument("--dev-set", type=Path, default=DEFAULT_DEV_SET)
    p.add_argument("--embeddings-cache", type=Path, help="npz to read the dev-set embeddings from / write them to")
    p.add_argument("--skip-random", action="store_true")
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--milvus-uri", default="", help="use this Milvus instead of starting a private one")
    p.add_argument("--index-timeout", type=float, default=600)
    p.add_argument("--keep-collections", action="store_true")
    args = p.parse_args(argv)
    args.ef = [int(x) for x in args.ef.split(",") if x.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    print(f"machine: {machine()}; load average at start {load_average()}")
    real = None
    if not args.skip_real:
        if not (args.dev_set / "queries.csv").is_file():
            print(f"dev set not found at {args.dev_set}; use --dev-set or --skip-real", file=sys.stderr)
            return 2
        real = embed_dev_set(args.dev_set, args.embeddings_cache)

    from pymilvus import MilvusClient

    from imagesearch.stack.milvus import LocalMilvus

    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        milvus = None
        uri = args.milvus_uri
        if not uri:
            print("starting a private Milvus ...", flush=True)
            milvus = LocalMilvus(Path(tmp) / "milvus", stop_timeout=5).start()
            uri = milvus.uri
        try:
            client = MilvusClient(uri=uri, timeout=args.index_timeout)
            results = []
            if real is not None:
                items, item_ids, queries, truth = real
                results.append(
                    (
                        "dev set (real embeddings)",
                        run_dataset(client, "real", items, queries, args),
                        items,
                        queries,
                        (item_ids, truth),
                    )
                )
            if not args.skip_random:
                rng = np.random.default_rng(0)
                data = unit(rng.standard_normal((args.n, args.dim), dtype=np.float32))
                queries = unit(rng.standard_normal((args.queries, args.dim), dtype=np.float32))
                results.append(
                    (f"random N={args.n}", run_dataset(client, "random", data, queries, args), data, queries, None)
                )
            for label, outcomes, data, queries, truth in results:
                report(label, outcomes, data, queries, args, truth)
            client.close()
        finally:
            if milvus is not None:
                milvus.stop()
    print(f"\nwall time {time.monotonic() - began:.0f} s; load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
