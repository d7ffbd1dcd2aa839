"""The Grafana dashboard (deploy/grafana/imagesearch.json), checked offline: it loads into any Grafana
with a Prometheus data source, shows what an SRE needs, and ships as the sidecar's ConfigMap.

That every one of its queries returns data from a real Prometheus scraping the real services is
tests/stack/test_prometheus.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "imagesearch.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SERVICES = ("gateway", "embedder", "retriever")


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but the rows, nested ones (in collapsed rows) included."""
    top = dashboard["panels"]
    every = [*top, *(p for row in top for p in row.get("panels", []))]
    return [p for p in every if p["type"] != "row"]


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]


def test_it_asks_for_a_prometheus_data_source_and_every_query_uses_it() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"] == "imagesearch" and dashboard["id"] is None
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]


def test_panels_have_ids_of_their_own_and_do_not_overlap() -> None:
    dashboard = load()
    every = [*dashboard["panels"], *(p for row in dashboard["panels"] for p in row.get("panels", []))]
    ids = [p["id"] for p in every]
    assert len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], str] = {}
    for panel in every:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_it_shows_red_per_service_and_each_dependency() -> None:
    everything = "\n".join(queries(load()))
    for job in SERVICES:  # rate, errors, duration p50 and p99, from the server side of every service
        assert f'rpc_server_duration_seconds_count{{job="{job}"}}' in everything, job
        assert f'rpc_server_duration_seconds_count{{job="{job}", rpc_grpc_status_code!="OK"}}' in everything, job
        for quantile in ("0.5", "0.99"):
            assert (
                f'histogram_quantile({quantile}, sum by (le, rpc_method) (rate(rpc_server_duration_seconds_bucket{{job="{job}"}}'
                in everything
            )
    for series in (
        "rpc_client_duration_seconds_bucket",  # the gateway's calls, as it sees them
        "imagesearch_dependency_duration_seconds_bucket",
        "imagesearch_dependency_up",
        "imagesearch_calls_in_flight",
        "imagesearch_admission_refused_total",
        "imagesearch_cache_lookups_total",
        "imagesearch_cache_errors_total",
        "imagesearch_decode_memory_bytes",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_count",
        "milvus_proxy_req_count",
        "milvus_proxy_sq_latency_bucket",
    ):
        assert series in everything, series


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule would hold it (Grafana's $__ variables filled in)."""
    exprs = [q.replace("$__rate_interval", "1m").replace("$__interval", "15s") for q in queries(load())]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"q{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_kustomize_ships_it_as_a_configmap_for_the_grafana_sidecar() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the rendered manifests")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization is rendered with `kubectl kustomize`")
    done = subprocess.run([kubectl, "kustomize", str(GRAFANA)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    [configmap] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["name"] == "imagesearch-dashboard"
    assert configmap["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert json.loads(configmap["data"]["imagesearch.json"]) == load()
