"""LocalStack wiring with stand-ins for Triton, Milvus and the services (no real servers)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from support import REPO, write

from imagesearch.auth.keys import KeyFile
from imagesearch.common import probe
from imagesearch.stack.supervision import RestartPolicy

RESTARTS = RestartPolicy(first_delay=0.5, max_delay=1.0, max_restarts=2)

# --- LocalStack wiring, with stand-ins for Triton, Milvus and the services ----------------
# The real `up` against real servers is covered by the end-to-end tests; here the
# point is the wiring: environment, ports, health wait, failure report, stop order.

FAKE_SERVICE = """
import json, os, signal, sys, threading, time
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

name = os.path.basename(os.path.dirname(os.path.abspath(__file__))).removeprefix("imagesearch_")
if os.environ.get("FAKE_CRASH") == name:
    print("boom: cannot start", flush=True)
    sys.exit(3)
keys = ("OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "LOG_LEVEL", "TRITON_URL", "MILVUS_URI", "REDIS_URL",
        "EMBEDDER_ADDR", "RETRIEVER_ADDR", "EMBEDDER_PORT", "RETRIEVER_PORT", "GATEWAY_PORT", "GATEWAY_API_KEYS_FILE", "GATEWAY_REFLECTION",
        "RETRIEVER_REDIS_URL")
print("ENV " + json.dumps({k: os.environ[k] for k in keys if k in os.environ}), flush=True)
port = os.environ[name.upper() + "_PORT"]
servicer = health.HealthServicer()
servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port("127.0.0.1:" + port)
server.start()
threading.Timer(0.3, servicer.set, ("", health_pb2.HealthCheckResponse.SERVING)).start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
print("SIGTERM: draining", flush=True)
server.stop(1).wait()
"""


class StandIn:
    """Plays TritonServer / LocalMilvus / LocalPrometheus: records the order of start and stop."""

    def __init__(self, label: str, events: list[str], **_: object) -> None:
        self.label, self.events, self.running = label, events, False
        self.grpc_url, self.uri, self.base_dir, self.log_path = f"{label}:1", f"http://{label}:2", Path("/x"), None
        self.url, self.metrics_port, self.health_port = f"http://{label}:3", 0, 0

    def start(self) -> StandIn:
        self.events.append(f"start {self.label}")
        self.running = True
        return self

    def wait_ready(self, timeout: float) -> StandIn:
        return self

    def stop(self) -> None:
        self.events.append(f"stop {self.label}")
        self.running = False


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from imagesearch.stack import local

    pkgs = tmp_path / "fakepkgs"
    for name in ("embedder", "retriever", "gateway"):
        write(pkgs / f"imagesearch_{name}" / "__init__.py", "")
        write(pkgs / f"imagesearch_{name}" / "__main__.py", FAKE_SERVICE)
    events: list[str] = []
    monkeypatch.setattr(local, "TritonServer", lambda **kw: StandIn("triton", events))
    monkeypatch.setattr(local, "LocalMilvus", lambda **kw: StandIn("milvus", events))
    scraped: list[dict[str, list[str]]] = []

    def prometheus(_dir: Path, jobs: dict[str, list[str]], **kw: object) -> StandIn:
        scraped.append(jobs)
        return StandIn("prometheus", events)

    monkeypatch.setattr(local, "LocalPrometheus", prometheus)
    monkeypatch.setattr(local, "prometheus_binary", lambda environ: "/usr/bin/prometheus")
    repo = tmp_path / "repo"
    (repo / "model_repo").mkdir(parents=True)
    write(repo / "pyproject.toml", "")
    # Path entries come before the editable install's finder, so the stand-ins win.
    environ = {**os.environ, "PYTHONPATH": str(pkgs), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}

    def config(**overrides: object) -> local.StackConfig:
        base = {
            "repo_root": repo,
            "runtime_dir": tmp_path / "var",
            "gateway_port": 0,
            "log_level": "DEBUG",
            "ready_timeout": 30,
            "grace": 5,
            "environ": environ,
        }
        base.update(overrides)
        return local.StackConfig(**base)  # type: ignore[arg-type]

    return local, config, events, scraped


def service_env(log: Path) -> dict[str, str]:
    line = next(ln for ln in log.read_text().splitlines() if ln.startswith("ENV "))
    return json.loads(line[4:])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")
def test_local_stack_wires_starts_watches_and_stops_in_order(stand_ins) -> None:  # type: ignore[no-untyped-def]
    local, config, events, scraped = stand_ins
    messages: list[str] = []
    stack = local.LocalStack(config(restarts=RESTARTS), progress=messages.append)
    stack.start()
    try:
        for name in ("embedder", "retriever", "gateway"):
            assert probe.status(stack.services[name].address) == probe.SERVING
        logs = stack.config.log_dir
        embedder, retriever, gateway = (service_env(logs / f"{n}.log") for n in ("embedder", "retriever", "gateway"))
        assert embedder["OTEL_SERVICE_NAME"] == "imagesearch-embedder" and embedder["TRITON_URL"] == "triton:1"
        assert (
            retriever["OTEL_SERVICE_NAME"] == "imagesearch-retriever" and retriever["MILVUS_URI"] == "http://milvus:2"
        )
        assert gateway["EMBEDDER_ADDR"] == stack.services["embedder"].address
        assert gateway["RETRIEVER_ADDR"] == stack.services["retriever"].address
        assert gateway["REDIS_URL"] == stack.redis_url and stack.redis is not None
        assert retriever["RETRIEVER_REDIS_URL"] == stack.redis_url  # its write horizons
        assert all(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317" and env["LOG_LEVEL"] == "DEBUG"
            for env in (embedder, retriever, gateway)
        )
        parts = [row[0] for row in stack.endpoints()]
        assert parts == [
            *("gateway", "retriever", "embedder", "triton", "milvus", "redis", "metrics", "prometheus"),
            *("api key", "logs"),
        ]
        # Prometheus, started last, scrapes each service's metrics port under the job name of its own.
        assert scraped == [
            {n: [f"127.0.0.1:{stack.services[n].metrics_port}"] for n in ("embedder", "retriever", "gateway")}
        ]
        assert ("prometheus", "http://prometheus:3") in [row[:2] for row in stack.endpoints()]
        # The gateway authenticates with the stack's own key file, which holds its admin key.
        assert gateway["GATEWAY_API_KEYS_FILE"] == str(stack.keys_file)
        assert gateway["GATEWAY_REFLECTION"] == "true"  # loopback only: a developer's grpcurl list
        assert KeyFile(stack.keys_file).load().find(stack.admin_key)[0] is not None
        assert stack.admin_key_file.stat().st_mode & 0o777 == 0o600
        assert stack.check() is None

        stack.services["retriever"].proc.kill()
        stack.services["retriever"].proc.wait()
        problem = stack.check()
        assert problem is not None and problem.startswith("retriever exited unexpectedly")
        assert "ENV {" in problem  # the log tail comes with it

        # Supervised: restarted on its address after the back-off, the others untouched.
        gateway_pid = stack.services["gateway"].proc.pid
        assert stack.supervise(now=100.0) is None  # noticed: due in first_delay
        assert any(m.startswith("retriever exited unexpectedly") and "restarting it in" in m for m in messages)
        assert stack.supervise(now=100.0 + RESTARTS.first_delay) is None
        assert "retriever: restarted" in messages
        deadline = time.monotonic() + 20
        while probe.status(stack.services["retriever"].address) != probe.SERVING:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert stack.services["gateway"].proc.pid == gateway_pid and stack.check() is None

        # A part that keeps crashing ends the run, with its log.
        now = 200.0
        for _ in range(RESTARTS.max_restarts - 1):  # one restart happened above
            stack.services["retriever"].proc.kill()
            stack.services["retriever"].proc.wait()
            assert stack.supervise(now=now) is None
            now += RESTARTS.max_delay
            assert stack.supervise(now=now) is None
        stack.services["retriever"].proc.kill()
        stack.services["retriever"].proc.wait()
        problem = stack.supervise(now=now)
        assert problem is not None and problem.startswith("retriever keeps crashing (2 restarts within 10 min)")
    finally:
        stack.stop()
    # Services got SIGTERM (a graceful drain), then the dependencies stopped, in reverse order.
    assert "SIGTERM: draining" in (stack.config.log_dir / "gateway.log").read_text()
    assert "SIGTERM: draining" in (stack.config.log_dir / "embedder.log").read_text()
    assert events == [
        "start triton",
        "start milvus",
        "start prometheus",
        "stop prometheus",
        "stop triton",
        "stop milvus",
    ]
    stopping = [m for m in messages if m.endswith(": stopping")]
    parts = ("prometheus", "gateway", "retriever", "embedder", "triton", "milvus", "redis")
    assert stopping == [f"{n}: stopping" for n in parts]
    assert stack.redis is None
    stack.stop()  # idempotent


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")
def test_local_stack_start_failure_names_the_part_and_cleans_up(stand_ins) -> None:  # type: ignore[no-untyped-def]
    local, config, events, _ = stand_ins
    cfg = config(redis_url="redis://127.0.0.1:1/0")  # unreachable: a private one is started instead
    cfg.environ["FAKE_CRASH"] = "retriever"  # type: ignore[index]
    stack = local.LocalStack(cfg)
    with pytest.raises(local.StackError) as err:
        stack.start()
    text = str(err.value)
    assert text.startswith("retriever exited with code 3 during start-up")
    assert "boom: cannot start" in text and "retriever.log" in text
    assert events[-2:] == ["stop triton", "stop milvus"]
    assert all(svc.proc is None for svc in stack.services.values())


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")
def test_without_prometheus_installed_the_stack_runs_and_says_how_to_install_it(
    stand_ins, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    local, config, events, scraped = stand_ins
    monkeypatch.setattr(local, "prometheus_binary", lambda environ: None)
    messages: list[str] = []
    stack = local.LocalStack(config(), progress=messages.append)
    stack.start()
    try:
        assert probe.status(stack.gateway_address) == probe.SERVING
        said = [m for m in messages if m.startswith("prometheus:")]
        assert said == [
            "prometheus: not running (not installed: `apt-get install prometheus`, or set PROMETHEUS_BIN); "
            "the services' /metrics still answer"
        ]
        assert "prometheus" not in [row[0] for row in stack.endpoints()] and scraped == []
    finally:
        stack.stop()
    assert "start prometheus" not in events


def test_local_stack_refuses_a_busy_gateway_port(stand_ins) -> None:  # type: ignore[no-untyped-def]
    import socket

    local, config, events, _ = stand_ins
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        stack = local.LocalStack(config(gateway_port=sock.getsockname()[1]))
        with pytest.raises(local.StackError, match="already in use"):
            stack.start()
    assert events == []  # nothing was started


def test_find_repo_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagesearch.stack.local import StackError, find_repo_root

    assert find_repo_root(environ={}) == REPO
    assert find_repo_root(REPO, environ={}) == REPO
    assert find_repo_root(environ={"IMAGESEARCH_HOME": str(REPO)}) == REPO
    with pytest.raises(StackError, match=r"IMAGESEARCH_HOME=.*no pyproject\.toml and model_repo"):
        find_repo_root(environ={"IMAGESEARCH_HOME": str(tmp_path)})


def test_restarts_back_off_doubling_and_a_crash_loop_gives_up() -> None:
    policy = RestartPolicy(first_delay=1.0, max_delay=30.0, max_restarts=5, window_seconds=600.0)
    assert policy.delay([], now=0.0) == 1.0
    assert policy.delay([0.0, 10.0], now=20.0) == 4.0
    assert policy.delay([0.0, 1, 2, 3], now=4.0) == 16.0
    assert policy.delay([0.0, 1, 2, 3, 4], now=5.0) is None  # crash-looping
    assert policy.delay([0.0, 1, 2, 3, 4], now=700.0) == 1.0  # long ago: a fresh start
