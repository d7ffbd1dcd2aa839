#!/usr/bin/env python3
"""End-to-end latency of one Search through the gateway vs the raw engines it is built on.

    python benchmarks/bench_search.py                    # the whole dev set: ~2.5 min on 2 cores
    python benchmarks/bench_search.py --queries 50 --repeats 1 --duration 4      # a quick look
    python benchmarks/bench_search.py --chart docs/benchmarks_search.png

Starts the real stack the way `imagesearch up` does (imagesearch.stack.local.LocalStack:
Redis, Triton, Milvus, and the gateway, embedder and retriever as their own
`python -m imagesearch_<name>` processes) in a temporary folder, then:

 1. indexes the dev benchmark catalog + distractors through the gateway's
    UpsertProducts (batches of --batch products, --index-concurrency in flight),
    and reports images/s; then flushes the collection and waits for Milvus to
    index it (the steady state of a catalog: sealed, HNSW-indexed segments);
 2. for every dev query photo, one after another, times
      (a) Search through the gateway with skip_cache=true (Redis is still
          consulted and the answer stored, as for any uncached request),
      (b) the same Search again, now answered from the Redis cache,
      (c) the raw engines in this process, on the same photo: decode +
          preprocess (the embedder's own Preprocessor, with its default
          settings), onnxruntime on model_repo/image_embedding/<version>/model.onnx at
          batch 1 (the session options of model.py), and a pymilvus search on
          the collection the retriever created, with the retriever's parameters
          (limit = 4 x top_k, ef, output fields, Session consistency);
    each query --repeats times; the gateway and raw sides alternate which goes
    first (from repeat to repeat and query to query, with a --settle pause
    before each side), so both see the same background load; --warmup queries
    run first, untimed. Reported: p50/p95/mean over all samples, the same over
    the best of the repeats of each query (a busy machine only ever adds
    time), the ratio gateway / raw sum and the overhead in ms;
 3. throughput with 1, 4 and 8 searches in flight (grpc.aio client, uncached
    and cached), each level timed in two halves (1,4,8 then 8,4,1) against drift.

"raw sum" is decode + onnxruntime + pymilvus for the same query; the overhead
is what the services add on top: three gRPC hops with protobuf, Triton's
Python backend and dynamic batcher, the Redis look-up and store, the
retriever's validation and grouping, OpenTelemetry spans (created, not
exported unless OTEL_EXPORTER_OTLP_ENDPOINT is set). The client runs on the
same machine and shares its cores with the stack.

Needs the model (tools/export_model.py), the Triton venv (.venv-triton),
redis-server on PATH and the dev set (../shared/datasets/dev or --dev-set).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEV_SET = Path(os.environ.get("IMAGESEARCH_DEV_SET", REPO.parent / "shared" / "datasets" / "dev"))


def _latest_model_file(model_dir: Path = REPO / "model_repo" / "image_embedding") -> Path:
    """<model dir>/<highest numeric version>/model.onnx: the version Triton serves by default."""
    versions = sorted(
        (int(d.name) for d in model_dir.glob("[0-9]*") if d.name.isdigit() and (d / "model.onnx").is_file()),
        reverse=True,
    )
    return model_dir / str(versions[0] if versions else 1) / "model.onnx"


MODEL_FILE = _latest_model_file()  # replaced in main() when --model-repo names another repository


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


GRPC_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]

from shared import pct, wait_indexed  # noqa: E402 - benchmarks/ is on the path of a script run from it

from imagesearch.v1 import common_pb2, search_pb2, search_pb2_grpc  # noqa: E402

# ---------------------------------------------------------------------------- helpers


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dataclass
class Series:
    label: str
    ms: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        return pct(self.ms, 95)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.ms)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} CPUs{', ' + model if model else ''}, Python {platform.python_version()}"


def load_average() -> str:
    """The 1/5/15-minute load averages: on a shared machine they say how busy it was."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------- stack and catalog


def start_stack(runtime: Path, log_level: str | None, model_repo: Path):  # type: ignore[no-untyped-def]
    from imagesearch.stack.local import LocalStack, StackConfig

    # The benchmark measures the engines, not the per-key rate limit (50/s by default, below the cached
    # throughput): its one key is unlimited, unless the caller's environment says otherwise.
    env = {"GATEWAY_KEY_RATE_PER_SECOND": "0", **os.environ}
    config = StackConfig(
        repo_root=REPO,
        runtime_dir=runtime,
        gateway_port=0,
        log_level=log_level,
        grace=5.0,
        environ=env,
        model_repo=model_repo,
    )
    stack = LocalStack(config, progress=lambda msg: print(f"  {msg}", flush=True))
    return stack.start(), env


def catalog_products(dev: Path) -> list[tuple[dict[str, str], Path]]:
    rows = read_rows(dev / "catalog.csv") + read_rows(dev / "distractors.csv")
    return [(r, dev / r["image"]) for r in rows]


def index_catalog(
    stub: search_pb2_grpc.SearchServiceStub, items: list[tuple[dict[str, str], Path]], batch: int, concurrency: int
) -> tuple[float, float]:
    """Upsert every item through the gateway.

    Returns the wall time, and the rate after the first reply (the first batch
    also creates and loads the collection) in images/s.
    """

    def send(chunk: list[tuple[dict[str, str], Path]]) -> int:
        request = search_pb2.UpsertProductsRequest(
            products=[
                search_pb2.ProductInput(
                    product=common_pb2.Product(
                        product_id=row["product_id"],
                        title=row["title"],
                        category=row["category"],
                        brand="dev",
                        price=1.0,
                    ),
                    images=[search_pb2.ProductImage(content=path.read_bytes(), uri=row["image"])],
                )
                for row, path in chunk
            ]
        )
        reply = stub.UpsertProducts(request, timeout=300)
        failed = [(r.product_id, r.error) for r in reply.results if not r.ok]
        if failed:
            raise SystemExit(f"indexing failed for {len(failed)} products, e.g. {failed[:3]}")
        return len(chunk)

    chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
    start = time.perf_counter()
    first: tuple[float, int] | None = None
    with (
        ThreadPoolExecutor(max_workers=concurrency) as pool,
        tqdm(total=len(items), unit="img", desc="index via gateway") as bar,
    ):
        for done in as_completed([pool.submit(send, c) for c in chunks]):
            bar.update(done.result())
            if first is None:
                first = (time.perf_counter(), bar.n)
    end = time.perf_counter()
    assert first is not None
    steady = (len(items) - first[1]) / (end - first[0]) if end > first[0] else float("nan")
    return end - start, steady


# ---------------------------------------------------------------------------- raw engines


class RawEngines:
    """What the services wrap, called directly: Preprocessor, onnxruntime, pymilvus."""

    def __init__(self, milvus_uri: str, collection: str, env: dict[str, str], top_k: int) -> None:
        import onnxruntime as ort
        from pymilvus import MilvusClient

        from imagesearch.imaging.decode import ResizeMode
        from imagesearch.imaging.framing import Framing
        from imagesearch.imaging.sniff import Limits
        from imagesearch_embedder.settings import EmbedderSettings
        from imagesearch_retriever.core import OVERFETCH
        from imagesearch_retriever.milvus.schema import PRODUCT_FIELDS
        from imagesearch_retriever.settings import RetrieverSettings

        emb = EmbedderSettings.from_env(env)
        # The query pipeline the gateway runs by default (GATEWAY_LOCALIZE_QUERIES): the photo
        # letterboxed at the localisation size, its SALIENCY map, the subject's box, then that crop
        # letterboxed at the embedding size, exactly as the embedder does (the same Framing).
        self.framing = Framing(
            limits=Limits(max_bytes=emb.max_image_bytes, max_pixels=emb.max_pixels),
            size=(emb.image_size, emb.image_size),
            locate_size=(emb.localize_size, emb.localize_size),
            mode=ResizeMode(emb.resize_mode),
        )
        self.localize = env.get("GATEWAY_LOCALIZE_QUERIES", "true").lower() in ("1", "true", "yes", "on")
        options = ort.SessionOptions()  # as model_repo/image_embedding/<version>/model.py sets them
        options.intra_op_num_threads = 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(MODEL_FILE), options, providers=["CPUExecutionProvider"])
        ret = RetrieverSettings.from_env(env)
        self.limit = top_k * OVERFETCH  # the retriever's first (and, for one vector, only) fetch
        self.params = {"metric_type": "IP", "params": {"ef": max(ret.hnsw_ef_search, self.limit)}}
        self.consistency = ret.read_consistency
        self.fields = [*PRODUCT_FIELDS, "image_uri"]
        self.client = MilvusClient(uri=milvus_uri)
        self.collection = collection

    def decode(self, data: bytes) -> np.ndarray:
        return self.framing.plain(data)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(["EMBEDDING"], {"IMAGE": pixels[None]})[0][0]

    def localized_vector(self, data: bytes) -> tuple[np.ndarray, float, float]:
        """The two-pass query vector; returns (vector, ms of CPU-side image work, ms of onnxruntime)."""
        t0 = time.perf_counter()
        photo = self.framing.decode_photo(data)
        first = self.framing.whole_photo(photo)
        t1 = time.perf_counter()
        saliency = self.session.run(["SALIENCY"], {"IMAGE": first[None]})[0][0]
        t2 = time.perf_counter()
        crop = self.framing.localized(photo, saliency)
        t3 = time.perf_counter()
        vector = self.embed(crop)
        t4 = time.perf_counter()
        return vector, ((t1 - t0) + (t3 - t2)) * 1000, ((t2 - t1) + (t4 - t3)) * 1000

    def search(self, vector: np.ndarray) -> list[str]:
        [page] = self.client.search(
            self.collection,
            data=[vector.tolist()],
            limit=self.limit,
            filter="",
            output_fields=self.fields,
            search_params=self.params,
            consistency_level=self.consistency,
        )
        return [hit["entity"]["product_id"] for hit in page]


# ---------------------------------------------------------------------------- measurements


@dataclass
class Latencies:
    uncached: Series = field(default_factory=lambda: Series("gateway Search, uncached"))
    cached: Series = field(default_factory=lambda: Series("gateway Search, cached"))
    decode: Series = field(default_factory=lambda: Series("raw decode + preprocess (+ box)"))
    onnx: Series = field(default_factory=lambda: Series("raw onnxruntime (both passes)"))
    milvus: Series = field(default_factory=lambda: Series("raw pymilvus search"))
    raw_sum: Series = field(default_factory=lambda: Series("raw sum"))
    ranks: list[int | None] = field(default_factory=list)
    top1_agree: int = 0
    top10_overlap: list[float] = field(default_factory=list)
    best: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # label -> per-query minimum


def measure_sequential(
    stub: search_pb2_grpc.SearchServiceStub,
    raw: RawEngines,
    queries: list[dict[str, str]],
    photos: list[bytes],
    top_k: int,
    warmup: int,
    settle_s: float,
    repeats: int,
) -> Latencies:
    out = Latencies()

    def gateway(data: bytes, record: bool) -> list[str]:
        t0 = time.perf_counter()
        reply = stub.Search(search_pb2.SearchRequest(image=data, top_k=top_k, skip_cache=True), timeout=30)
        t1 = time.perf_counter()
        again = stub.Search(search_pb2.SearchRequest(image=data, top_k=top_k), timeout=30)
        t2 = time.perf_counter()
        if reply.cache_hit or not again.cache_hit:
            raise SystemExit(f"cache did not behave: skip_cache hit={reply.cache_hit}, repeat hit={again.cache_hit}")
        if record:
            out.uncached.ms.append((t1 - t0) * 1000)
            out.cached.ms.append((t2 - t1) * 1000)
        return [h.product_id for h in reply.hits]

    def engines(data: bytes, record: bool) -> list[str]:
        t0 = time.perf_counter()
        if raw.localize:
            vector, image_ms, onnx_ms = raw.localized_vector(data)
        else:
            pixels = raw.decode(data)
            t1 = time.perf_counter()
            vector = raw.embed(pixels)
            image_ms, onnx_ms = (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        ids = raw.search(vector)
        t3 = time.perf_counter()
        if record:
            out.decode.ms.append(image_ms)
            out.onnx.ms.append(onnx_ms)
            out.milvus.ms.append((t3 - t2) * 1000)
            out.raw_sum.ms.append((t3 - t0) * 1000)
        return list(dict.fromkeys(ids))[:top_k]  # one hit per product, as the retriever groups

    for i in range(warmup):
        data = photos[i % len(photos)]
        gateway(data, False)
        engines(data, False)
    series = (out.uncached, out.cached, out.decode, out.onnx, out.milvus, out.raw_sum)
    for i, (query, data) in enumerate(tqdm(list(zip(queries, photos)), unit="query", desc="sequential searches")):
        first = [len(s.ms) for s in series]
        for r in range(repeats):
            # A short pause before each side lets what the other side left running (onnxruntime's
            # spinning workers, Milvus and the services finishing up) settle first.
            if (i + r) % 2 == 0:
                time.sleep(settle_s)
                got = gateway(data, True)
                time.sleep(settle_s)
                got_raw = engines(data, True)
            else:
                time.sleep(settle_s)
                got_raw = engines(data, True)
                time.sleep(settle_s)
                got = gateway(data, True)
            if r == 0:
                ids, raw_ids = got, got_raw
        # Noise on a shared machine only ever adds time: the best of the repeats is the cost itself.
        for s, start in zip(series, first):
            out.best[s.label].append(min(s.ms[start:]))
        out.ranks.append(ids.index(query["product_id"]) + 1 if query["product_id"] in ids else None)
        out.top1_agree += bool(ids and raw_ids and ids[0] == raw_ids[0])
        out.top10_overlap.append(len(set(ids) & set(raw_ids)) / max(1, len(ids)))
    return out


@dataclass
class Throughput:
    concurrency: int
    cached: bool
    searches: int = 0
    seconds: float = 0.0
    ms: list[float] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.searches / self.seconds if self.seconds else 0.0


async def _run_level(
    address: str, key: str, photos: list[bytes], top_k: int, result: Throughput, seconds: float
) -> None:
    from imagesearch.client.credentials import AioKeyInterceptor

    async with grpc.aio.insecure_channel(
        address, options=GRPC_OPTIONS, interceptors=[AioKeyInterceptor(key)]
    ) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        counter = iter(range(10**9))
        skip = not result.cached

        async def worker(stop_at: float, record: bool) -> None:
            while time.perf_counter() < stop_at:
                data = photos[next(counter) % len(photos)]
                sent = time.perf_counter()
                reply = await stub.Search(
                    search_pb2.SearchRequest(image=data, top_k=top_k, skip_cache=skip), timeout=60
                )
                if reply.cache_hit != result.cached:
                    raise SystemExit(f"expected cache_hit={result.cached}, got {reply.cache_hit}")
                if record:
                    result.ms.append((time.perf_counter() - sent) * 1000)
                    result.searches += 1

        warm_stop = time.perf_counter() + 0.5
        await asyncio.gather(*(worker(warm_stop, False) for _ in range(result.concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds, True) for _ in range(result.concurrency)))
        result.seconds += time.perf_counter() - start


def wait_cacheable(stub: search_pb2_grpc.SearchServiceStub, data: bytes, top_k: int, limit_s: float = 120) -> None:
    """Until a repeated search is answered from the cache: after a write the gateway caches a catalog
    again only once its write window has passed (GATEWAY_CACHE_* settings), and the cached column
    measures the steady state."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        stub.Search(search_pb2.SearchRequest(image=data, top_k=top_k), timeout=30)
        if stub.Search(search_pb2.SearchRequest(image=data, top_k=top_k), timeout=30).cache_hit:
            return
        time.sleep(1)
    raise SystemExit(f"the gateway still caches nothing {limit_s:.0f} s after indexing")


def measure_throughput(
    address: str,
    key: str,
    photos: list[bytes],
    top_k: int,
    levels: list[int],
    seconds: float,
    cached_seconds: float,
) -> list[Throughput]:
    results: list[Throughput] = []
    for cached, duration in ((False, seconds), (True, cached_seconds)):
        if duration <= 0:
            continue
        by_level = {c: Throughput(c, cached) for c in levels}
        # Two halves, forwards then backwards, so a drift in background load hits every level alike.
        for order in (levels, list(reversed(levels))):
            for c in order:
                asyncio.run(_run_level(address, key, photos, top_k, by_level[c], duration / 2))
        results += [by_level[c] for c in levels]
    return results


# ---------------------------------------------------------------------------- report


def print_report(
    lat: Latencies, index: dict[str, float], tput: list[Throughput], args: argparse.Namespace, startup_s: float
) -> dict:
    n = len(lat.ranks)
    raw = lat.raw_sum
    rows = [lat.uncached, lat.cached, lat.decode, lat.onnx, lat.milvus, lat.raw_sum]
    print()
    print(f"machine: {machine()}; load average at start {args.load_at_start}, now {load_average()}")
    print(f"model: {_shown(MODEL_FILE)}")
    print(f"stack up in {startup_s:.1f} s (Redis, Triton, Milvus, 3 services as subprocesses)")
    print(
        f"indexing: {index['images']:.0f} images in {index['seconds']:.1f} s = {index['images_per_s']:.1f} images/s "
        f"(batches of {args.batch}, {args.index_concurrency} in flight); "
        f"{index['images_per_s_after_first_batch']:.1f} images/s after the first batch, which creates the "
        f"collection; then flush + index wait {index['flush_s']:.1f} s"
    )

    print(
        f"\nsingle search, sequential: {n} dev queries x {args.repeats} repeats = {len(raw.ms)} samples per path, "
        f"top_k={args.top_k} (ms)"
    )
    header = f"{'path':34s}{'p50':>8s}{'p95':>8s}{'mean':>8s}{'p50/raw':>9s}{'mean/raw':>10s}"
    print(header)
    print("-" * len(header))
    for s in rows:
        ratio = f"{s.p50 / raw.p50:8.2f}x{s.mean / raw.mean:9.2f}x" if s in (lat.uncached, lat.cached, raw) else ""
        print(f"{s.label:34s}{s.p50:8.2f}{s.p95:8.2f}{s.mean:8.2f} {ratio}")
    print(
        f"gateway overhead over the raw sum (uncached): p50 {lat.uncached.p50 - raw.p50:+.2f} ms, "
        f"p95 {lat.uncached.p95 - raw.p95:+.2f} ms, mean {lat.uncached.mean - raw.mean:+.2f} ms"
    )
    paired = [u - r for u, r in zip(lat.uncached.ms, raw.ms)]
    print(
        f"paired (uncached - raw sum of the same query, measured back to back): "
        f"median {statistics.median(paired):+.2f} ms, mean {statistics.fmean(paired):+.2f} ms"
    )

    best = {label: Series(label, values) for label, values in lat.best.items()}
    b_u, b_raw = best[lat.uncached.label], best[raw.label]
    print(f"\nbest of {args.repeats} per query (what is left once the shared machine's interference is filtered out)")
    print(f"{'path':34s}{'p50':>8s}{'p95':>8s}{'mean':>8s}{'p50/raw':>9s}{'mean/raw':>10s}")
    for s in rows:
        b = best[s.label]
        ratio = f"{b.p50 / b_raw.p50:8.2f}x{b.mean / b_raw.mean:9.2f}x" if s in (lat.uncached, lat.cached, raw) else ""
        print(f"{s.label:34s}{b.p50:8.2f}{b.p95:8.2f}{b.mean:8.2f} {ratio}")
    best_paired = [u - r for u, r in zip(b_u.ms, b_raw.ms)]
    print(
        f"gateway overhead, best of {args.repeats}: p50 {b_u.p50 - b_raw.p50:+.2f} ms, mean {b_u.mean - b_raw.mean:+.2f} ms; "
        f"per query median {statistics.median(best_paired):+.2f} ms"
    )

    found = [r for r in lat.ranks if r is not None]
    r1 = sum(r == 1 for r in found) / n
    r10 = len(found) / n
    print(
        f"sanity: gateway Recall@1 {r1:.3f}, Recall@10 {r10:.3f}; raw path agrees on the top product for "
        f"{lat.top1_agree}/{n} queries, top-{args.top_k} overlap {statistics.fmean(lat.top10_overlap):.3f}"
    )
    if tput:
        print("\nthroughput, searches in flight (grpc.aio client on the same machine)")
        print(f"{'mode':10s}{'in flight':>10s}{'searches/s':>12s}{'p50 ms':>9s}{'p95 ms':>9s}{'searches':>10s}")
        for t in tput:
            print(
                f"{'cached' if t.cached else 'uncached':10s}{t.concurrency:>10d}{t.per_s:>12.1f}"
                f"{statistics.median(t.ms):>9.2f}{pct(t.ms, 95):>9.2f}{t.searches:>10d}"
            )

    def figures(series: dict[str, Series]) -> dict:
        keys = ("uncached", "cached", "decode", "onnxruntime", "milvus", "raw_sum")
        return {
            key: {"p50": series[s.label].p50, "p95": series[s.label].p95, "mean": series[s.label].mean}
            for key, s in zip(keys, rows)
        }

    return {
        "model": _shown(MODEL_FILE),
        "machine": machine(),
        "load_average": [args.load_at_start, load_average()],
        "date": time.strftime("%Y-%m-%d"),
        "queries": n,
        "repeats": args.repeats,
        "settle_ms": args.settle,
        "top_k": args.top_k,
        "startup_s": startup_s,
        "index": index,
        "latency_ms": figures({s.label: s for s in rows}),
        "best_of_repeats_ms": figures(best),
        "overhead_paired_ms": {"median": statistics.median(paired), "mean": statistics.fmean(paired)},
        "recall_at_1": r1,
        "recall_at_10": r10,
        "top1_agree": lat.top1_agree,
        "throughput": [
            {
                "concurrency": t.concurrency,
                "cached": t.cached,
                "per_s": t.per_s,
                "p50_ms": statistics.median(t.ms),
                "p95_ms": pct(t.ms, 95),
            }
            for t in tput
        ],
    }


def draw_chart(summary: dict, path: Path) -> None:
    """A small bar chart of the p50 latencies (Pillow only)."""
    from PIL import Image, ImageDraw, ImageFont

    lat = summary["latency_ms"]
    bars = [
        ("gateway, uncached", [("total", lat["uncached"]["p50"], (70, 110, 180))]),
        (
            "raw engines",
            [
                ("decode", lat["decode"]["p50"], (230, 160, 60)),
                ("onnxruntime", lat["onnxruntime"]["p50"], (200, 80, 70)),
                ("milvus", lat["milvus"]["p50"], (90, 160, 90)),
            ],
        ),
        ("gateway, cached", [("total", lat["cached"]["p50"], (140, 140, 140))]),
    ]
    width, left, row_h, top = 760, 150, 42, 44
    height = top + row_h * len(bars) + 70
    scale = (width - left - 200) / max(sum(v for _, v, _ in parts) for _, parts in bars)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    d.text(
        (10, 6),
        f"p50 latency of one Search, {summary['queries']} dev queries x {summary['repeats']} (ms), {summary['date']}",
        fill="black",
        font=font,
    )
    d.text(
        (10, 20),
        f"{summary['machine']}, shared: load average {summary['load_average'][0]} at start",
        fill="black",
        font=font,
    )
    for i, (label, parts) in enumerate(bars):
        y = top + i * row_h
        d.text((10, y + 12), label, fill="black", font=font)
        x = left
        for name, value, colour in parts:
            w = max(1, int(value * scale))
            d.rectangle([x, y + 6, x + w, y + row_h - 8], fill=colour)
            if len(parts) > 1 and w > 40:
                d.text((x + 3, y + 12), name, fill="white", font=font)
            x += w
        total = sum(v for _, v, _ in parts)
        d.text(
            (x + 6, y + 12),
            f"{total:.1f} ms" + (" (sum of the p50s)" if len(parts) > 1 else ""),
            fill="black",
            font=font,
        )
    x = 10
    for name, value, colour in bars[1][1]:
        d.rectangle([x, height - 52, x + 10, height - 42], fill=colour)
        d.text((x + 14, height - 53), f"{name} {value:.1f} ms", fill="black", font=font)
        x += 150
    d.text(
        (10, height - 30),
        f"gateway p50 minus the p50 of the per-query raw sums: "
        f"{lat['uncached']['p50'] - lat['raw_sum']['p50']:+.1f} ms "
        f"({lat['uncached']['p50']:.1f} vs {lat['raw_sum']['p50']:.1f} ms)",
        fill="black",
        font=font,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dev-set", type=Path, default=DEFAULT_DEV_SET, help="dev dataset folder (default %(default)s)")
    p.add_argument("--queries", type=int, default=0, help="time only the first N query photos (default: all 299)")
    p.add_argument("--warmup", type=int, default=10, help="untimed queries through every path first (default 10)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="times each query is measured on every path, alternating the order (default 3)",
    )
    p.add_argument(
        "--settle", type=float, default=10.0, help="pause in ms before each side of each sequential query (default 10)"
    )
    p.add_argument("--batch", type=int, default=32, help="products per UpsertProducts call (default 32)")
    p.add_argument("--index-concurrency", type=int, default=2, help="UpsertProducts calls in flight (default 2)")
    p.add_argument("--concurrency", default="1,4,8", help="searches in flight to measure (default 1,4,8)")
    p.add_argument(
        "--duration", type=float, default=8.0, help="seconds per concurrency level, uncached (default 8; 0 skips)"
    )
    p.add_argument(
        "--cached-duration", type=float, default=3.0, help="seconds per concurrency level, cached (default 3; 0 skips)"
    )
    p.add_argument("--log-level", default=None, help="LOG_LEVEL of the services (default: theirs, INFO)")
    p.add_argument(
        "--model-repo",
        type=Path,
        default=REPO / "model_repo",
        help="Triton model repository to serve, e.g. one with an adapted version (default %(default)s)",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--chart", type=Path, help="also draw the p50 latencies into this PNG (Pillow)")
    p.add_argument("--keep", action="store_true", help="keep the runtime folder (logs) and print where it is")
    args = p.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    global MODEL_FILE
    args = parse_args(argv)
    MODEL_FILE = _latest_model_file(args.model_repo.resolve() / "image_embedding")
    if not (args.dev_set / "queries.csv").is_file():
        print(f"dev set not found at {args.dev_set} (use --dev-set)", file=sys.stderr)
        return 2
    if not MODEL_FILE.is_file():
        print(f"{MODEL_FILE} is missing: run `python tools/export_model.py` first", file=sys.stderr)
        return 2
    queries = read_rows(args.dev_set / "queries.csv")
    if args.queries:
        queries = queries[: args.queries]
    photos = [(args.dev_set / q["image"]).read_bytes() for q in queries]
    items = catalog_products(args.dev_set)

    from pymilvus import MilvusClient

    from imagesearch.common.convert import model_from_pb
    from imagesearch_retriever.milvus.schema import collection_name
    from imagesearch_retriever.settings import RetrieverSettings

    args.load_at_start = load_average()
    runtime = Path(tempfile.mkdtemp(prefix="bench-search-"))
    began = time.monotonic()
    print(f"starting the stack in {runtime} ...", flush=True)
    started = time.monotonic()
    stack, env = start_stack(runtime, args.log_level, args.model_repo)
    startup_s = time.monotonic() - started
    try:
        address = stack.gateway_address
        from imagesearch.client.credentials import KeyInterceptor

        # The gateway is authenticated by default: the stack's own admin key, as the CLI uses it.
        channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        stub = search_pb2_grpc.SearchServiceStub(grpc.intercept_channel(channel, KeyInterceptor(stack.admin_key)))

        index_s, steady = index_catalog(stub, items, args.batch, args.index_concurrency)
        probe = stub.Search(search_pb2.SearchRequest(image=photos[0], top_k=1, skip_cache=True), timeout=30)
        name = collection_name(RetrieverSettings.from_env(env).collection_prefix, model_from_pb(probe.model))
        admin = MilvusClient(uri=stack.milvus.uri)
        if not admin.has_collection(name):
            raise SystemExit(f"collection {name} not found; Milvus has {admin.list_collections()}")
        t0 = time.perf_counter()
        wait_indexed(admin, name, len(items))
        flush_s = time.perf_counter() - t0
        rows = admin.get_collection_stats(name).get("row_count")
        print(
            f"collection {name}: {rows} rows, model {probe.model.name} v{probe.model.version} "
            f"{probe.model.dimension}-d",
            flush=True,
        )
        if probe.model.version != MODEL_FILE.parent.name:
            raise SystemExit(f"Triton serves version {probe.model.version} but the raw side would load {MODEL_FILE}")
        index = {
            "images": len(items),
            "seconds": index_s,
            "images_per_s": len(items) / index_s,
            "images_per_s_after_first_batch": steady,
            "flush_s": flush_s,
        }

        wait_cacheable(stub, photos[0], args.top_k)
        raw = RawEngines(stack.milvus.uri, name, env, args.top_k)
        lat = measure_sequential(stub, raw, queries, photos, args.top_k, args.warmup, args.settle / 1000, args.repeats)
        tput = measure_throughput(
            address, stack.admin_key, photos, args.top_k, args.levels, args.duration, args.cached_duration
        )
        summary = print_report(lat, index, tput, args, startup_s)
        summary["wall_s"] = time.monotonic() - began
        print(f"\nwall time {summary['wall_s']:.0f} s")
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
        if args.chart:
            draw_chart(summary, args.chart)
            print(f"chart: {args.chart}")
        channel.close()
        raw.client.close()
        admin.close()
    finally:
        stack.stop()
        if args.keep:
            print(f"runtime folder kept: {runtime}")
        else:
            import shutil

            shutil.rmtree(runtime, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
