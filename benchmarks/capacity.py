#!/usr/bin/env python3
"""Per-pod capacity at the latency SLO: how many searches per second one gateway, embedder and
retriever process sustains before p99 passes 250 ms, and how many calls are in flight then.

    python benchmarks/capacity.py                  # ~3 min on 2 cores
    python benchmarks/capacity.py --seconds 5 --levels 1,2,4,8,16,32 --json capacity.json   # longer, steadier

Starts the real stack the way `imagesearch up` does (imagesearch.stack.local.LocalStack: Redis,
Triton, Milvus, and the three services as their own `python -m imagesearch_<name>` processes,
each calling the next over gRPC), indexes --products demo catalog photos through the gateway,
then drives each path below closed-loop at each concurrency in --levels (a warm-up, then
--seconds timed), stopping a path at the first level whose p99 passes --slo-ms:

  * triton raw           - tritonclient.grpc.aio infer of one preprocessed image (the embedder's
                           input size, EMBEDDING only): the engine under the embedder;
  * embedder, 1 pass     - Embed of one JPEG without localisation: decode, preprocess, one
                           inference (the same work as "triton raw" plus the service's);
  * embedder, as queried - Embed as the gateway's searches send it (GATEWAY_LOCALIZE_QUERIES:
                           the saliency pass, the crop, the embedding pass);
  * pymilvus raw         - MilvusClient.search with the retriever's parameters (4 x top_k, ef,
                           output fields, consistency) on the collection the retriever wrote;
  * retriever            - retriever Search of the same vectors (validation, filters, grouping);
  * gateway              - Search end to end, uncached (skip_cache: Redis is still consulted),
                           with the API key, as a client sends it.

For each level: throughput (calls/s), p50/p99 and mean latency, the calls in flight by Little's
law (throughput x mean latency: what `imagesearch_calls_in_flight` averages to), and the CPU the
process under test (and Triton, and Milvus) burned per call. The capacity of a path is its best
level within the SLO; ratios compare each service with the raw engine beneath it in the same run.
CPU ms per call is the figure that carries over to another machine: the QPS one pod sustains on
`c` cores is about c x 1000 / (CPU ms per call) at full use.

Everything shares one machine: the client, Triton (on CPU here: the python backend of the local
model config), Milvus, Redis and the three services. A path's capacity is therefore also bounded
by what it leaves to the others (the embedder's by Triton's CPU above all), and these are lower
bounds of what a pod of its own would do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEMO = sorted((REPO / "demo" / "catalog").glob("*.jpg"))
GRPC_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
TICK = os.sysconf("SC_CLK_TCK")

from shared import pct, wait_indexed  # noqa: E402 - benchmarks/ is on the path of a script run from it

from imagesearch.v1 import (  # noqa: E402
    common_pb2,
    embedder_pb2,
    embedder_pb2_grpc,
    retriever_pb2,
    retriever_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)

# ---------------------------------------------------------------------------- process accounting


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds so far) of one process; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def cpu_seconds(root: int) -> float:
    """CPU time of `root` and its descendants (Triton's python-backend stubs are its children)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (got := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], cpu[int(entry.name)] = got
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    return sum(cpu.get(pid, 0.0) for pid in tree)


def memory(pid: int) -> tuple[int, int]:
    """(resident now, resident high-water mark) in bytes."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in values:
            values[key] = int(line.split()[1]) * 1024
    return values["VmRSS"], values["VmHWM"]


def descendant(name: str) -> int | None:
    """A process of ours whose command line mentions `name` (Milvus: LocalMilvus shows no pid)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        if name in cmdline and "capacity.py" not in cmdline:
            ancestor = pid
            while ancestor > 1 and (got := _stat(ancestor)) is not None:
                if got[0] == me:
                    return pid
                ancestor = got[0]
    return None


# ---------------------------------------------------------------------------- measurement


@dataclass
class Level:
    concurrency: int
    seconds: float = 0.0
    ms: list[float] = field(default_factory=list)
    errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # part -> CPU seconds during the level

    @property
    def qps(self) -> float:
        return len(self.ms) / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.ms) if self.ms else float("nan")

    @property
    def p99(self) -> float:
        return pct(self.ms, 99) if self.ms else float("inf")

    @property
    def mean(self) -> float:
        return statistics.fmean(self.ms) if self.ms else float("nan")

    @property
    def in_flight(self) -> float:
        """Little's law: L = throughput x time in the system."""
        return self.qps * self.mean / 1000

    def cpu_ms_per_call(self, part: str) -> float:
        return 1000 * self.cpu.get(part, 0.0) / len(self.ms) if self.ms else float("nan")


@dataclass
class Measured:
    label: str
    part: str  # the process under test ("" for a raw engine: the client is this process)
    levels: list[Level] = field(default_factory=list)

    def at_slo(self, slo_ms: float) -> Level | None:
        within = [lv for lv in self.levels if lv.ms and lv.p99 <= slo_ms and not lv.errors]
        return max(within, key=lambda lv: lv.qps) if within else None

    def saturated(self) -> Level | None:
        """The most throughput at any latency: the path's ceiling on this machine."""
        ok = [lv for lv in self.levels if lv.ms and not lv.errors]
        return max(ok, key=lambda lv: lv.qps) if ok else None


async def run_level(
    call: Callable[[int], Awaitable[object]],
    concurrency: int,
    pids: dict[str, int],
    seconds: float,
    warmup: float,
) -> Level:
    """Closed loop: `concurrency` workers, each sending its next call as soon as the last answered."""
    level = Level(concurrency)
    counter = iter(range(10**9))

    async def worker(stop_at: float, record: bool) -> None:
        while time.perf_counter() < stop_at:
            sent = time.perf_counter()
            try:
                await call(next(counter))
            except Exception:  # noqa: BLE001 - whatever the engine raises, a failed call is counted
                level.errors += record
                continue
            if record:
                level.ms.append((time.perf_counter() - sent) * 1000)

    await asyncio.gather(*(worker(time.perf_counter() + warmup, False) for _ in range(concurrency)))
    before = {part: cpu_seconds(pid) for part, pid in pids.items()}
    began = time.perf_counter()
    await asyncio.gather(*(worker(began + seconds, True) for _ in range(concurrency)))
    level.seconds = time.perf_counter() - began
    level.cpu = {part: cpu_seconds(pid) - before[part] for part, pid in pids.items()}
    return level


def done(path: Measured, slo_ms: float) -> bool:
    """Past its capacity: beyond the SLO after a level within it; or, where none was within it,
    once more calls in flight stop adding throughput (saturated: they only queue longer)."""
    last = path.levels[-1]
    if last.errors:
        return True
    if last.p99 <= slo_ms:
        return False
    if path.at_slo(slo_ms) is not None:
        return True
    earlier = [lv.qps for lv in path.levels[:-1]]
    return bool(earlier) and last.qps < 1.1 * max(earlier)


async def sweep(
    paths: list[tuple[Measured, Callable[[int], Awaitable[object]]]],
    pids: dict[str, int],
    levels: list[int],
    seconds: float,
    warmup: float,
    slo_ms: float,
) -> None:
    """Each level for every path still going, one path after another: raw engines and the
    services over them measured side by side, under the same background load."""
    for concurrency in levels:
        for path, call in paths:
            if path.levels and done(path, slo_ms):
                continue
            level = await run_level(call, concurrency, pids, seconds, warmup)
            path.levels.append(level)
            print(
                f"  {path.label:<22} c={concurrency:<3} {level.qps:7.1f}/s  p50 {level.p50:7.1f} ms  "
                f"p99 {level.p99:7.1f} ms  in flight {level.in_flight:5.1f}"
                + (f"  errors {level.errors}" if level.errors else ""),
                flush=True,
            )


# ---------------------------------------------------------------------------- the stack and its data


def start_stack(runtime: Path):  # type: ignore[no-untyped-def]
    from imagesearch.stack.local import LocalStack, StackConfig

    config = StackConfig(
        repo_root=REPO, runtime_dir=runtime, gateway_port=0, log_level="WARNING", grace=5.0, environ=dict(os.environ)
    )
    return LocalStack(config, progress=lambda msg: print(f"  {msg}", flush=True)).start()


def index(stub: search_pb2_grpc.SearchServiceStub, photos: list[Path], batch: int = 16) -> float:
    started = time.perf_counter()
    for start in range(0, len(photos), batch):
        products = [
            search_pb2.ProductInput(
                product=common_pb2.Product(product_id=path.stem, title=path.stem, category="demo", price=1.0),
                images=[search_pb2.ProductImage(content=path.read_bytes(), uri=path.name)],
            )
            for path in photos[start : start + batch]
        ]
        reply = stub.UpsertProducts(search_pb2.UpsertProductsRequest(products=products), timeout=300)
        failed = [r.product_id for r in reply.results if not r.ok]
        if failed:
            raise SystemExit(f"indexing failed for {failed[:3]}")
    return time.perf_counter() - started


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "",
    )
    mem = int(
        next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")).split()[1]
    )
    return f"{platform.machine()}, {os.cpu_count()} CPUs ({model}), {mem / 2**20:.0f} GiB, Python {platform.python_version()}"


# ---------------------------------------------------------------------------- main


async def measure(stack, args: argparse.Namespace) -> tuple[list[Measured], dict[str, tuple[int, int]]]:  # type: ignore[no-untyped-def]
    from pymilvus import MilvusClient
    from tritonclient.grpc import InferInput, InferRequestedOutput
    from tritonclient.grpc.aio import InferenceServerClient

    from imagesearch.client.credentials import AioKeyInterceptor, KeyInterceptor
    from imagesearch.common.convert import model_from_pb
    from imagesearch.contracts.model import EMBEDDING, INPUT, INPUT_DATATYPE, MODEL_NAME
    from imagesearch.imaging.framing import IMAGE_SIZE
    from imagesearch_retriever.core import OVERFETCH
    from imagesearch_retriever.milvus.schema import PRODUCT_FIELDS, collection_name
    from imagesearch_retriever.settings import RetrieverSettings

    photos = DEMO[: args.products]
    queries = [path.read_bytes() for path in photos[: args.queries]]
    key = stack.admin_key
    services = stack.services
    sync = grpc.insecure_channel(stack.gateway_address, GRPC_OPTIONS)
    sync_gateway = search_pb2_grpc.SearchServiceStub(grpc.intercept_channel(sync, KeyInterceptor(key)))
    print(f"indexing {len(photos)} demo photos through the gateway ...", flush=True)
    index_s = index(sync_gateway, photos)
    probe = sync_gateway.Search(search_pb2.SearchRequest(image=queries[0], top_k=1, skip_cache=True), timeout=30)
    model = probe.model
    settings = RetrieverSettings.from_env(stack.service_env("retriever"))
    name = collection_name(settings.collection_prefix, model_from_pb(model))
    milvus = MilvusClient(uri=stack.milvus.uri)
    wait_indexed(milvus, name, len(photos))
    print(f"  {len(photos)} photos in {index_s:.1f} s; collection {name}, model {model.name} v{model.version}")
    sync.close()

    pids = {
        "gateway": services["gateway"].proc.pid,
        "embedder": services["embedder"].proc.pid,
        "retriever": services["retriever"].proc.pid,
        "triton": stack.triton.pid,
    }
    if (milvus_pid := descendant("milvus")) is not None:
        pids["milvus"] = milvus_pid
    levels, run = [int(x) for x in args.levels.split(",")], (args.seconds, args.warmup, args.slo_ms)

    # The images as the embedder feeds them to Triton, and the vectors the retriever is sent.
    pixels = [
        np.asarray(Image.open(p).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))[None]
        for p in photos[: args.queries]
    ]
    channels = {part: grpc.aio.insecure_channel(services[part].address, options=GRPC_OPTIONS) for part in services}
    embedder = embedder_pb2_grpc.EmbedderServiceStub(channels["embedder"])
    retriever = retriever_pb2_grpc.RetrieverServiceStub(channels["retriever"])
    gateway = search_pb2_grpc.SearchServiceStub(
        grpc.aio.insecure_channel(stack.gateway_address, options=GRPC_OPTIONS, interceptors=[AioKeyInterceptor(key)])
    )
    vectors = []
    for data in queries:
        reply = await embedder.Embed(embedder_pb2.EmbedRequest(images=[embedder_pb2.EmbedImage(content=data)]))
        vectors.append(list(reply.results[0].embedding.values))

    triton = InferenceServerClient(stack.triton.grpc_url)

    async def raw_triton(i: int) -> object:
        image = InferInput(INPUT, list(pixels[i % len(pixels)].shape), INPUT_DATATYPE)
        image.set_data_from_numpy(pixels[i % len(pixels)])
        return await triton.infer(
            MODEL_NAME, [image], model_version=model.version, outputs=[InferRequestedOutput(EMBEDDING)]
        )

    def embed(localize: bool) -> Callable[[int], Awaitable[object]]:
        async def call(i: int) -> object:
            image = embedder_pb2.EmbedImage(content=queries[i % len(queries)], localize=localize)
            return await embedder.Embed(embedder_pb2.EmbedRequest(images=[image]), timeout=30)

        return call

    from imagesearch_gateway.settings import GatewaySettings

    localize = GatewaySettings.from_env(stack.service_env("gateway")).localize_queries
    pool = ThreadPoolExecutor(max_workers=max(levels))
    limit = args.top_k * OVERFETCH
    params = {"metric_type": "IP", "params": {"ef": max(settings.hnsw_ef_search, limit)}}

    def raw_milvus(i: int) -> Awaitable[object]:
        return asyncio.get_running_loop().run_in_executor(
            pool,
            lambda: milvus.search(
                name,
                data=[vectors[i % len(vectors)]],
                limit=limit,
                filter="",
                output_fields=[*PRODUCT_FIELDS, "image_uri"],
                search_params=params,
                consistency_level=settings.read_consistency,
            ),
        )

    async def retrieve(i: int) -> object:
        request = retriever_pb2.VectorSearchRequest(
            model=model, vector=embedder_pb2.Embedding(values=vectors[i % len(vectors)]), top_k=args.top_k
        )
        return await retriever.Search(request, timeout=30)

    async def search(i: int) -> object:
        request = search_pb2.SearchRequest(image=queries[i % len(queries)], top_k=args.top_k, skip_cache=True)
        return await gateway.Search(request, timeout=30)

    plan: list[tuple[Measured, Callable[[int], Awaitable[object]]]] = [
        (Measured("triton raw", "triton"), raw_triton),
        (Measured("embedder, 1 pass", "embedder"), embed(False)),
        (Measured("embedder, as queried", "embedder"), embed(localize)),
        (Measured("pymilvus raw", "milvus"), raw_milvus),
        (Measured("retriever", "retriever"), retrieve),
        (Measured("gateway Search", "gateway"), search),
    ]
    await sweep(plan, pids, levels, *run)
    out = [path for path, _ in plan]
    mem = {part: memory(pid) for part, pid in pids.items()}
    await triton.close()
    for channel in channels.values():
        await channel.close()
    milvus.close()
    pool.shutdown()
    return out, mem


def _row(label: str, level: Level, part: str) -> dict[str, float]:
    return {
        "qps": level.qps,
        "concurrency": level.concurrency,
        "p50_ms": level.p50,
        "p99_ms": level.p99,
        "in_flight": level.in_flight,
        "cpu_ms_per_call": level.cpu_ms_per_call(part),
        "triton_cpu_ms_per_call": level.cpu_ms_per_call("triton"),
        "milvus_cpu_ms_per_call": level.cpu_ms_per_call("milvus"),
    }


def _table(title: str, rows: dict[str, dict[str, float] | None]) -> None:
    print(f"\n{title}")
    print(
        f"{'path':<22}{'QPS':>8}{'c':>4}{'p50 ms':>8}{'p99 ms':>8}{'in flight':>10}"
        f"{'CPU ms/call':>12}{'triton':>8}{'milvus':>8}"
    )
    for label, row in rows.items():
        if row is None:
            print(f"{label:<22}{'none':>8}")
            continue
        print(
            f"{label:<22}{row['qps']:>8.1f}{row['concurrency']:>4.0f}{row['p50_ms']:>8.1f}{row['p99_ms']:>8.1f}"
            f"{row['in_flight']:>10.1f}{row['cpu_ms_per_call']:>12.1f}{row['triton_cpu_ms_per_call']:>8.1f}"
            f"{row['milvus_cpu_ms_per_call']:>8.1f}"
        )


def report(paths: list[Measured], mem: dict[str, tuple[int, int]], args: argparse.Namespace, wall: float) -> dict:  # type: ignore[type-arg]
    slo = args.slo_ms
    at_slo = {p.label: (_row(p.label, lv, p.part) if (lv := p.at_slo(slo)) else None) for p in paths}
    ceiling = {p.label: (_row(p.label, lv, p.part) if (lv := p.saturated()) else None) for p in paths}
    print(f"\n{machine()}; load average {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("CPU ms/call: the process under test's CPU time per call (triton, milvus: theirs, per call of the path)")
    _table(f"within the SLO (p99 <= {slo:.0f} ms), the most throughput:", at_slo)
    _table("saturated (the most throughput at any latency):", ceiling)

    def ratio(table: dict[str, dict[str, float] | None], a: str, b: str) -> str:
        x, y = table.get(a), table.get(b)
        return f"{x['qps'] / y['qps']:.2f}x" if x and y else "n/a"

    print()
    for a, b in (
        ("embedder, 1 pass", "triton raw"),
        ("retriever", "pymilvus raw"),
        ("gateway Search", "embedder, as queried"),
    ):
        print(f"{a} / {b}: at the SLO {ratio(at_slo, a, b)}, saturated {ratio(ceiling, a, b)}")
    print(
        "memory (resident at the end / high-water mark, MiB): "
        + ", ".join(f"{part} {now / 2**20:.0f}/{peak / 2**20:.0f}" for part, (now, peak) in mem.items())
    )
    print(f"wall time {wall:.0f} s")
    return {
        "machine": machine(),
        "slo_ms": slo,
        "at_slo": at_slo,
        "saturated": ceiling,
        "levels": {
            p.label: [
                {
                    "c": lv.concurrency,
                    "qps": lv.qps,
                    "p50_ms": lv.p50,
                    "p99_ms": lv.p99,
                    "in_flight": lv.in_flight,
                    "errors": lv.errors,
                    "cpu_ms_per_call": lv.cpu_ms_per_call(p.part),
                }
                for lv in p.levels
            ]
            for p in paths
        },
        "memory_bytes": {part: {"rss": now, "peak": peak} for part, (now, peak) in mem.items()},
        "wall_s": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slo-ms", type=float, default=250.0, help="p99 latency objective (default 250)")
    parser.add_argument("--levels", default="1,2,4,8,16", help="calls in flight to try, in order")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per level")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds before each level")
    parser.add_argument("--products", type=int, default=60, help="demo photos to index")
    parser.add_argument("--queries", type=int, default=20, help="distinct query photos, cycled")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as runtime:
        print(f"starting the stack in {runtime} ...", flush=True)
        stack = start_stack(Path(runtime))
        try:
            paths, mem = asyncio.run(measure(stack, args))
        finally:
            stack.stop()
    summary = report(paths, mem, args, time.monotonic() - began)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
