"""Read latency of the retriever's three read modes, steady and right after another replica's write.

    python benchmarks/bench_read_consistency.py                  # ~4 min on 2 cores
    python benchmarks/bench_read_consistency.py --n 20000 --rounds 200

Two retriever processes per mode, as two pods: A writes, B reads. The modes:

  * Session  - RETRIEVER_READ_CONSISTENCY=Session, no Redis: reads never wait (correct across
               replicas only with one query replica: the write's barrier is what makes it so);
  * Strong   - RETRIEVER_READ_CONSISTENCY=Strong: every read waits for Milvus' next time tick;
  * horizon  - Session with RETRIEVER_REDIS_URL: every read waits for its catalog's write
               horizon (a guarantee timestamp), read from Redis; correct with any number of
               query replicas.

Timed: B's gRPC Search (top-10) at steady state (no writes), and B's Search for a product A has
just upserted, sent as soon as A's Upsert returned (each round checks the product is found).
The raw engine in the same run: MilvusClient.search on the same collection, Session and Strong,
steady and right after a write of A's; ratios are against raw Session at steady state.

Without --milvus-uri a private Milvus (50 ms time tick) is started; without --redis-url a
private redis-server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from imagesearch.stack.milvus import LocalMilvus
from imagesearch.stack.ports import free_port
from imagesearch.stack.redis import LocalRedis
from imagesearch.v1 import common_pb2, embedder_pb2, retriever_pb2, retriever_pb2_grpc

MODEL = common_pb2.ModelInfo(name="bench-consistency", version="1", dimension=256)
PREFIX = "benchrc"
BATCH = 256


def unit_batch(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((count, dim), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def product(pid: str, vector: np.ndarray) -> retriever_pb2.IndexedProduct:
    return retriever_pb2.IndexedProduct(
        product=common_pb2.Product(product_id=pid, title=pid, category="c"),
        images=[retriever_pb2.IndexedImage(uri=f"{pid}.jpg", vector=embedder_pb2.Embedding(values=vector.tolist()))],
    )


def start_retriever(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full = dict(
        os.environ,
        RETRIEVER_HOST="127.0.0.1",
        RETRIEVER_PORT=str(port),
        RETRIEVER_METRICS_PORT="0",
        RETRIEVER_COLLECTION_PREFIX=PREFIX,
        RETRIEVER_TIMEOUT_SECONDS="120",
        OTEL_SDK_DISABLED="true",
        LOG_LEVEL="WARNING",
        **env,
    )
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagesearch_retriever"], env=full, stdout=log, stderr=subprocess.STDOUT
        )
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"retriever exited; see {log_path}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return proc, address
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"retriever did not become SERVING; see {log_path}")


@contextmanager
def pair(env: dict[str, str], log_path: Path) -> Iterator[tuple[retriever_pb2_grpc.RetrieverServiceStub, ...]]:
    """Two retriever processes with the same settings: (writer A, reader B)."""
    procs, channels = [], []
    try:
        for _ in range(2):
            proc, address = start_retriever(env, log_path)
            procs.append(proc)
            channels.append(grpc.insecure_channel(address))
        yield tuple(retriever_pb2_grpc.RetrieverServiceStub(c) for c in channels)
    finally:
        for channel in channels:
            channel.close()
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000, help="products loaded before timing")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200, help="steady-state searches per mode")
    parser.add_argument("--rounds", type=int, default=100, help="write-then-read rounds per mode")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--milvus-uri", default="")
    parser.add_argument("--redis-url", default="")
    args = parser.parse_args()
    MODEL.dimension = args.dim
    rng = np.random.default_rng(0)

    from pymilvus import MilvusClient

    from imagesearch.common.convert import model_from_pb
    from imagesearch_retriever.milvus.schema import collection_name, heads_name

    with tempfile.TemporaryDirectory(prefix="bench-consistency-") as tmp:
        milvus = redis = None
        uri, redis_url = args.milvus_uri, args.redis_url
        try:
            if not uri:
                print("starting a private Milvus ...", flush=True)
                milvus = LocalMilvus(Path(tmp) / "milvus", stop_timeout=3).start()
                uri = milvus.uri
            if not redis_url:
                redis = LocalRedis(dir=Path(tmp) / "redis").start()
                redis_url = redis.url
            client = MilvusClient(uri=uri)
            name = collection_name(PREFIX, model_from_pb(MODEL))
            for old in (name, heads_name(name)):
                if client.has_collection(old):
                    client.drop_collection(old)
            log = Path(tmp) / "retriever.log"
            modes = {
                "Session": {"MILVUS_URI": uri, "RETRIEVER_READ_CONSISTENCY": "Session"},
                "Strong": {"MILVUS_URI": uri, "RETRIEVER_READ_CONSISTENCY": "Strong"},
                "horizon": {
                    "MILVUS_URI": uri,
                    "RETRIEVER_READ_CONSISTENCY": "Session",
                    "RETRIEVER_REDIS_URL": redis_url,
                    "RETRIEVER_REDIS_NAMESPACE": f"bench-{os.getpid()}",
                },
            }
            seq = iter(range(10**9))

            with pair(modes["Session"], log) as (writer, _):
                t0 = time.perf_counter()
                for start in range(0, args.n, BATCH):
                    vectors = unit_batch(rng, min(BATCH, args.n - start), args.dim)
                    products = [product(f"p{start + i}", v) for i, v in enumerate(vectors)]
                    writer.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=products), timeout=600)
                print(f"loaded {args.n} products in {time.perf_counter() - t0:.1f} s", flush=True)
            client.flush(name)
            queries = unit_batch(rng, args.queries, args.dim)

            def search(stub: retriever_pb2_grpc.RetrieverServiceStub, q: np.ndarray) -> list[str]:
                request = retriever_pb2.VectorSearchRequest(
                    model=MODEL, vector=embedder_pb2.Embedding(values=q.tolist()), top_k=args.top_k, min_score=-1
                )
                return [hit.product_id for hit in stub.Search(request, timeout=60).hits]

            def raw(level: str) -> Callable[[np.ndarray], list[str]]:
                params = {"metric_type": "IP", "params": {"ef": 128}}

                def call(q: np.ndarray) -> list[str]:
                    pages = client.search(
                        name,
                        data=[q.tolist()],
                        limit=4 * args.top_k,
                        search_params=params,
                        output_fields=["product_id", "version"],
                        consistency_level=level,
                    )
                    return [hit["entity"]["product_id"] for hit in pages[0]]

                return call

            def steady(read: Callable[[np.ndarray], list[str]]) -> list[float]:
                for q in queries[:10]:
                    read(q)
                samples = []
                for q in queries:
                    t = time.perf_counter()
                    read(q)
                    samples.append((time.perf_counter() - t) * 1000)
                return samples

            def after_write(
                writer: retriever_pb2_grpc.RetrieverServiceStub, read: Callable[[np.ndarray], list[str]]
            ) -> tuple[list[float], int]:
                samples, missed = [], 0
                for _ in range(args.rounds):
                    pid, vector = f"w{next(seq)}", unit_batch(rng, 1, args.dim)[0]
                    writer.Upsert(retriever_pb2.UpsertRequest(model=MODEL, products=[product(pid, vector)]), timeout=60)
                    t = time.perf_counter()
                    found = read(vector)
                    samples.append((time.perf_counter() - t) * 1000)
                    missed += pid not in found
                return samples, missed

            results: dict[str, tuple[list[float], list[float], int]] = {}
            with pair(modes["Session"], log) as (writer, _):
                for level in ("Session", "Strong"):
                    results[f"pymilvus {level}"] = (steady(raw(level)), *after_write(writer, raw(level)))
            for mode, env in modes.items():
                with pair(env, log) as (writer, reader):
                    read = lambda q, stub=reader: search(stub, q)  # noqa: E731
                    results[f"retriever {mode}"] = (steady(read), *after_write(writer, read))

            print()
            print(
                f"{args.n} products x {args.dim}-d, top_k={args.top_k}, {args.queries} steady searches, "
                f"{args.rounds} write-then-read rounds per row, {os.cpu_count()} CPUs"
            )
            base = percentile(results["pymilvus Session"][0], 50)
            header = f"{'path':<22}{'steady p50':>11}{'p99':>8}{'after write p50':>17}{'p99':>8}{'missed':>8}"
            print(header + f"{'steady x':>10}{'after x':>9}")
            for label, (quiet, written, missed) in results.items():
                print(
                    f"{label:<22}{percentile(quiet, 50):>11.2f}{percentile(quiet, 99):>8.2f}"
                    f"{percentile(written, 50):>17.2f}{percentile(written, 99):>8.2f}{missed:>8d}"
                    f"{percentile(quiet, 50) / base:>9.2f}x{percentile(written, 50) / base:>8.2f}x"
                )
            print(
                "(ms; x: p50 against raw pymilvus Session at steady state; missed: rounds whose read lacked the write)"
            )
            print("means: " + ", ".join(f"{k} {statistics.fmean(v[1]):.1f}" for k, v in results.items()))
            client.close()
        finally:
            if milvus is not None:
                milvus.stop()
            if redis is not None:
                redis.stop()


if __name__ == "__main__":
    main()
