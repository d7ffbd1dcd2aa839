#!/usr/bin/env python3
"""Throughput and latency of the image-embedding model: Triton (gRPC) vs raw onnxruntime.

    python benchmarks/bench_triton_vs_onnxruntime.py                 # starts its own Triton
    python benchmarks/bench_triton_vs_onnxruntime.py --url 127.0.0.1:8001  # an already running one
    python benchmarks/bench_triton_vs_onnxruntime.py --duration 3 --concurrency 16

Scenarios, each side timed for --duration seconds after a warm-up, the two
sides alternating in --slice second turns (so background load hits both alike):
  * batch 1 and batch 16, one request at a time: raw onnxruntime in this process
    vs the same batch sent to Triton with the blocking gRPC client;
  * --concurrency requests of batch 1 in flight at once (tritonclient.grpc.aio),
    which lets Triton's dynamic batcher merge them. Its reference is raw
    onnxruntime at batch 16, i.e. what perfect batching could reach.

The ratio column is Triton / onnxruntime throughput. Both sides share this
machine's cores (client serialisation included), which is the honest setting
for a single-host deployment. Needs the model built (tools/export_model.py)
and the Triton venv (.venv-triton); runs in well under two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL_NAME = "image_embedding"
MODEL_FILE = REPO / "model_repo" / MODEL_NAME / "2" / "model.onnx"
IMAGE_SIZE = 224


@dataclass
class Result:
    name: str
    batch: int
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def images_per_s(self) -> float:
        return self.requests * self.batch / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_images(count: int) -> np.ndarray:
    """`count` real images (demo catalog, cycled), RGB 224 x 224 uint8 NHWC."""
    from PIL import Image

    paths = sorted(glob.glob(str(REPO / "demo" / "catalog" / "*.jpg")))[:count]
    if not paths:
        return np.random.default_rng(0).integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    images = [np.asarray(Image.open(p).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)) for p in paths]
    return np.stack([images[i % len(images)] for i in range(count)]).astype(np.uint8)


class Runner:
    """One side of a comparison: `run(seconds)` keeps requests going for that long."""

    def __init__(self, name: str, batch: int) -> None:
        self.result = Result(name, batch, 0, 0.0, [])

    def run(self, seconds: float) -> None:
        raise NotImplementedError

    def _record(self, requests: int, elapsed: float, latencies: list[float]) -> None:
        self.result.requests += requests
        self.result.seconds += elapsed
        self.result.latencies_ms += latencies


class SyncRunner(Runner):
    """Back-to-back blocking calls; one latency sample per call."""

    def __init__(self, name: str, batch: int, call: Callable[[], object], warmup: int = 3) -> None:
        super().__init__(name, batch)
        self.call = call
        for _ in range(warmup):
            call()

    def run(self, seconds: float) -> None:
        latencies: list[float] = []
        start = time.perf_counter()
        while (now := time.perf_counter()) - start < seconds:
            self.call()
            latencies.append((time.perf_counter() - now) * 1000)
        self._record(len(latencies), time.perf_counter() - start, latencies)


def onnxruntime_runner(images: np.ndarray, batch: int, threads: int) -> SyncRunner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # same default as model.py (0 = one per physical core)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(MODEL_FILE), options, providers=["CPUExecutionProvider"])
    feed = {"IMAGE": np.ascontiguousarray(images[:batch])}
    return SyncRunner(f"onnxruntime b{batch}", batch, lambda: session.run(["EMBEDDING"], feed))


def _infer_args(images: np.ndarray):
    """Request tensors; the aio client takes the same InferInput objects as the blocking one."""
    import tritonclient.grpc as grpcclient

    image_input = grpcclient.InferInput("IMAGE", list(images.shape), "UINT8")
    image_input.set_data_from_numpy(np.ascontiguousarray(images))
    return [image_input], [grpcclient.InferRequestedOutput("EMBEDDING")]


def triton_runner(client, images: np.ndarray, batch: int) -> SyncRunner:  # client: tritonclient.grpc client
    inputs, outputs = _infer_args(images[:batch])
    return SyncRunner(
        f"triton b{batch}", batch, lambda: client.infer(MODEL_NAME, inputs, outputs=outputs).as_numpy("EMBEDDING")
    )


class ConcurrentTritonRunner(Runner):
    """`concurrency` batch-1 requests kept in flight with tritonclient.grpc.aio."""

    def __init__(self, url: str, images: np.ndarray, concurrency: int) -> None:
        super().__init__(f"triton b1 x{concurrency} in flight", 1)
        self.url, self.concurrency = url, concurrency
        self.inputs, self.outputs = _infer_args(images[:1])
        asyncio.run(self._run(1.0, record=False))  # warm-up

    def run(self, seconds: float) -> None:
        asyncio.run(self._run(seconds, record=True))

    async def _run(self, seconds: float, record: bool) -> None:
        import tritonclient.grpc.aio as aioclient

        client = aioclient.InferenceServerClient(self.url)
        latencies: list[float] = []

        async def worker(stop_at: float) -> None:
            while time.perf_counter() < stop_at:
                sent = time.perf_counter()
                result = await client.infer(MODEL_NAME, self.inputs, outputs=self.outputs)
                result.as_numpy("EMBEDDING")
                latencies.append((time.perf_counter() - sent) * 1000)

        try:
            start = time.perf_counter()
            await asyncio.gather(*(worker(start + seconds) for _ in range(self.concurrency)))
            elapsed = time.perf_counter() - start
        finally:
            await client.close()
        if record:
            self._record(len(latencies), elapsed, latencies)


def interleaved(triton: Runner, reference: Runner, duration: float, slice_s: float) -> tuple[Result, Result]:
    """Alternate short slices of both sides so that both see the same background load.

    This machine may be shared (other jobs come and go); timing one side after
    the other would fold that drift into the ratio.
    """
    rounds = max(1, round(duration / slice_s))
    for i in range(rounds):
        first, second = (triton, reference) if i % 2 == 0 else (reference, triton)
        first.run(slice_s)
        second.run(slice_s)
    return triton.result, reference.result


def execution_counts(url: str) -> tuple[int, int]:
    """(images inferred, model executions) so far, from Triton's statistics."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(MODEL_NAME, as_json=True)["model_stats"][0]
    finally:
        client.close()
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def print_table(rows: list[tuple[Result, Result]]) -> None:
    header = (
        f"{'scenario':34s} {'img/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s}   "
        f"{'onnxruntime ref':22s} {'img/s':>8s} {'ratio':>6s}"
    )
    print(header)
    print("-" * len(header))
    for triton, ref in rows:
        print(
            f"{triton.name:34s} {triton.images_per_s:8.1f} {statistics.median(triton.latencies_ms):8.1f} "
            f"{triton.percentile(0.95):8.1f}   {ref.name:22s} {ref.images_per_s:8.1f} "
            f"{triton.images_per_s / ref.images_per_s:6.2f}"
        )


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.system()}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="gRPC host:port of a running Triton (default: start one)")
    parser.add_argument(
        "--duration", type=float, default=6.0, help="seconds per side and scenario (default: %(default)s)"
    )
    parser.add_argument(
        "--slice", type=float, default=1.0, help="the two sides alternate in slices this long (default: %(default)s)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (default: auto)")
    return parser.parse_args(argv)


def run(url: str, args: argparse.Namespace) -> None:
    import tritonclient.grpc as grpcclient

    images = load_images(16)
    client = grpcclient.InferenceServerClient(url)
    rows = []
    try:
        for batch in (1, 16):
            ort_runner = onnxruntime_runner(images, batch, args.threads)
            rows.append(interleaved(triton_runner(client, images, batch), ort_runner, args.duration, args.slice))
        concurrent = ConcurrentTritonRunner(url, images, args.concurrency)
        reference = onnxruntime_runner(images, 16, args.threads)
        images_before, executions_before = execution_counts(url)
        rows.append(interleaved(concurrent, reference, args.duration, args.slice))
        images_after, executions_after = execution_counts(url)
    finally:
        client.close()
    print_table(rows)
    executions = max(executions_after - executions_before, 1)
    print(
        f"\nwith {args.concurrency} in flight the dynamic batcher ran {executions} batches, "
        f"mean size {(images_after - images_before) / executions:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not MODEL_FILE.is_file():
        print(f"{MODEL_FILE} is missing: run `python tools/export_model.py` first", file=sys.stderr)
        return 1
    print(f"machine: {machine()}; {args.duration:g} s per side and scenario, in {args.slice:g} s turns\n")
    if args.url:
        run(args.url, args)
        return 0
    sys.path.insert(0, str(REPO / "src"))
    from imagesearch.stack.triton import TritonServer

    with tempfile.TemporaryDirectory(prefix="bench-triton-") as runtime:
        started = time.monotonic()
        with TritonServer(REPO / "model_repo", Path(runtime), metrics_port=None) as triton:
            print(f"Triton ready in {time.monotonic() - started:.1f} s at {triton.grpc_url}\n")
            run(triton.grpc_url, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
