"""The deployment files are secure by default: checked offline, on what would actually be applied.

The Kubernetes side is rendered with `kubectl kustomize` (no cluster needed), so the checks see the
objects after kustomize's rewriting (namespace, images), not the files as written. NetworkPolicies are
evaluated the way the API defines them (a pod is isolated in a direction once any policy selects it
for that direction, and then a connection needs an allowing egress rule at the source and an allowing
ingress rule at the destination), over the imagesearch pods plus a few stand-ins for the rest of a
cluster, so "only the gateway reaches Redis" is a property of the whole policy set, not of one file.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML parses the manifests (pip install pyyaml)")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MILVUS_K8S = K8S / "milvus"
COMPOSE = ROOT / "docker-compose.yml"

NAMESPACE = "imagesearch"
MILVUS_NAMESPACE = "milvus"
# The labels the official Milvus chart gives its pods for release "milvus" (its _helpers.tpl and
# the etcd/MinIO subcharts): the policies must tell Milvus apart from its own etcd and MinIO.
MILVUS_LABELS = {"app.kubernetes.io/name": "milvus", "app.kubernetes.io/instance": "milvus", "component": "standalone"}
ETCD_LABELS = {"app.kubernetes.io/name": "etcd", "app.kubernetes.io/instance": "milvus"}
MINIO_LABELS = {"app": "minio", "release": "milvus"}

# Pod Security "restricted": the only volume types it admits.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
CREDENTIAL_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY|ACCESS_?KEY", re.IGNORECASE)
# Where a credential is kept (GATEWAY_API_KEYS_FILE) is not itself one.
CREDENTIAL_LOCATION = re.compile(r"_(FILE|PATH|DIR)$")
# user:password@ inside a URL, the usual way a credential slips into a plain setting.
URL_USERINFO = re.compile(r"://[^/\s@]*:[^/\s@]+@")
WELL_KNOWN_DEFAULTS = ("minioadmin", "root:milvus")


# --------------------------------------------------------------------------- rendering


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests are rendered with `kubectl kustomize`")
    return kubectl


@cache
def _render(directory: Path) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


@pytest.fixture(scope="module")
def rendered() -> tuple[dict[str, Any], ...]:
    return _render(K8S)


@pytest.fixture(scope="module")
def milvus_rendered() -> tuple[dict[str, Any], ...]:
    return _render(MILVUS_K8S)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc.get("kind") == kind]


def _one(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in _of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _pod_templates(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    templates = {doc["metadata"]["name"]: doc["spec"]["template"] for doc in docs if doc.get("kind") in WORKLOAD_KINDS}
    for doc in _of_kind(docs, "CronJob"):
        templates[doc["metadata"]["name"]] = doc["spec"]["jobTemplate"]["spec"]["template"]
    return templates


def _containers(pod_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod_spec.get(key) or []:
            yield f"{key}/{container['name']}", container


def _container(docs: tuple[dict[str, Any], ...], workload: str) -> dict[str, Any]:
    return dict(_pod_templates(docs)[workload]["spec"]["containers"][0])


def _env(container: dict[str, Any]) -> list[dict[str, Any]]:
    return list(container.get("env") or [])


def _env_var(container: dict[str, Any], name: str) -> dict[str, Any]:
    found = [var for var in _env(container) if var["name"] == name]
    assert found, f"container {container['name']} has no env var {name}"
    return found[0]


# --------------------------------------------------------------------------- NetworkPolicy semantics


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str | None  # None: an address outside the cluster
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: dict[str, int] = field(default_factory=dict, hash=False)  # container port name -> number
    ip: str | None = None  # only outside addresses have a known one


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


class Cluster:
    """The policies of some namespaces, and the question the API answers: may A open a connection to B:port?"""

    def __init__(self, policies: list[dict[str, Any]], namespaces: list[dict[str, Any]]) -> None:
        self.policies = policies
        self.namespace_labels = {ns["metadata"]["name"]: dict(ns["metadata"].get("labels") or {}) for ns in namespaces}

    def _labels_of_namespace(self, name: str) -> dict[str, str]:
        # The API server sets this label on every namespace; the policies select namespaces by it.
        return {**self.namespace_labels.get(name, {}), "kubernetes.io/metadata.name": name}

    def _peer_matches(self, peer: dict[str, Any], policy_namespace: str, pod: Pod) -> bool:
        if "ipBlock" in peer:
            if pod.ip is None:
                return True  # a pod's address could fall in any block: count it as reachable, the strict reading
            address = ipaddress.ip_address(pod.ip)
            block = peer["ipBlock"]
            return address in ipaddress.ip_network(block["cidr"]) and not any(
                address in ipaddress.ip_network(cidr) for cidr in block.get("except") or []
            )
        if pod.namespace is None:
            return False
        if "namespaceSelector" in peer:
            if not _selects(peer["namespaceSelector"], self._labels_of_namespace(pod.namespace)):
                return False
            return _selects(peer.get("podSelector"), pod.labels)
        return pod.namespace == policy_namespace and _selects(peer.get("podSelector"), pod.labels)

    @staticmethod
    def _port_matches(entry: dict[str, Any], port: int, protocol: str, destination: Pod) -> bool:
        if entry.get("protocol", "TCP") != protocol:
            return False
        if "port" not in entry:
            return True
        wanted = entry["port"]
        if isinstance(wanted, str):  # a named port is the destination container's
            return destination.ports.get(wanted) == port
        return bool(wanted <= port <= entry.get("endPort", wanted))

    @staticmethod
    def _types(policy: dict[str, Any]) -> list[str]:
        spec = policy["spec"]
        if "policyTypes" in spec:
            return list(spec["policyTypes"])
        return ["Ingress", *(["Egress"] if "egress" in spec else [])]

    def _selecting(self, pod: Pod, direction: str) -> list[dict[str, Any]]:
        return [
            policy
            for policy in self.policies
            if policy["metadata"]["namespace"] == pod.namespace
            and direction in self._types(policy)
            and _selects(policy["spec"].get("podSelector") or {}, pod.labels)
        ]

    def _rules_allow(
        self,
        policies: list[dict[str, Any]],
        key: str,
        peer_key: str,
        other: Pod,
        port: int,
        protocol: str,
        destination: Pod,
    ) -> bool:
        for policy in policies:
            for rule in policy["spec"].get(key) or []:
                ports = rule.get("ports") or []
                if ports and not any(self._port_matches(entry, port, protocol, destination) for entry in ports):
                    continue
                peers = rule.get(peer_key) or []
                if not peers or any(self._peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers):
                    return True
        return False

    def egress_allowed(self, source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
        policies = self._selecting(source, "Egress")
        return not policies or self._rules_allow(policies, "egress", "to", destination, port, protocol, destination)

    def ingress_allowed(self, source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
        if destination.namespace is None:
            return True
        policies = self._selecting(destination, "Ingress")
        return not policies or self._rules_allow(policies, "ingress", "from", source, port, protocol, destination)

    def allows(self, source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
        return self.egress_allowed(source, destination, port, protocol) and self.ingress_allowed(
            source, destination, port, protocol
        )


def _imagesearch_pods(docs: tuple[dict[str, Any], ...]) -> dict[str, Pod]:
    pods = {}
    for name, template in _pod_templates(docs).items():
        ports = {
            port["name"]: port["containerPort"]
            for _, container in _containers(template["spec"])
            for port in container.get("ports") or []
            if "name" in port
        }
        pods[name] = Pod(name, NAMESPACE, dict(template["metadata"]["labels"]), ports)
    return pods


# Stand-ins for the rest of a cluster. The impostor wears the gateway's labels in another namespace:
# a podSelector without a namespaceSelector must not let it in.
MILVUS = Pod("milvus/milvus", MILVUS_NAMESPACE, MILVUS_LABELS, {"milvus": 19530, "metrics": 9091})
ETCD = Pod("milvus/etcd", MILVUS_NAMESPACE, ETCD_LABELS, {"client": 2379, "peer": 2380})
MINIO = Pod("milvus/minio", MILVUS_NAMESPACE, MINIO_LABELS, {"http": 9000})
KUBE_DNS = Pod("kube-system/coredns", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53, "dns-tcp": 53})
PROMETHEUS = Pod("monitoring/prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
INGRESS_CONTROLLER = Pod("ingress-nginx/controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
IMPOSTOR = Pod(
    "default/impostor", "default", {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/part-of": NAMESPACE}
)
INTERNET = Pod("internet", None, ip="203.0.113.10")
PUBLIC_DNS = Pod("public-dns", None, ip="8.8.8.8")
OUTSIDERS = (MILVUS, ETCD, MINIO, KUBE_DNS, PROMETHEUS, INGRESS_CONTROLLER, IMPOSTOR)


@pytest.fixture(scope="module")
def pods(rendered: tuple[dict[str, Any], ...]) -> dict[str, Pod]:
    return _imagesearch_pods(rendered)


@pytest.fixture(scope="module")
def cluster(rendered: tuple[dict[str, Any], ...], milvus_rendered: tuple[dict[str, Any], ...]) -> Cluster:
    docs = rendered + milvus_rendered
    return Cluster(_of_kind(docs, "NetworkPolicy"), _of_kind(docs, "Namespace"))


def _callers(cluster: Cluster, pods: dict[str, Pod], destination: Pod, port: int, protocol: str = "TCP") -> set[str]:
    everyone = [*pods.values(), *OUTSIDERS]
    return {pod.name for pod in everyone if pod != destination and cluster.allows(pod, destination, port, protocol)}


def _admitted(cluster: Cluster, pods: dict[str, Pod], destination: Pod, port: int) -> set[str]:
    """Who the destination's ingress policies alone let in: each side must hold without the other's
    egress rules, since a pod elsewhere (or one whose egress policy is loosened) has none."""
    everyone = [*pods.values(), *OUTSIDERS]
    return {pod.name for pod in everyone if pod != destination and cluster.ingress_allowed(pod, destination, port)}


# --------------------------------------------------------------------------- Pod Security


def test_the_namespace_enforces_the_restricted_pod_security_standard(rendered: tuple[dict[str, Any], ...]) -> None:
    labels = _one(rendered, "Namespace", NAMESPACE)["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", mode


def test_the_milvus_namespace_enforces_baseline_and_reports_restricted(
    milvus_rendered: tuple[dict[str, Any], ...],
) -> None:
    labels = _one(milvus_rendered, "Namespace", MILVUS_NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"


def _restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    problems = []
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(host):
            problems.append(f"{host} is set")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} is {sorted(kinds)}")
    pod_context = pod_spec.get("securityContext") or {}
    if pod_context.get("sysctls"):
        problems.append("pod sets sysctls")
    for where, container in _containers(pod_spec):
        context = container.get("securityContext") or {}
        # Pod-level fields count for every container unless the container overrides them.
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{where}: runs as uid 0")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile is {seccomp!r}")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            problems.append(f"{where}: privileged")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{where}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: adds capabilities {capabilities['add']}")
        if context.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount {context['procMount']}")
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{where}: hostProcess")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort {port['hostPort']}")
    return problems


def test_every_pod_meets_the_restricted_pod_security_standard(rendered: tuple[dict[str, Any], ...]) -> None:
    templates = _pod_templates(rendered)
    assert set(templates) >= {"gateway", "embedder", "retriever", "triton", "redis", "jaeger"}
    # Triton's model-repository copy is the init container: make sure that path is exercised.
    assert templates["triton"]["spec"].get("initContainers")
    problems = {name: _restricted_violations(template["spec"]) for name, template in templates.items()}
    assert {name: found for name, found in problems.items() if found} == {}


def test_the_restricted_check_catches_what_admission_would_reject() -> None:
    # Guards the check above against passing vacuously.
    pod = {
        "hostNetwork": True,
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [{"name": "init", "securityContext": {"allowPrivilegeEscalation": True}}],
        "containers": [
            {
                "name": "main",
                "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "privileged": True,
                    "runAsUser": 0,
                    "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
                },
            }
        ],
    }
    found = "\n".join(_restricted_violations(pod))
    for expected in (
        "hostNetwork",
        "hostPath",
        "initContainers/init: allowPrivilegeEscalation",
        "initContainers/init: capabilities do not drop ALL",
        "privileged",
        "uid 0",
        "SYS_ADMIN",
        "hostPort",
    ):
        assert expected in found


# --------------------------------------------------------------------------- NetworkPolicies


def test_a_default_deny_covers_ingress_and_egress_of_every_pod(rendered: tuple[dict[str, Any], ...]) -> None:
    deny_all = [
        policy
        for policy in _of_kind(rendered, "NetworkPolicy")
        if policy["spec"].get("podSelector") in ({}, None)
        and set(policy["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
        and not policy["spec"].get("ingress")
        and not policy["spec"].get("egress")
    ]
    assert [policy["metadata"]["namespace"] for policy in deny_all] == [NAMESPACE]


def test_anyone_reaches_the_gateway_public_api_and_nothing_else_of_it(cluster: Cluster, pods: dict[str, Pod]) -> None:
    gateway = pods["gateway"]
    for outsider in (INGRESS_CONTROLLER, IMPOSTOR, PROMETHEUS):
        assert cluster.allows(outsider, gateway, 50051), outsider.name
    assert not cluster.allows(INGRESS_CONTROLLER, gateway, 8080)


def test_only_the_gateway_and_the_retriever_reach_redis(cluster: Cluster, pods: dict[str, Pod]) -> None:
    # The gateway's result cache and the retriever's write horizons.
    assert (
        _callers(cluster, pods, pods["redis"], 6379)
        == _admitted(cluster, pods, pods["redis"], 6379)
        == {"gateway", "retriever"}
    )


def test_only_the_gateway_reaches_the_embedder(cluster: Cluster, pods: dict[str, Pod]) -> None:
    assert (
        _callers(cluster, pods, pods["embedder"], 50052)
        == _admitted(cluster, pods, pods["embedder"], 50052)
        == {"gateway"}
    )


def test_only_the_gateway_reaches_the_retriever(cluster: Cluster, pods: dict[str, Pod]) -> None:
    assert (
        _callers(cluster, pods, pods["retriever"], 50053)
        == _admitted(cluster, pods, pods["retriever"], 50053)
        == {"gateway"}
    )


def test_only_the_embedder_reaches_triton(cluster: Cluster, pods: dict[str, Pod]) -> None:
    assert (
        _callers(cluster, pods, pods["triton"], 8001) == _admitted(cluster, pods, pods["triton"], 8001) == {"embedder"}
    )
    # HTTP only serves the kubelet's probes, which NetworkPolicy does not filter.
    assert _callers(cluster, pods, pods["triton"], 8000) == _admitted(cluster, pods, pods["triton"], 8000) == set()


def test_the_internal_services_admit_only_their_intended_caller_pods(rendered: tuple[dict[str, Any], ...]) -> None:
    # The same property read off the ingress policies themselves: every rule that opens a serving
    # port names its intended sources only, pods of the same namespace.
    intended = {
        "embedder": ({"gateway"}, 50052),
        "retriever": ({"gateway"}, 50053),
        "redis": ({"gateway", "retriever"}, 6379),
        "triton": ({"embedder"}, 8001),
    }
    for target, (callers, port) in intended.items():
        sources = []
        for policy in _of_kind(rendered, "NetworkPolicy"):
            selector = policy["spec"].get("podSelector") or {}
            if (selector.get("matchLabels") or {}).get("app.kubernetes.io/name") != target:
                continue
            for rule in policy["spec"].get("ingress") or []:
                if any(entry.get("port") == port for entry in rule.get("ports") or []):
                    sources.extend(rule.get("from") or [{"anyone": True}])
        assert sources, f"no ingress policy opens {target}:{port}"
        for source in sources:
            assert set(source) == {"podSelector"}, f"{target}:{port} admits {source}"
            assert source["podSelector"]["matchLabels"]["app.kubernetes.io/name"] in callers


def test_the_only_paths_between_imagesearch_pods_are_the_designed_ones(cluster: Cluster, pods: dict[str, Pod]) -> None:
    found = {
        (source.name, destination.name, port)
        for source in pods.values()
        for destination in pods.values()
        if source != destination
        for port in set(destination.ports.values())
        if cluster.allows(source, destination, port)
    }
    designed = {
        ("gateway", "embedder", 50052),
        ("gateway", "retriever", 50053),
        ("gateway", "redis", 6379),
        ("retriever", "redis", 6379),
        ("embedder", "triton", 8001),
    } | {(name, "jaeger", 4317) for name in pods if name != "jaeger"}
    assert found == designed


def test_every_imagesearch_pod_exports_traces_to_jaeger_and_nobody_outside_does(
    cluster: Cluster, pods: dict[str, Pod]
) -> None:
    everyone_but_jaeger = set(pods) - {"jaeger"}
    assert (
        _callers(cluster, pods, pods["jaeger"], 4317)
        == _admitted(cluster, pods, pods["jaeger"], 4317)
        == everyone_but_jaeger
    )


def test_every_pod_resolves_names_through_cluster_dns_only(cluster: Cluster, pods: dict[str, Pod]) -> None:
    for pod in pods.values():
        assert cluster.allows(pod, KUBE_DNS, 53, "UDP"), pod.name
        assert cluster.allows(pod, KUBE_DNS, 53, "TCP"), pod.name
        assert not cluster.allows(pod, PUBLIC_DNS, 53, "UDP"), pod.name


def test_no_imagesearch_pod_reaches_outside_the_cluster(cluster: Cluster, pods: dict[str, Pod]) -> None:
    for pod in pods.values():
        for port in (80, 443, 19530, 6379):
            assert not cluster.allows(pod, INTERNET, port), (pod.name, port)


def test_prometheus_scrapes_only_the_metrics_ports(cluster: Cluster, pods: dict[str, Pod]) -> None:
    assert cluster.allows(PROMETHEUS, pods["triton"], 8002)
    assert cluster.allows(PROMETHEUS, pods["jaeger"], 14269)
    assert cluster.allows(PROMETHEUS, MILVUS, 9091)
    for name, port in (("gateway", 9464), ("embedder", 9465), ("retriever", 9466)):
        assert cluster.allows(PROMETHEUS, pods[name], port), (name, port)
    for name, port in (
        ("triton", 8001),
        ("triton", 8000),
        ("jaeger", 4317),
        ("redis", 6379),
        ("embedder", 50052),
        ("retriever", 50053),
    ):
        assert not cluster.allows(PROMETHEUS, pods[name], port), (name, port)
    assert not cluster.allows(PROMETHEUS, MILVUS, 19530)


def test_only_the_retriever_reaches_milvus(cluster: Cluster, pods: dict[str, Pod]) -> None:
    # Milvus's own components (etcd, MinIO) may talk to it too; nobody else outside its namespace.
    expected = {"retriever", ETCD.name, MINIO.name}
    assert _callers(cluster, pods, MILVUS, 19530) == _admitted(cluster, pods, MILVUS, 19530) == expected


def test_milvus_keeps_talking_to_its_etcd_and_minio_which_nobody_else_reaches(
    cluster: Cluster, pods: dict[str, Pod]
) -> None:
    assert cluster.allows(MILVUS, ETCD, 2379)
    assert cluster.allows(MILVUS, MINIO, 9000)
    assert _callers(cluster, pods, ETCD, 2379) == _admitted(cluster, pods, ETCD, 2379) == {MILVUS.name, MINIO.name}
    assert _callers(cluster, pods, MINIO, 9000) == _admitted(cluster, pods, MINIO, 9000) == {MILVUS.name, ETCD.name}


def test_the_milvus_policies_stay_out_of_the_main_kustomization(
    rendered: tuple[dict[str, Any], ...], milvus_rendered: tuple[dict[str, Any], ...]
) -> None:
    # The main kustomization rewrites every namespace to imagesearch: Milvus's objects would land there.
    assert {doc["metadata"].get("namespace", NAMESPACE) for doc in rendered} == {NAMESPACE}
    assert {doc["metadata"]["namespace"] for doc in _of_kind(milvus_rendered, "NetworkPolicy")} == {MILVUS_NAMESPACE}


# --------------------------------------------------------------------------- monitoring and autoscaling

# The scrape jobs every rule, dashboard and autoscaler names (docs/operations.md, "Metrics").
SCRAPE_JOBS = {"gateway", "embedder", "retriever", "triton"}
RULE_FILES = ROOT / "deploy" / "prometheus" / "rules"


def _autoscaler_targets(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, str]]:
    """(autoscaler, Deployment it scales) for every HPA and ScaledObject, KEDA's defaults filled in."""
    targets = []
    for doc in _of_kind(docs, "HorizontalPodAutoscaler") + _of_kind(docs, "ScaledObject"):
        ref = doc["spec"]["scaleTargetRef"]
        assert ref.get("apiVersion", "apps/v1") == "apps/v1", doc["metadata"]["name"]
        assert ref.get("kind", "Deployment") == "Deployment", doc["metadata"]["name"]
        targets.append((f"{doc['kind']}/{doc['metadata']['name']}", ref["name"]))
    return targets


def test_every_scaled_object_scales_an_existing_deployment(rendered: tuple[dict[str, Any], ...]) -> None:
    deployments = {doc["metadata"]["name"] for doc in _of_kind(rendered, "Deployment")}
    scaled = {target for name, target in _autoscaler_targets(rendered) if name.startswith("ScaledObject/")}
    assert scaled == {"gateway", "embedder", "triton"}
    assert scaled <= deployments


def test_no_deployment_has_two_autoscalers(rendered: tuple[dict[str, Any], ...]) -> None:
    # KEDA makes an HPA of its own for each ScaledObject: any other one on the same Deployment
    # would fight it over the replica count.
    targets = [target for _, target in _autoscaler_targets(rendered)]
    assert sorted(targets) == sorted(set(targets)), _autoscaler_targets(rendered)
    assert _of_kind(rendered, "HorizontalPodAutoscaler") == []


def test_an_autoscaled_deployment_leaves_its_replica_count_to_the_autoscaler(
    rendered: tuple[dict[str, Any], ...],
) -> None:
    deployments = {doc["metadata"]["name"]: doc for doc in _of_kind(rendered, "Deployment")}
    for name, target in _autoscaler_targets(rendered):
        assert "replicas" not in deployments[target]["spec"], f"re-applying {target} would reset {name}"


def test_autoscalers_scale_up_fast_and_down_slowly_between_sane_bounds(rendered: tuple[dict[str, Any], ...]) -> None:
    for scaled in _of_kind(rendered, "ScaledObject"):
        name, spec = scaled["metadata"]["name"], scaled["spec"]
        assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"], name
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        up, down = (
            behavior["scaleUp"]["stabilizationWindowSeconds"],
            behavior["scaleDown"]["stabilizationWindowSeconds"],
        )
        assert up <= 60 < 300 <= down, name
        assert spec["minReplicaCount"] <= spec["fallback"]["replicas"] <= spec["maxReplicaCount"], name
    # Two replicas at least where a PodDisruptionBudget lets one go: a drain must leave one serving.
    budgets = {doc["metadata"]["name"] for doc in _of_kind(rendered, "PodDisruptionBudget")}
    for scaled in _of_kind(rendered, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] in budgets:
            assert scaled["spec"]["minReplicaCount"] >= 2, scaled["metadata"]["name"]


def test_autoscalers_read_their_own_deployments_series_as_a_per_pod_target(
    rendered: tuple[dict[str, Any], ...],
) -> None:
    for scaled in _of_kind(rendered, "ScaledObject"):
        target, namespace = scaled["spec"]["scaleTargetRef"]["name"], scaled["metadata"]["namespace"]
        prometheus = [trigger for trigger in scaled["spec"]["triggers"] if trigger["type"] == "prometheus"]
        assert len(prometheus) == 1, target
        trigger = prometheus[0]
        metadata = trigger["metadata"]
        assert f'job="{target}"' in metadata["query"], target
        assert f'namespace="{namespace}"' in metadata["query"], target
        assert metadata["serverAddress"].startswith("http"), target
        assert float(metadata["threshold"]) > 0, target
        # AverageValue (KEDA's default) divides the fleet's total by the threshold: a per-pod
        # target, and the only type fallback works with.
        assert trigger.get("metricType", "AverageValue") == "AverageValue", target
        # Lost targets are an error (then fallback), not a zero that scales the fleet down.
        assert metadata["ignoreNullValues"] == "false", target


def test_the_services_scale_on_calls_in_flight_and_triton_on_its_queue(rendered: tuple[dict[str, Any], ...]) -> None:
    queries = {
        scaled["spec"]["scaleTargetRef"]["name"]: trigger["metadata"]["query"]
        for scaled in _of_kind(rendered, "ScaledObject")
        for trigger in scaled["spec"]["triggers"]
        if trigger["type"] == "prometheus"
    }
    assert "imagesearch_calls_in_flight" in queries["gateway"]
    assert "imagesearch_calls_in_flight" in queries["embedder"]
    assert "nv_inference_queue_duration_us" in queries["triton"]
    assert "nv_inference_compute_infer_duration_us" in queries["triton"]


def test_every_pod_monitor_scrapes_a_declared_port_that_prometheus_may_reach(
    rendered: tuple[dict[str, Any], ...], pods: dict[str, Pod], cluster: Cluster
) -> None:
    jobs = set()
    for monitor in _of_kind(rendered, "PodMonitor"):
        name, spec = monitor["metadata"]["name"], monitor["spec"]
        # Without a namespaceSelector a PodMonitor looks in its own namespace, where the pods are.
        assert spec.get("namespaceSelector") in (None, {"matchNames": [NAMESPACE]}), name
        selected = [pod for pod in pods.values() if _selects(spec["selector"], pod.labels)]
        assert selected, f"PodMonitor {name} selects no pod"
        for endpoint in spec["podMetricsEndpoints"]:
            # The port named metrics in every pod (the serving ports are not for Prometheus).
            assert endpoint["port"] == "metrics", name
            for pod in selected:
                assert endpoint["port"] in pod.ports, f"{pod.name} declares no port {endpoint['port']}"
                assert cluster.allows(PROMETHEUS, pod, pod.ports[endpoint["port"]]), (name, pod.name)
        jobs |= {pod.labels[spec["jobLabel"]] for pod in selected}
    assert jobs == SCRAPE_JOBS


def test_the_prometheus_rule_holds_exactly_the_rule_files_groups(rendered: tuple[dict[str, Any], ...]) -> None:
    files = sorted(RULE_FILES.glob("*.yml"))
    assert files
    groups = [group for path in files for group in yaml.safe_load(path.read_text())["groups"]]
    rules = _of_kind(rendered, "PrometheusRule")
    assert len(rules) == 1
    assert rules[0]["spec"]["groups"] == groups


# --------------------------------------------------------------------------- credentials


def test_no_secret_or_configmap_holds_a_literal_credential(
    rendered: tuple[dict[str, Any], ...], milvus_rendered: tuple[dict[str, Any], ...]
) -> None:
    docs = rendered + milvus_rendered
    # Secrets are created from generated values at install time (README.md): any shipped one
    # would be a credential that every installation shares.
    assert _of_kind(docs, "Secret") == []
    for config in _of_kind(docs, "ConfigMap"):
        for key, value in (config.get("data") or {}).items():
            if not CREDENTIAL_LOCATION.search(key):
                assert not CREDENTIAL_NAME.search(key), f"{config['metadata']['name']}: {key}"
            assert not URL_USERINFO.search(str(value)), f"{config['metadata']['name']}: {key} has user:password@"
            assert not any(default in str(value).lower() for default in WELL_KNOWN_DEFAULTS), key


def test_no_container_sets_a_credential_as_a_literal_value(rendered: tuple[dict[str, Any], ...]) -> None:
    for name, template in _pod_templates(rendered).items():
        for where, container in _containers(template["spec"]):
            for var in _env(container):
                value = var.get("value")
                if value is None:
                    continue
                # Only references to other variables ($(NAME)) may carry a credential into a value.
                literal = re.sub(r"\$\([A-Z_][A-Z0-9_]*\)", "", value)
                if CREDENTIAL_NAME.search(var["name"]) and not CREDENTIAL_LOCATION.search(var["name"]):
                    assert literal == "", f"{name} {where}: {var['name']} is a literal"
                assert not URL_USERINFO.search(literal), f"{name} {where}: {var['name']} has user:password@"


def test_the_redis_password_comes_from_a_secret_and_redis_requires_it(rendered: tuple[dict[str, Any], ...]) -> None:
    redis = _container(rendered, "redis")
    password = _env_var(redis, "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert (password["name"], password["key"]) == ("imagesearch-redis", "password")
    assert not password.get("optional", False)  # fail closed: no Secret, no Redis
    args = list(redis.get("command") or []) + list(redis.get("args") or [])
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"


def test_the_gateway_builds_its_redis_url_from_the_secret(rendered: tuple[dict[str, Any], ...]) -> None:
    gateway = _container(rendered, "gateway")
    password = _env_var(gateway, "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert (password["name"], password["key"]) == ("imagesearch-redis", "password")
    assert not password.get("optional", False)
    url = _env_var(gateway, "REDIS_URL")["value"]
    assert url.startswith("redis://:$(REDIS_PASSWORD)@")
    names = [var["name"] for var in _env(gateway)]
    # A $(VAR) reference expands only to variables defined earlier in the list.
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")
    # A REDIS_URL in the ConfigMap would be a second, passwordless source of truth.
    assert "REDIS_URL" not in _one(rendered, "ConfigMap", "imagesearch-config")["data"]


def test_the_retriever_builds_its_redis_url_from_the_secret(rendered: tuple[dict[str, Any], ...]) -> None:
    retriever = _container(rendered, "retriever")
    password = _env_var(retriever, "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert (password["name"], password["key"]) == ("imagesearch-redis", "password")
    assert not password.get("optional", False)
    assert _env_var(retriever, "RETRIEVER_REDIS_URL")["value"].startswith("redis://:$(REDIS_PASSWORD)@")
    names = [var["name"] for var in _env(retriever)]
    assert names.index("REDIS_PASSWORD") < names.index("RETRIEVER_REDIS_URL")
    assert "RETRIEVER_REDIS_URL" not in _one(rendered, "ConfigMap", "imagesearch-config")["data"]


def test_the_milvus_token_comes_from_a_secret(rendered: tuple[dict[str, Any], ...]) -> None:
    token = _env_var(_container(rendered, "retriever"), "MILVUS_TOKEN")["valueFrom"]["secretKeyRef"]
    assert (token["name"], token["key"]) == ("imagesearch-milvus", "token")


def test_the_retriever_looks_for_milvus_in_its_own_namespace(rendered: tuple[dict[str, Any], ...]) -> None:
    data = _one(rendered, "ConfigMap", "imagesearch-config")["data"]
    assert data["MILVUS_URI"] == "http://milvus.milvus.svc.cluster.local:19530"


def test_the_readme_installs_milvus_apart_and_ships_no_default_credentials() -> None:
    readme = (K8S / "README.md").read_text()
    assert "-n milvus --create-namespace" in readme
    assert not any(default in readme.lower() for default in WELL_KNOWN_DEFAULTS)
    assert "openssl rand -hex" in readme
    assert "imagesearch-redis" in readme


# --------------------------------------------------------------------------- images


def test_the_kustomization_documents_digest_pinning_for_every_image(rendered: tuple[dict[str, Any], ...]) -> None:
    text = (K8S / "kustomization.yaml").read_text()
    assert "kustomize edit set image" in text
    assert "@sha256:<digest>" in text
    kustomization = yaml.safe_load(text)
    listed = {entry["name"] for entry in kustomization["images"]}
    for entry in kustomization["images"]:
        if "digest" in entry:  # once pinned, a real digest, never a placeholder
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry["digest"]), entry
    used = {
        container["image"]
        for template in _pod_templates(rendered).values()
        for _, container in _containers(template["spec"])
    }
    for image in used:
        if "@sha256:" not in image:
            name = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
            assert name in listed, f"{image} is neither pinned nor listed in kustomization.yaml images:"


# --------------------------------------------------------------------------- load balancing

# Who calls whom over gRPC: the ConfigMap key holding the target, the Service and its gRPC port.
GRPC_HOPS = {
    "EMBEDDER_ADDR": ("embedder", 50052),
    "RETRIEVER_ADDR": ("retriever", 50053),
    "TRITON_URL": ("triton", 8001),
}


@pytest.mark.parametrize("key", sorted(GRPC_HOPS))
def test_every_internal_grpc_hop_targets_every_pod_of_a_headless_service(
    rendered: tuple[dict[str, Any], ...], key: str
) -> None:
    # A ClusterIP balances connections, and the caller keeps one: the pods the autoscaler adds
    # would get nothing. A dns:/// target on a headless Service resolves to every ready pod, and
    # the client's round_robin policy (imagesearch.common.balancing) spreads the calls over them.
    name, port = GRPC_HOPS[key]
    target = _one(rendered, "ConfigMap", "imagesearch-config")["data"][key]
    assert target == f"dns:///{name}.{NAMESPACE}.svc.cluster.local:{port}"
    service = _one(rendered, "Service", name)
    assert service["spec"].get("clusterIP") == "None"
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"  # headless, not exposed outside
    assert not service["spec"].get("publishNotReadyAddresses", False)  # DNS names ready pods only
    assert port in [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
    # One name per Service: a twin under another name would be a second target to keep in step.
    assert [
        s["metadata"]["name"]
        for s in _of_kind(rendered, "Service")
        if s["spec"]["selector"] == service["spec"]["selector"]
    ] == [name]


def test_triton_closes_aged_connections_and_accepts_keepalives_like_our_servers(
    rendered: tuple[dict[str, Any], ...],
) -> None:
    from imagesearch.common import keepalive

    args = list(_container(rendered, "triton").get("args") or [])
    missing = [flag for flag in keepalive.triton_server_flags() if flag not in args]
    assert not missing, f"triton.yaml lacks {missing} (imagesearch.common.keepalive.triton_server_flags)"


# --------------------------------------------------------------------------- docker-compose


def _published(entry: str | dict[str, Any]) -> tuple[str, int]:
    """(host address, container port) of one compose `ports:` entry."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip", "")), int(str(entry["target"]).split("-")[0])
    spec = entry.split("/")[0]
    if spec.startswith("["):  # [::1]:8000:8000
        host, rest = spec[1:].split("]:", 1)
        return host, int(rest.split(":")[-1])
    parts = spec.split(":")
    return (parts[0] if len(parts) == 3 else ""), int(parts[-1].split("-")[0])


def test_compose_publishes_only_the_public_api_on_every_interface(compose: dict[str, Any]) -> None:
    everywhere = {
        (service, port)
        for service, definition in compose["services"].items()
        for host, port in map(_published, definition.get("ports") or [])
        if host not in ("127.0.0.1", "::1", "localhost")
    }
    assert everywhere == {("gateway", 50051)}


def test_compose_port_entries_are_read_in_every_syntax() -> None:
    assert _published("127.0.0.1:19530:19530") == ("127.0.0.1", 19530)
    assert _published("50051:50051") == ("", 50051)
    assert _published("8000") == ("", 8000)
    assert _published("[::1]:8001:8001/tcp") == ("::1", 8001)
    assert _published({"target": 9091, "published": 9091, "host_ip": "127.0.0.1"}) == ("127.0.0.1", 9091)


def test_compose_has_no_default_credentials() -> None:
    text = COMPOSE.read_text()
    assert "minioadmin" not in text.lower()
    uses: dict[str, set[tuple[str, str]]] = {}
    for name, operator, value in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?([^}]*)\}", text):
        if CREDENTIAL_NAME.search(name) or name.endswith("_USER"):
            uses.setdefault(name, set()).add((operator, value if operator.endswith("-") else ""))
    # An empty default only means "off" (Milvus authentication); a non-empty one is a shared password.
    assert {name: found for name, found in uses.items() if any(op.endswith("-") and v for op, v in found)} == {}
    # MinIO's and Redis's credentials must be supplied: compose stops, naming the variable, when one is unset.
    for required in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "REDIS_PASSWORD"):
        assert uses.get(required), f"{required} is not used"
        assert all(op == ":?" for op, _ in uses[required]), f"{required} must be ${{{required}:?...}}"
