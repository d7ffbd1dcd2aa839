"""The whole system on one machine: what `imagesearch up` runs, reusable by tests.

Start order follows the dependencies: Redis, Triton (started first, checked
later: it loads its model while Milvus boots), Milvus, then the embedder,
retriever and gateway as `python -m imagesearch_<name>` child processes,
each logging to `<runtime_dir>/logs/<name>.log`, and last a Prometheus that
scrapes them all (when one is installed). `start()` returns once every
service reports grpc.health.v1 SERVING, and on failure stops what it started
and raises `StackError` with the log tail of the part that failed.

`stop()` goes in reverse: Prometheus first (nothing depends on it), then the
gateway (SIGTERM lets it drain in-flight calls while its backends still
answer), retriever and embedder, then Triton, Milvus and Redis.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imagesearch.auth.local import ADMIN_KEY_FILE, KEYS_FILE, REDIS_URL_FILE, ensure_admin_key
from imagesearch.client.credentials import read_key_file
from imagesearch.common import probe
from imagesearch.common.files import write_private
from imagesearch.stack.milvus import LocalMilvus
from imagesearch.stack.ports import free_ports
from imagesearch.stack.process import Managed, log_tail, spawn
from imagesearch.stack.prometheus import (
    INSTALL_HINT,
    PROMETHEUS_BIN_VAR,
    RULES_GLOB,
    LocalPrometheus,
    PrometheusStartError,
    prometheus_binary,
)
from imagesearch.stack.redis import LocalRedis, redis_reachable, without_password
from imagesearch.stack.supervision import RestartPolicy, Restarts
from imagesearch.stack.triton import TritonServer

SERVICES = ("embedder", "retriever", "gateway")  # start order; stopped in reverse
# Which dependency to suspect, and show the log of, when a service never becomes SERVING.
_DEPENDENCY_OF = {"embedder": "triton", "retriever": "milvus", "gateway": "embedder/retriever"}
SCRAPE_INTERVAL = 5.0  # seconds: a graph that follows what a developer just did


_LOOPBACK = "127.0.0.1"
_ANY_ADDRESS = ("0.0.0.0", "::", "")  # listening everywhere: scraped over loopback


class StackError(RuntimeError):
    """The stack could not start; the message says which part and shows its log tail."""


@dataclass(frozen=True)
class StackConfig:
    repo_root: Path
    runtime_dir: Path
    host: str = "127.0.0.1"  # loopback: a dev stack is not for the network
    gateway_port: int = 50051
    embedder_port: int = 0  # 0 = a free port
    retriever_port: int = 0
    triton_grpc_port: int = 0
    milvus_port: int = 0
    redis_url: str | None = None  # an existing Redis to use; None = start a private one
    log_level: str | None = None  # None = the services' default (or LOG_LEVEL from `environ`)
    ready_timeout: float = 300.0  # first start unpacks Milvus and loads the model
    grace: float = 20.0  # per service, for draining on stop
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    model_repo: Path | None = None  # None = <repo_root>/model_repo
    restarts: RestartPolicy = field(default_factory=RestartPolicy)  # for parts that crash while running
    prometheus: bool = True  # scrape every part (when a prometheus binary is installed)

    @property
    def model_repository(self) -> Path:
        return self.model_repo or self.repo_root / "model_repo"

    @property
    def log_dir(self) -> Path:
        return self.runtime_dir / "logs"


@dataclass
class ServiceProcess:
    name: str
    port: int
    host: str
    log_path: Path
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def module(self) -> str:
        return f"imagesearch_{self.name}"

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None


def port_available(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class LocalStack(Managed):
    """Start/stop the local stack; `progress` receives one-line status messages."""

    def __init__(self, config: StackConfig, progress: Callable[[str], None] = lambda _msg: None) -> None:
        self.config = config
        self._progress = progress
        self.redis: LocalRedis | None = None
        self.redis_url: str = ""
        self.triton: TritonServer | None = None
        self.milvus: LocalMilvus | None = None
        self.prometheus: LocalPrometheus | None = None
        self.services: dict[str, ServiceProcess] = {}
        self._restarts: dict[str, Restarts] = {}
        self.keys_file = config.runtime_dir / KEYS_FILE
        self.admin_key_file = config.runtime_dir / ADMIN_KEY_FILE

    # --- start ---------------------------------------------------------------

    def start(self) -> LocalStack:
        try:
            self._check_gateway_port()
            self._start_redis()
            self._start_triton()
            self._start_milvus()
            self._wait_triton()
            self._ensure_keys()
            self._start_services()
            self._wait_serving()
            self._start_prometheus()
        except BaseException:
            self.stop()
            raise
        return self

    def _check_gateway_port(self) -> None:
        cfg = self.config
        if cfg.gateway_port and not port_available(cfg.host, cfg.gateway_port):
            raise StackError(
                f"gateway port {cfg.host}:{cfg.gateway_port} is already in use "
                "(another `imagesearch up`?); stop it or choose another port with --gateway-port"
            )

    def _start_redis(self) -> None:
        self._choose_redis()
        # For `imagesearch keys list` (when each key was last used); it holds the password: 0600.
        write_private(self.config.runtime_dir / REDIS_URL_FILE, self.redis_url + "\n")

    def _choose_redis(self) -> None:
        url = self.config.redis_url
        if url and redis_reachable(url):
            self.redis_url = url
            self._progress(f"redis: using {without_password(url)}")
            return
        if url:
            self._progress(f"redis: {without_password(url)} does not answer; starting a private redis-server instead")
        self._progress("redis: starting")
        # A password even on loopback: another local user must not read or poison cached answers.
        self.redis = LocalRedis(dir=self.config.runtime_dir / "redis", password=secrets.token_hex(16)).start()
        self.redis_url = self.redis.url

    def _start_triton(self) -> None:
        cfg = self.config
        if not cfg.model_repository.is_dir():
            raise StackError(f"model repository {cfg.model_repository} not found")
        self._progress("triton: starting (loading the model)")
        self.triton = TritonServer(
            model_repository=cfg.model_repository,
            runtime_dir=cfg.runtime_dir / "triton",
            grpc_port=cfg.triton_grpc_port,
        )
        self.triton.start()

    def _start_milvus(self) -> None:
        # Data lives under the runtime dir, so the catalog survives restarts.
        self._progress("milvus: starting (the first start unpacks it, which takes a while)")
        self.milvus = LocalMilvus(base_dir=self.config.runtime_dir / "milvus", port=self.config.milvus_port)
        self.milvus.start()

    def _wait_triton(self) -> None:
        assert self.triton is not None
        self._progress("triton: waiting until ready")
        self.triton.wait_ready(timeout=self.config.ready_timeout)

    def _ensure_keys(self) -> None:
        """The gateway authenticates every call: the stack keeps its own admin key for the CLI."""
        self.keys_file, self.admin_key_file, created = ensure_admin_key(self.config.runtime_dir)
        if created:
            self._progress(f"auth: new admin key in {self.admin_key_file} (the CLI finds it there)")

    @property
    def admin_key(self) -> str:
        return read_key_file(self.admin_key_file)

    def _start_services(self) -> None:
        cfg = self.config
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        ports = {"embedder": cfg.embedder_port, "retriever": cfg.retriever_port, "gateway": cfg.gateway_port}
        fixed = set(ports.values())
        # Picked together so two services never get the same number.
        spare = iter(p for p in free_ports(2 * len(SERVICES) + 1, cfg.host) if p not in fixed)
        for name in SERVICES:
            port = ports[name] or next(spare)
            self.services[name] = ServiceProcess(name, port, cfg.host, cfg.log_dir / f"{name}.log", next(spare))
        for name in SERVICES:
            self._progress(f"{name}: starting on {self.services[name].address}")
            self._spawn(self.services[name])

    def service_env(self, name: str) -> dict[str, str]:
        """The child's environment: ours (OTEL_* and the like pass through) plus its wiring."""
        cfg = self.config
        env = dict(cfg.environ)
        env.update(PYTHONUNBUFFERED="1", OTEL_SERVICE_NAME=f"imagesearch-{name}")
        env[f"{name.upper()}_METRICS_PORT"] = str(self.services[name].metrics_port)
        if cfg.log_level:
            env["LOG_LEVEL"] = cfg.log_level
        svc = self.services
        if name == "embedder":
            assert self.triton is not None
            env.update(EMBEDDER_HOST=cfg.host, EMBEDDER_PORT=str(svc[name].port), TRITON_URL=self.triton.grpc_url)
        elif name == "retriever":
            assert self.milvus is not None
            env.update(RETRIEVER_HOST=cfg.host, RETRIEVER_PORT=str(svc[name].port), MILVUS_URI=self.milvus.uri)
            # The stack's Redis also holds the retriever's write horizons, as in a deployment of
            # several replicas: the same code path in development as in production.
            env.update(RETRIEVER_REDIS_URL=self.redis_url)
        else:
            env.update(
                GATEWAY_HOST=cfg.host,
                GATEWAY_PORT=str(svc[name].port),
                GATEWAY_API_KEYS_FILE=str(self.keys_file),
                # Loopback only: reflection helps a developer (grpcurl list) and tells no stranger.
                GATEWAY_REFLECTION="true",
                REDIS_URL=self.redis_url,
                EMBEDDER_ADDR=svc["embedder"].address,
                RETRIEVER_ADDR=svc["retriever"].address,
            )
        return env

    def _spawn(self, svc: ServiceProcess) -> None:
        with open(svc.log_path, "wb") as log:  # a fresh log per run: the tail is about this run
            svc.proc = spawn(
                [sys.executable, "-m", svc.module], log, cwd=self.config.repo_root, env=self.service_env(svc.name)
            )

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + self.config.ready_timeout
        waiting = set(SERVICES)
        while waiting:
            for name in sorted(waiting):
                svc = self.services[name]
                code = svc.exited()
                if code is not None:
                    raise StackError(self._failure(name, f"{name} exited with code {code} during start-up"))
                if probe.status(svc.address) == probe.SERVING:
                    self._progress(f"{name}: SERVING")
                    waiting.discard(name)
            if waiting and time.monotonic() > deadline:
                name = sorted(waiting, key=SERVICES.index)[0]  # the most upstream one is the likely cause
                raise StackError(
                    self._failure(
                        name,
                        f"{name} did not become SERVING within {self.config.ready_timeout:.0f} s "
                        f"(it waits for {_DEPENDENCY_OF[name]})",
                    )
                )
            if waiting:
                time.sleep(0.5)

    def _start_prometheus(self) -> None:
        """Last: it scrapes the metrics ports the services were given. Without a Prometheus binary
        the stack runs all the same (the services' /metrics still answer), saying so once."""
        cfg = self.config
        if not cfg.prometheus:
            self._progress("prometheus: off")
            return
        binary = prometheus_binary(cfg.environ)
        if binary is None:
            configured = cfg.environ.get(PROMETHEUS_BIN_VAR)
            why = (
                f"{PROMETHEUS_BIN_VAR}={configured} is no executable"
                if configured
                else f"not installed: `{INSTALL_HINT}`, or set {PROMETHEUS_BIN_VAR}"
            )
            self._progress(f"prometheus: not running ({why}); the services' /metrics still answer")
            return
        self._progress("prometheus: starting")
        prometheus = LocalPrometheus(
            cfg.runtime_dir / "prometheus",
            self.scrape_jobs(),
            rule_files=[str(cfg.repo_root / RULES_GLOB)],
            scrape_interval=SCRAPE_INTERVAL,
            binary=binary,
        )
        try:
            self.prometheus = prometheus.start()
        except PrometheusStartError as err:
            raise StackError(f"{err}\n(`imagesearch up --no-prometheus` runs the stack without it)") from None

    def scrape_jobs(self) -> dict[str, list[str]]:
        """Prometheus's targets, by the job names the dashboards and alert rules use."""
        host = _LOOPBACK if self.config.host in _ANY_ADDRESS else self.config.host
        jobs = {name: [f"{host}:{svc.metrics_port}"] for name, svc in self.services.items() if svc.metrics_port}
        if self.triton is not None and self.triton.metrics_port:
            jobs["triton"] = [f"{_LOOPBACK}:{self.triton.metrics_port}"]
        if self.milvus is not None and self.milvus.health_port:  # Milvus serves /metrics beside /healthz
            jobs["milvus"] = [f"{_LOOPBACK}:{self.milvus.health_port}"]
        return jobs

    def _failure(self, name: str, headline: str) -> str:
        svc = self.services[name]
        tail = log_tail(svc.log_path, 25)
        message = f"{headline}\n--- last lines of {svc.log_path} ---\n{tail or '(empty)'}"
        dependency_log = self._dependency_log(name)
        if dependency_log is not None:
            message += f"\n(see also {dependency_log})"
        return message

    def _dependency_log(self, name: str) -> Path | None:
        if name == "embedder" and self.triton is not None:
            return getattr(self.triton, "log_path", None)
        if name == "retriever" and self.milvus is not None:
            return self.milvus.log_path
        return None

    # --- while running ---------------------------------------------------------

    @property
    def gateway_address(self) -> str:
        return self.services["gateway"].address

    def check(self) -> str | None:
        """None while every child runs; else what died first, with its log tail."""
        for _name, dead, _restart in self._parts():
            if dead is not None:
                return dead
        return None

    def supervise(self, now: float | None = None) -> str | None:
        """Restart what has died, after a back-off (config.restarts), saying so; the rest keeps
        running. None while all is well or being repaired; the failure, with its log tail, when a
        part keeps crashing (the caller then stops the stack)."""
        now = time.monotonic() if now is None else now
        for name, dead, restart in self._parts():
            if dead is None:
                continue
            state = self._restarts.setdefault(name, Restarts())
            if state.due is None:
                delay = self.config.restarts.delay(state.history, now)
                if delay is None:
                    policy = self.config.restarts
                    return (
                        f"{name} keeps crashing ({policy.max_restarts} restarts within "
                        f"{policy.window_seconds / 60:.0f} min); stopping the stack\n{dead}"
                    )
                state.due = now + delay
                self._progress(f"{dead.splitlines()[0]}; restarting it in {delay:.0f} s")
            elif now >= state.due:
                state.due = None
                state.history.append(now)
                try:
                    restart()
                    self._progress(f"{name}: restarted")
                except Exception as err:  # noqa: BLE001 - it is still down: the next round counts it
                    self._progress(f"{name}: restart failed: {err}")
        return None

    def _parts(self) -> list[tuple[str, str | None, Callable[[], None]]]:
        """(name, what happened to it if it died, how to start it again) for every child. Services
        first: their restarts take a second, Milvus's half a minute, and a service restarted before
        its dependency simply waits for it (NOT_SERVING until then)."""
        parts: list[tuple[str, str | None, Callable[[], None]]] = []
        for name in SERVICES:
            svc = self.services.get(name)
            if svc is None:
                continue
            code = svc.exited()
            failure = None if code is None else self._failure(name, f"{name} exited unexpectedly with code {code}")
            parts.append((name, failure, functools.partial(self._spawn, svc)))
        for label, part, restart in (
            ("redis", self.redis, self._restart_redis),
            ("triton", self.triton, self._restart_triton),
            ("milvus", self.milvus, self._restart_milvus),
            ("prometheus", self.prometheus, self._restart_prometheus),
        ):
            if part is not None and getattr(part, "running", True) is False:
                log = getattr(part, "log_path", None)
                tail = log_tail(log, 25) if log else ""
                dead = f"{label} exited unexpectedly" + (f"\n--- last lines of {log} ---\n{tail}" if tail else "")
                parts.append((label, dead, restart))
            elif part is not None:
                parts.append((label, None, restart))
        return parts

    # Restarts keep every address: the other parts are configured with it.

    def _restart_redis(self) -> None:
        assert self.redis is not None
        old = self.redis
        self.redis = LocalRedis(port=old.port, dir=self.config.runtime_dir / "redis", password=old.password).start()

    def _restart_triton(self) -> None:
        old, cfg = self.triton, self.config
        assert old is not None
        old.kill()  # what the crash left: its Python-backend stubs and their shared memory
        self.triton = TritonServer(
            model_repository=cfg.model_repository,
            runtime_dir=cfg.runtime_dir / "triton",
            grpc_port=old.grpc_port,
            http_port=old.http_port,
            metrics_port=old.metrics_port,
        )
        self.triton.start()
        self.triton.wait_ready(timeout=cfg.ready_timeout)

    def _restart_milvus(self) -> None:
        assert self.milvus is not None
        self.milvus = LocalMilvus(base_dir=self.milvus.base_dir, port=self.milvus.port)
        self.milvus.start()
        if self.prometheus is not None:  # its metrics port is picked afresh
            self.prometheus.reconfigure(self.scrape_jobs())

    def _restart_prometheus(self) -> None:
        old = self.prometheus
        assert old is not None
        self.prometheus = LocalPrometheus(
            old.dir,
            self.scrape_jobs(),
            rule_files=old.rule_files,
            scrape_interval=old.scrape_interval,
            port=old.port,
            binary=prometheus_binary(self.config.environ),
        ).start()

    def endpoints(self) -> list[tuple[str, str, str]]:
        """(part, address, note) for the start-up banner."""
        rows: list[tuple[str, str, str]] = []
        for name in reversed(SERVICES):
            svc = self.services.get(name)
            if svc is not None:
                rows.append((name, svc.address, str(svc.log_path)))
        if self.triton is not None:
            rows.append(("triton", self.triton.grpc_url, str(getattr(self.triton, "log_path", "") or "")))
        if self.milvus is not None:
            rows.append(("milvus", self.milvus.uri, f"data {self.milvus.base_dir}"))
        if self.redis_url:
            note = "private, password-protected, no persistence" if self.redis else "external (REDIS_URL)"
            rows.append(("redis", without_password(self.redis_url), note))
        if self.services:
            gateway, *others = (self.services[n] for n in reversed(SERVICES) if n in self.services)
            rows.append(
                (
                    "metrics",
                    f"http://{gateway.host}:{gateway.metrics_port}/metrics",
                    ", ".join(f"{svc.name} :{svc.metrics_port}" for svc in others),
                )
            )
        if self.prometheus is not None:
            rows.append(("prometheus", self.prometheus.url, str(self.prometheus.log_path)))
        rows.append(("api key", str(self.admin_key_file), "admin, every catalog: `imagesearch keys` makes others"))
        rows.append(("logs", str(self.config.log_dir), ""))
        return rows

    # --- stop ------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything that was started, in reverse order; safe to call twice.

        A second Ctrl-C while draining skips the remaining grace periods.
        """
        if self.prometheus is not None:
            self._progress("prometheus: stopping")
            with contextlib.suppress(KeyboardInterrupt):  # it has had its SIGTERM; it dies with us
                self.prometheus.stop()
            self.prometheus = None
        hurry = False
        for name in reversed(SERVICES):
            svc = self.services.get(name)
            if svc is None or svc.proc is None:
                continue
            self._progress(f"{name}: stopping")
            try:
                _terminate(svc.proc, 0.0 if hurry else self.config.grace + 5.0)
            except KeyboardInterrupt:
                hurry = True
                _terminate(svc.proc, 0.0)
            svc.proc = None
        for label, part in (("triton", self.triton), ("milvus", self.milvus), ("redis", self.redis)):
            if part is None:
                continue
            self._progress(f"{label}: stopping")
            try:
                part.stop()
            except KeyboardInterrupt:
                continue  # their own stop() kills what is left on the next call / at exit
            except Exception as err:  # noqa: BLE001 - keep stopping the rest
                self._progress(f"{label}: stop failed: {err}")
        self.triton = self.milvus = self.redis = None


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM (a graceful drain), then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    if grace > 0:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait()


def default_runtime_dir(repo: Path) -> Path:
    """Where `imagesearch up` keeps data, logs and keys unless told otherwise (the CLI looks here for
    the stack's admin key and key file)."""
    return repo / "var"


def find_repo_root(explicit: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The checkout to run from: the folder holding pyproject.toml and model_repo/.

    Looked for in this order: `explicit` (--repo), $IMAGESEARCH_HOME, the
    folders above this module (an editable install), the folders above the
    working directory.
    """
    env = os.environ if environ is None else environ
    for given, origin in ((explicit, "--repo"), (env.get("IMAGESEARCH_HOME") or None, "IMAGESEARCH_HOME")):
        if given:
            root = Path(given).expanduser().resolve()
            if not _is_repo_root(root):
                raise StackError(f"{origin}={given}: no pyproject.toml and model_repo/ there")
            return root
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if _is_repo_root(folder):
                return folder
    raise StackError(
        "cannot find the imagesearch checkout (a folder with pyproject.toml and model_repo/); "
        "run from inside it, or pass --repo / set IMAGESEARCH_HOME"
    )


def _is_repo_root(folder: Path) -> bool:
    return (folder / "pyproject.toml").is_file() and (folder / "model_repo").is_dir()
