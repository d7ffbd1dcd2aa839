"""Latency of a top-10 search through the retriever service vs a direct pymilvus search.

    python benchmarks/bench_retriever_vs_milvus.py --n 20000          # quick (~3 min on 2 cores)
    python benchmarks/bench_retriever_vs_milvus.py                     # 100k vectors
    python benchmarks/bench_retriever_vs_milvus.py --milvus-uri http://host:19530

Loads N random L2-normalised vectors (one image per product, 1280-d by
default) through the retriever's Upsert, waits until Milvus has sealed and
indexed them, then times sequential searches with the same query vectors:

  * retriever  - gRPC Search(top_k) on a retriever running as its own process
                 (python -m imagesearch_retriever), i.e. validation, the filter
                 expression, over-fetching 4 x top_k images, grouping one hit
                 per product, protobuf both ways;
  * pymilvus   - MilvusClient.search(limit=top_k) on the same collection, with
                 the retriever's search parameters (IP, same ef) and the same
                 Strong consistency;
  * pymilvus (limit=4k) - the same with the retriever's fetch size, which
                 separates the cost of over-fetching from the service's own;
  * pymilvus Bounded - for reference: what the read consistency costs.

Strong reads wait for Milvus' next time tick, so their latencies cluster at
multiples of the tick (50 ms on the private Milvus): compare means as well as
percentiles, or run with --consistency Session to see the service's own cost.

Without --milvus-uri a private Milvus is started in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tqdm import tqdm

from imagesearch.contracts.limits import MAX_PRODUCTS_PER_UPSERT
from imagesearch.stack.milvus import LocalMilvus
from imagesearch.stack.ports import free_port
from imagesearch.v1 import common_pb2, embedder_pb2, retriever_pb2, retriever_pb2_grpc

MODEL = common_pb2.ModelInfo(name="bench", version="1", dimension=1280)
PREFIX = "bench"


def unit_batch(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((count, dim), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(fn: Callable[[np.ndarray], object], queries: np.ndarray, warmup: int) -> list[float]:
    for q in queries[:warmup]:
        fn(q)
    samples = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def start_retriever(
    milvus_uri: str, ef_search: int, consistency: str, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(
        os.environ,
        RETRIEVER_HOST="127.0.0.1",
        RETRIEVER_PORT=str(port),
        MILVUS_URI=milvus_uri,
        RETRIEVER_COLLECTION_PREFIX=PREFIX,
        HNSW_EF_SEARCH=str(ef_search),
        RETRIEVER_TIMEOUT_SECONDS="120",
        RETRIEVER_READ_CONSISTENCY=consistency,
        OTEL_SDK_DISABLED="true",
        LOG_LEVEL="WARNING",
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagesearch_retriever"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"retriever exited; see {log_path}")
        try:
            if (
                health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                == health_pb2.HealthCheckResponse.SERVING
            ):
                channel.close()
                return proc, address
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"retriever did not become SERVING; see {log_path}")


def load(
    stub: retriever_pb2_grpc.RetrieverServiceStub, n: int, dim: int, batch: int, rng: np.random.Generator, keep: int
) -> np.ndarray:
    """Upsert n products through the retriever; return the first `keep` vectors (to derive queries)."""
    kept: list[np.ndarray] = []
    with tqdm(total=n, unit="vec", desc="upsert via retriever") as bar:
        for start in range(0, n, batch):
            vectors = unit_batch(rng, min(batch, n - start), dim)
            if sum(len(k) for k in kept) < keep:
                kept.append(vectors[: keep - sum(len(k) for k in kept)])
            products = [
                retriever_pb2.IndexedProduct(
                    product=common_pb2.Product(
                        product_id=f"p{start + i}",
                        title=f"product {start + i}",
                        category=f"c{(start + i) % 20}",
                        price=float((start + i) % 500),
                    ),
                    images=[
                        retriever_pb2.IndexedImage(
                            uri=f"img/{start + i}.jpg", vector=embedder_pb2.Embedding(values=v.tolist())
                        )
                    ],
                )
                for i, v in enumerate(vectors)
            ]
            stub.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=products), timeout=600)
            bar.update(len(products))
    return np.concatenate(kept)


def wait_indexed(client, name: str, n: int, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Seal the segments and wait for the HNSW index to cover them, so both paths search the index."""
    client.flush(name)
    deadline = time.monotonic() + timeout
    with tqdm(total=n, unit="vec", desc="index build") as bar:
        while time.monotonic() < deadline:
            info = client.describe_index(name, "embedding")
            bar.n = min(n, int(info.get("indexed_rows", 0)))
            bar.refresh()
            if int(info.get("indexed_rows", 0)) >= n and int(info.get("pending_index_rows", 0)) == 0:
                return
            time.sleep(1)
    print(f"warning: index not complete after {timeout:.0f} s; timing anyway", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="vectors to load (default 100000)")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=300, help="timed searches per path")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument(
        "--batch", type=int, default=MAX_PRODUCTS_PER_UPSERT, help="products per Upsert call (at most the limit)"
    )
    parser.add_argument("--ef", type=int, default=128, help="HNSW ef at search time (HNSW_EF_SEARCH)")
    parser.add_argument(
        "--consistency",
        choices=("Strong", "Session"),
        default="Strong",
        help="read consistency of the retriever and of the direct searches",
    )
    parser.add_argument("--milvus-uri", default="", help="use this Milvus instead of starting a private one")
    parser.add_argument("--index-timeout", type=float, default=900)
    args = parser.parse_args()
    MODEL.dimension = args.dim
    rng = np.random.default_rng(0)

    from pymilvus import MilvusClient

    from imagesearch.common.convert import model_from_pb
    from imagesearch_retriever.milvus.schema import collection_name

    with tempfile.TemporaryDirectory(prefix="bench-retriever-") as tmp:
        milvus = None
        uri = args.milvus_uri
        if not uri:
            print("starting a private Milvus ...", flush=True)
            milvus = LocalMilvus(Path(tmp) / "milvus", stop_timeout=3).start()
            uri = milvus.uri
        proc = None
        try:
            client = MilvusClient(uri=uri)
            name = collection_name(PREFIX, model_from_pb(MODEL))
            if client.has_collection(name):
                client.drop_collection(name)  # a clean collection of exactly n vectors
            proc, address = start_retriever(uri, args.ef, args.consistency, Path(tmp) / "retriever.log")
            channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 256 << 20)])
            stub = retriever_pb2_grpc.RetrieverServiceStub(channel)

            t0 = time.perf_counter()
            kept = load(stub, args.n, args.dim, args.batch, rng, keep=args.queries + args.warmup)
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            wait_indexed(client, name, args.n, args.index_timeout)
            index_s = time.perf_counter() - t0

            # Queries: stored vectors with noise, so each has a true nearest neighbour.
            noise = unit_batch(rng, len(kept), args.dim) * 0.3
            queries = (kept + noise) / np.linalg.norm(kept + noise, axis=1, keepdims=True)
            warm, timed_q = args.warmup, queries

            def via_retriever(q: np.ndarray) -> object:
                request = retriever_pb2.VectorSearchRequest(
                    model=MODEL, vector=embedder_pb2.Embedding(values=q.tolist()), top_k=args.top_k, min_score=-1
                )
                return stub.Search(request, timeout=60)

            def direct(limit: int, consistency: str = args.consistency) -> Callable[[np.ndarray], object]:
                params = {"metric_type": "IP", "params": {"ef": max(args.ef, limit)}}

                def call(q: np.ndarray) -> object:
                    return client.search(
                        name,
                        data=[q.tolist()],
                        limit=limit,
                        search_params=params,
                        output_fields=["product_id", "title", "category", "brand", "price", "attributes", "image_uri"],
                        consistency_level=consistency,
                    )

                return call

            # Sanity: both paths agree on the nearest product.
            q0 = queries[0]
            assert via_retriever(q0).hits[0].product_id == direct(args.top_k)(q0)[0][0]["entity"]["product_id"]  # type: ignore[attr-defined]

            results = {}
            for label, fn in (
                ("retriever gRPC Search", via_retriever),
                ("pymilvus search limit=top_k", direct(args.top_k)),
                (f"pymilvus search limit={4 * args.top_k}", direct(4 * args.top_k)),
                ("pymilvus limit=top_k, Bounded", direct(args.top_k, "Bounded")),
            ):
                results[label] = timed(fn, timed_q, warm)

            print()
            print(
                f"N={args.n} vectors x {args.dim}-d, top_k={args.top_k}, ef={args.ef}, {len(timed_q)} queries each, "
                f"{args.consistency} consistency, {os.cpu_count()} CPUs"
            )
            print(
                f"load through the retriever: {load_s:.1f} s ({args.n / load_s:.0f} vectors/s); "
                f"seal + index wait: {index_s:.1f} s"
            )
            base = results["pymilvus search limit=top_k"]
            print(f"{'path':<32}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'p50 ratio':>11}{'mean ratio':>12}")
            for label, samples in results.items():
                print(
                    f"{label:<32}{percentile(samples, 50):>9.2f}{percentile(samples, 95):>9.2f}"
                    f"{statistics.fmean(samples):>9.2f}{percentile(samples, 50) / percentile(base, 50):>10.2f}x"
                    f"{statistics.fmean(samples) / statistics.fmean(base):>11.2f}x"
                )
            r, d = results["retriever gRPC Search"], base
            print(
                f"retriever / pymilvus: p50 {percentile(r, 50) / percentile(d, 50):.2f}x, "
                f"p95 {percentile(r, 95) / percentile(d, 95):.2f}x, mean {statistics.fmean(r) / statistics.fmean(d):.2f}x; "
                f"overhead p50 {percentile(r, 50) - percentile(d, 50):+.2f} ms, "
                f"mean {statistics.fmean(r) - statistics.fmean(d):+.2f} ms"
            )
            channel.close()
            client.drop_collection(name)
            client.close()
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
            if milvus is not None:
                milvus.stop()


if __name__ == "__main__":
    main()
