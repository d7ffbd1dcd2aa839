"""The recording and alerting rules are valid, proven on synthetic series, documented, and the same
rules in Kubernetes.

deploy/prometheus/rules/*.yml is the one home of the rules. promtool, Prometheus's own checker,
checks every file and runs the unit tests beside them (deploy/prometheus/tests/*.yml), in which
every alert must fire on a failing series and stay silent on a healthy one. Each alert says how
urgent it is and links its runbook in docs/operations.md. The PrometheusRule that carries the same
groups into a cluster is generated from the files, and the autoscalers' queries are PromQL that
promtool accepts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from imagesearch.common.metrics import ServiceMetrics

yaml = pytest.importorskip("yaml", reason="PyYAML parses the rule files (pip install pyyaml)")

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
UNIT_TESTS = ROOT / "deploy" / "prometheus" / "tests"
OPERATIONS = ROOT / "docs" / "operations.md"
AUTOSCALING = ROOT / "deploy" / "k8s" / "autoscaling.yaml"
TRITON_GPU_CONFIG = ROOT / "model_repo" / "image_embedding" / "configs" / "tensorrt.pbtxt"

SEVERITIES = {"page", "ticket"}
# The windows of the Google SRE workbook's multiwindow, multi-burn-rate alerts.
BURN_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
SLO_RATIOS = ("job_rpc_method:rpc_server_errors:ratio_rate", "job_rpc_method:rpc_server_slow:ratio_rate")
RECORDED_NAME = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


def _promtool() -> str:
    # Not a skip: the rules ship to production, so a machine that cannot check them fails.
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not installed: it checks and unit-tests deploy/prometheus/rules. "
            "Install Prometheus's tools (Debian and Ubuntu: apt-get install prometheus, which ships /usr/bin/promtool).",
            pytrace=False,
        )
    return promtool


def _run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=300, check=False)


def _rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def _unit_test_files() -> list[Path]:
    return sorted(UNIT_TESTS.glob("*.yml"))


@cache
def _groups() -> tuple[dict[str, Any], ...]:
    return tuple(group for path in _rule_files() for group in yaml.safe_load(path.read_text())["groups"])


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _groups() for rule in group["rules"] if "alert" in rule]


def _recorded() -> set[str]:
    return {rule["record"] for group in _groups() for rule in group["rules"] if "record" in rule}


def _github_anchors(markdown: str) -> set[str]:
    """The fragment ids a Markdown renderer gives headings (GitHub's rule), and explicit ids."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)  # a "# comment" in code is no heading
    anchors = set(re.findall(r'<a (?:id|name)="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", markdown, re.M):
        text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading).strip().lower()
        anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


# --------------------------------------------------------------------------- promtool


def test_there_are_rule_files_and_unit_tests_for_them() -> None:
    assert {path.name for path in _rule_files()} >= {"slo.yml", "alerts.yml"}
    assert _unit_test_files()


@pytest.mark.parametrize("path", _rule_files(), ids=lambda path: path.name)
def test_promtool_accepts_the_rule_file(path: Path) -> None:
    done = _run_promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", _unit_test_files(), ids=lambda path: path.name)
def test_the_rule_unit_tests_pass(path: Path) -> None:
    done = _run_promtool("test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_in_a_unit_test_and_stays_silent_in_another() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    named: set[str] = set()
    for path in _unit_test_files():
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test") or []:
                named.add(case["alertname"])
                (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    alerts = {alert["alert"] for alert in _alerts()}
    # An alert name misspelt in a test never fires, so its "silent" case would prove nothing.
    assert named <= alerts, f"unit tests name alerts that do not exist: {sorted(named - alerts)}"
    assert alerts - fired == set(), "alerts never shown to fire"
    assert alerts - silent == set(), "alerts never shown to stay silent"


# --------------------------------------------------------------------------- what the rules say


def test_every_alert_says_how_urgent_it_is_and_what_to_do() -> None:
    for alert in _alerts():
        name = alert["alert"]
        assert alert.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = alert.get("annotations") or {}
        for key in ("summary", "description", "runbook_url"):
            assert str(annotations.get(key, "")).strip(), f"{name} has no {key}"


def test_every_alert_links_its_own_runbook_entry_in_operations_md() -> None:
    anchors = _github_anchors(OPERATIONS.read_text())
    for alert in _alerts():
        url = alert["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/operations.md", url
        assert anchor == alert["alert"].lower(), f"{alert['alert']}: one entry per alert, named after it ({url})"
        assert anchor in anchors, f"docs/operations.md has no heading for #{anchor}"


def test_the_anchor_reader_follows_githubs_rule() -> None:
    anchors = _github_anchors(
        '## Alerts and runbooks\n### `TritonQueueing`\n<a id="x-y"></a>\n#### SLOs ##\n```promql\n# rate\n```\n'
    )
    assert anchors == {"alerts-and-runbooks", "tritonqueueing", "x-y", "slos"}


def test_both_slos_are_recorded_over_every_window_their_burn_rate_alerts_need() -> None:
    recorded = _recorded()
    for ratio in SLO_RATIOS:
        assert {f"{ratio}{window}" for window in BURN_WINDOWS} <= recorded


def test_every_recorded_series_a_rule_reads_is_recorded() -> None:
    # promtool checks syntax, not names: a misspelt recording would leave its alert silent forever.
    read = {name for group in _groups() for rule in group["rules"] for name in RECORDED_NAME.findall(rule["expr"])}
    assert read - _recorded() == set()


def test_the_latency_threshold_is_a_bucket_boundary_as_the_services_spell_it() -> None:
    thresholds = {
        match
        for group in _groups()
        if "latency" in group["name"]
        for rule in group["rules"]
        for match in re.findall(r'le="([^"]+)"', rule["expr"])
    }
    assert thresholds == {"0.5"}
    # What a service exports, as Prometheus scrapes it: le="0.5" must be one of its series.
    metrics = ServiceMetrics("gateway")
    metrics.rpc_server_duration.labels("grpc", "imagesearch.v1.SearchService", "Search", "OK").observe(0.1)
    exported = generate_latest(metrics.registry).decode()
    buckets = re.findall(r'^rpc_server_duration_seconds_bucket\{le="([^"]+)",.*rpc_method="Search"', exported, re.M)
    assert "0.5" in buckets, buckets


# --------------------------------------------------------------------------- Kubernetes


def test_the_prometheus_rule_is_generated_from_the_rule_files() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_prometheus_rule.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _scaled_objects() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(AUTOSCALING.read_text()) if doc and doc["kind"] == "ScaledObject"]


def test_the_autoscalers_queries_are_promql_that_promtool_accepts(tmp_path: Path) -> None:
    queries = [
        trigger["metadata"]["query"]
        for scaled in _scaled_objects()
        for trigger in scaled["spec"]["triggers"]
        if trigger["type"] == "prometheus"
    ]
    assert len(queries) == 3
    rules = {
        "groups": [{"name": "keda", "rules": [{"record": f"keda:query:{i}", "expr": q} for i, q in enumerate(queries)]}]
    }
    path = tmp_path / "keda.yml"
    path.write_text(yaml.safe_dump(rules))
    done = _run_promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_triton_queue_allowance_is_the_models_batching_delay() -> None:
    # Queue time beyond the dynamic batcher's window is the saturation signal: the allowance the
    # autoscaler and the alert subtract must be the delay the GPU config gives the batcher.
    delay = re.search(r"max_queue_delay_microseconds:\s*(\d+)", TRITON_GPU_CONFIG.read_text())
    assert delay is not None
    allowance = f"{delay.group(1)} * rate(nv_inference_request_success"
    triton = [scaled for scaled in _scaled_objects() if scaled["metadata"]["name"] == "triton"]
    assert allowance in " ".join(triton[0]["spec"]["triggers"][0]["metadata"]["query"].split())
    assert allowance in (RULES / "alerts.yml").read_text()
