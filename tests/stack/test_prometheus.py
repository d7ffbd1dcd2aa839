"""A Prometheus under the stack: it scrapes every part, it reports the counts the parts keep, and every
query of the Grafana dashboard (deploy/grafana/imagesearch.json) returns data from it.

One Prometheus for the module, scraping every second, under the job names `imagesearch up` and the
deployed PodMonitors use: the session's real services (in-process, each on a metrics port of its
own), the session's Triton and Milvus. Traffic goes to a catalog of its own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from support import DEMO_IMAGES, REPO, WRITE_WINDOW_SECONDS, open_channel, product_input

from imagesearch.stack.prometheus import RULES_GLOB, LocalPrometheus, prometheus_binary, render_config
from imagesearch.v1 import embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc

# The async tests run in the session's event loop (asyncio_mode = "auto"), with the services they call.
pytestmark = pytest.mark.skipif(
    prometheus_binary() is None, reason="prometheus is not installed (apt-get install prometheus)"
)

SCRAPE_INTERVAL = 1.0
JOBS = ("gateway", "embedder", "retriever", "triton", "milvus")
CATALOG = "prometheus_test"
DASHBOARD = REPO / "deploy" / "grafana" / "imagesearch.json"
# Grafana's own variables, filled in as Grafana would for the last few minutes; the window covers
# the traffic below however long the tests before the dashboard's take.
GRAFANA_VARIABLES = {"$__rate_interval": "3m", "$__interval": "15s", "$__range": "5m"}

Counts = dict[frozenset[tuple[str, str]], float]


class Api:
    """Prometheus's HTTP API, called off the event loop (the services under test share it)."""

    def __init__(self, url: str, targets: int) -> None:
        self.url, self.targets = url, targets

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]

    async def get(self, path: str, **params: str) -> Any:
        return await asyncio.to_thread(self._get, path, **params)

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    async def counts(self, expr: str) -> Counts:
        return {frozenset(s["metric"].items()): float(s["value"][1]) for s in await self.query(expr)}

    async def wait_until_every_target_is_up(self, jobs: list[str], timeout: float = 40.0) -> list[dict[str, Any]]:
        """Prometheus picks up new targets within 5 s (its discovery batches updates), then scrapes them."""
        deadline = time.monotonic() + timeout
        while True:
            targets = (await self.get("/api/v1/targets"))["activeTargets"]
            if sorted(t["labels"]["job"] for t in targets if t["health"] == "up") == sorted(jobs):
                return list(targets)
            assert time.monotonic() < deadline, f"not every target up within {timeout:.0f} s: {targets}"
            await asyncio.sleep(0.5)

    async def wait_scraped_after(self, moment: float, timeout: float = 20.0) -> None:
        """Until every target's latest scrape began after `moment` (Unix time) and succeeded (on two
        busy cores one can time out): queries then see everything that happened before it.
        (`timestamp(up == 1)` would not do: the timestamp of a computed sample is the query's time.)"""
        deadline = time.monotonic() + timeout
        while True:
            stamps = [float(s["value"][1]) for s in await self.query("timestamp(up) and up == 1")]
            if len(stamps) == self.targets and min(stamps) > moment:
                return
            assert time.monotonic() < deadline, f"no scrape of every target after {moment} within {timeout:.0f} s"
            await asyncio.sleep(0.2)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> Counts:
    """A target's own /metrics, samples keyed by name and labels as Prometheus stores them (read
    here line by line: prometheus_client's parser renames counters that lack `_total`)."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    counts: Counts = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is not None and not line.startswith("#"):
            name, labels, value = match.groups()
            counts[frozenset({("__name__", name), *_LABEL.findall(labels or "")})] = float(value)
    return counts


def total(counts: Counts, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for key, value in counts.items() if wanted <= key)


@pytest.fixture(scope="module")
def targets(fleet: Any, triton_server: Any, milvus_server: Any) -> dict[str, list[str]]:
    jobs = {
        "gateway": [f"127.0.0.1:{fleet.gateway.metrics.port}"],
        "embedder": [f"127.0.0.1:{fleet.embedder.metrics.port}"],
        "retriever": [f"127.0.0.1:{fleet.retriever.metrics.port}"],
        "triton": [f"127.0.0.1:{triton_server.metrics_port}"],
    }
    if milvus_server is not None:  # MILVUS_TEST_URI: a Milvus of someone else's, its metrics port unknown
        jobs["milvus"] = [f"127.0.0.1:{milvus_server.health_port}"]
    return jobs


@pytest.fixture(scope="module")
def prometheus(targets: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    # The repository's alert rules too, as under `imagesearch up`: a rule file Prometheus refuses fails here.
    prometheus = LocalPrometheus(
        tmp_path_factory.mktemp("prometheus"),
        targets,
        rule_files=[str(REPO / RULES_GLOB)],
        scrape_interval=SCRAPE_INTERVAL,
    )
    with prometheus:
        yield prometheus


@pytest.fixture(scope="module")
def api(prometheus: LocalPrometheus, targets: dict[str, list[str]]) -> Api:
    return Api(prometheus.url, len(targets))


async def one_round(gateway: Any, embedder: Any, round: int) -> None:
    """What the dashboard shows, a little of each: an ingest, searches missing and hitting the cache,
    bad requests at the gateway and at the embedder, a lookup of a product that does not exist."""
    image = DEMO_IMAGES[round].read_bytes()
    await gateway.UpsertProducts(
        search_pb2.UpsertProductsRequest(products=[product_input(f"prom-{round}", [image])], catalog=CATALOG)
    )
    await asyncio.sleep(WRITE_WINDOW_SECONDS + 0.1)  # right after a write the catalog is not cached
    for _ in range(2):  # a miss, then a hit
        await gateway.Search(search_pb2.SearchRequest(image=image, top_k=3, catalog=CATALOG))
    await gateway.Search(search_pb2.SearchRequest(image=image, top_k=3, catalog=CATALOG, skip_cache=True))
    with pytest.raises(grpc.aio.AioRpcError):
        await gateway.Search(search_pb2.SearchRequest(image=b"not an image", catalog=CATALOG))
    with pytest.raises(grpc.aio.AioRpcError):
        await gateway.GetProduct(search_pb2.GetProductRequest(product_id="prom-missing", catalog=CATALOG))
    with pytest.raises(grpc.aio.AioRpcError):
        await embedder.Embed(embedder_pb2.EmbedRequest())  # no images: INVALID_ARGUMENT


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traffic(fleet: Any, api: Api, targets: dict[str, list[str]]) -> AsyncIterator[None]:
    """Two rounds of calls, each seen by a scrape of its own: every counter the calls touch has
    grown between two samples, so rates and quantiles over them have values."""
    await api.wait_until_every_target_is_up(list(targets))
    async with open_channel(fleet.gateway.address) as channel, grpc.aio.insecure_channel(fleet.embedder.address) as raw:
        gateway = search_pb2_grpc.SearchServiceStub(channel)
        embedder = embedder_pb2_grpc.EmbedderServiceStub(raw)
        for round in range(2):
            await one_round(gateway, embedder, round)
            await api.wait_scraped_after(time.time())
        yield
        await gateway.DeleteCatalog(search_pb2.DeleteCatalogRequest(catalog=CATALOG))


# --- the configuration ---------------------------------------------------------------------------


def test_the_configuration_is_one_prometheus_accepts(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        render_config(
            {"gateway": ["127.0.0.1:9464"], "triton": ["127.0.0.1:8002"]}, 0.5, [str(tmp_path / "rules" / "*.yml")]
        )
    )
    checked = subprocess.run(
        [str(Path(prometheus_binary() or "prometheus").with_name("promtool")), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "scrape_interval: 500ms" in config.read_text()


# --- scraping ------------------------------------------------------------------------------------


async def test_every_part_is_scraped_under_its_job_on_loopback(
    prometheus: LocalPrometheus, api: Api, targets: dict[str, list[str]]
) -> None:
    up = await api.wait_until_every_target_is_up(list(targets))
    assert {t["labels"]["job"]: t["scrapeUrl"] for t in up} == {
        job: f"http://{address}/metrics" for job, [address] in targets.items()
    }
    assert set(JOBS) - set(targets) <= {"milvus"}  # Milvus only when it is the session's own
    flags = await api.get("/api/v1/status/flags")
    assert flags["web.listen-address"].startswith("127.0.0.1:")
    assert Path(flags["storage.tsdb.path"]) == prometheus.data_dir


async def test_the_counts_prometheus_reports_are_the_calls_made(
    fleet: Any, api: Api, targets: dict[str, list[str]]
) -> None:
    """The gateway's counts are exactly the calls this test makes; downstream, where one call fans
    out into several, Prometheus reports what each part counted itself over the same calls."""
    await api.wait_until_every_target_is_up(list(targets))
    urls = {job: f"http://{address}/metrics" for job, [address] in targets.items()}
    queries = {
        job: f'{{job="{job}", __name__=~"rpc_server_duration_seconds_count|nv_inference_request_success|milvus_proxy_req_count"}}'
        for job in targets
    }

    async def snapshot() -> tuple[dict[str, Counts], dict[str, Counts]]:
        await api.wait_scraped_after(time.time())
        seen = {job: await api.counts(query) for job, query in queries.items()}
        own = {job: await asyncio.to_thread(scrape, url) for job, url in urls.items()}
        return seen, own

    seen_before, own_before = await snapshot()
    image = DEMO_IMAGES[2].read_bytes()
    async with open_channel(fleet.gateway.address) as channel:
        gateway = search_pb2_grpc.SearchServiceStub(channel)
        await gateway.UpsertProducts(
            search_pb2.UpsertProductsRequest(products=[product_input("prom-count", [image])], catalog=CATALOG)
        )
        for _ in range(3):
            await gateway.Search(search_pb2.SearchRequest(image=image, top_k=3, catalog=CATALOG, skip_cache=True))
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await gateway.Search(search_pb2.SearchRequest(image=b"not an image", catalog=CATALOG))
    seen_after, own_after = await snapshot()

    def grew(counts_before: Counts, counts_after: Counts, **labels: str) -> float:
        return total(counts_after, **labels) - total(counts_before, **labels)

    rpc = "rpc_server_duration_seconds_count"
    gateway_seen = (seen_before["gateway"], seen_after["gateway"])
    assert grew(*gateway_seen, __name__=rpc, rpc_method="UpsertProducts", rpc_grpc_status_code="OK") == 1
    assert grew(*gateway_seen, __name__=rpc, rpc_method="Search", rpc_grpc_status_code="OK") == 3
    assert grew(*gateway_seen, __name__=rpc, rpc_method="Search", rpc_grpc_status_code="INVALID_ARGUMENT") == 2
    downstream = [
        ("embedder", {"__name__": rpc, "rpc_method": "Embed"}),
        ("retriever", {"__name__": rpc, "rpc_method": "Search"}),
        ("retriever", {"__name__": rpc, "rpc_method": "Upsert"}),
        ("triton", {"__name__": "nv_inference_request_success"}),
        ("milvus", {"__name__": "milvus_proxy_req_count", "function_name": "Search", "status": "total"}),
    ]
    for job, labels in downstream:
        if job not in targets:
            continue
        counted = grew(own_before[job], own_after[job], **labels)
        assert counted > 0, (job, labels)
        assert grew(seen_before[job], seen_after[job], **labels) == counted, (job, labels)


# --- the dashboard -------------------------------------------------------------------------------


def dashboard_queries() -> Iterator[Any]:
    """(panel title, query) for every target of every panel, rows' nested panels included."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    for panel in [*panels, *(p for row in panels for p in row.get("panels", []))]:
        for target in panel.get("targets", []):
            yield pytest.param(panel["title"], target["expr"], id=f"{panel['title']} [{target['refId']}]")


def concrete(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value).replace("${" + variable[1:] + "}", value)
    assert "$" not in expr, f"a variable the test does not know: {expr}"
    return expr


@pytest.mark.parametrize(("title", "expr"), list(dashboard_queries()))
async def test_every_dashboard_query_returns_data(title: str, expr: str, traffic: None, api: Api) -> None:
    query = concrete(expr)
    result = await api.query(query)
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(value) for value in values), f"{title!r}: {query}\nreturned {result}"
