"""A private Prometheus for the local stack and the tests.

`prometheus` (Debian's package, or any build on PATH or at $PROMETHEUS_BIN) as a child process
on a free loopback port, scraping the parts of the stack: the services' metrics ports (jobs
`gateway`, `embedder`, `retriever`), Triton's (`triton`) and Milvus's (`milvus`), the job names
the deployed PodMonitors and the alert rules use too. Its configuration (`prometheus.yml`), log and
data live in the folder it is given, and it loads the repository's alert and recording rules
(`deploy/prometheus/rules/*.yml`), so what fires in production can be seen firing locally.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from imagesearch.stack.ports import start_on_a_port
from imagesearch.stack.process import Managed, bound_port, log_tail, spawn

PROMETHEUS_BIN_VAR = "PROMETHEUS_BIN"
INSTALL_HINT = "apt-get install prometheus"
RULES_GLOB = "deploy/prometheus/rules/*.yml"  # relative to the repository root
_CONFIG_NAME = "prometheus.yml"
_LOG_NAME = "prometheus.log"
_RETENTION = "7d"  # a developer's stack: enough to look back on yesterday, never a full disk


class PrometheusStartError(RuntimeError):
    """Prometheus did not come up; the message carries its log tail."""


class PrometheusNotInstalled(PrometheusStartError):
    """No Prometheus binary where we looked; the message says how to install one."""


def prometheus_binary(environ: Mapping[str, str] | None = None) -> str | None:
    """The Prometheus executable: $PROMETHEUS_BIN (a path or a name on PATH), else `prometheus` on
    PATH; None when there is none."""
    env = os.environ if environ is None else environ
    return shutil.which(env.get(PROMETHEUS_BIN_VAR) or "prometheus")


def _duration(seconds: float) -> str:
    """Seconds as a Prometheus duration ("5s", "1500ms")."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"a scrape interval must be positive, not {seconds}")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def render_config(jobs: Mapping[str, Sequence[str]], scrape_interval: float, rule_files: Sequence[str]) -> str:
    """prometheus.yml: one static job per entry of `jobs` (name -> host:port targets, /metrics).

    Scalars are written as JSON strings, which YAML reads as the same double-quoted strings.
    """
    interval = _duration(scrape_interval)
    lines = [
        "# Written by imagesearch (stack/prometheus.py) at every start: edits here are lost.",
        "global:",
        f"  scrape_interval: {interval}",
        f"  scrape_timeout: {interval}",  # never longer than the interval, which Prometheus refuses
        f"  evaluation_interval: {interval}",
        "rule_files:" + ("" if rule_files else " []"),
        *(f"  - {json.dumps(pattern)}" for pattern in rule_files),
        "scrape_configs:" + ("" if jobs else " []"),
    ]
    for name, targets in jobs.items():
        lines += [
            f"  - job_name: {json.dumps(name)}",
            "    static_configs:",
            "      - targets: [" + ", ".join(json.dumps(target) for target in targets) + "]",
        ]
    return "\n".join(lines) + "\n"


class LocalPrometheus(Managed):
    """`prometheus` as a child process on 127.0.0.1; `start()` returns once `/-/ready` answers.

    `jobs` maps each scrape job to its targets (`host:port`, path `/metrics`); `rule_files` are
    globs (one that matches nothing is fine). `port=0` picks a free port. Everything lives in
    `dir`: prometheus.yml, prometheus.log and the data (kept across restarts).
    """

    def __init__(
        self,
        dir: str | Path,
        jobs: Mapping[str, Sequence[str]],
        *,
        rule_files: Sequence[str] = (),
        scrape_interval: float = 5.0,
        port: int = 0,
        binary: str | None = None,
    ) -> None:
        self.dir = Path(dir).resolve()
        self.jobs = {name: list(targets) for name, targets in jobs.items()}
        self.rule_files = list(rule_files)
        self.scrape_interval = scrape_interval
        self._requested_port = port
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{bound_port(self, self.port)}"

    @property
    def config_path(self) -> Path:
        return self.dir / _CONFIG_NAME

    @property
    def log_path(self) -> Path:
        return self.dir / _LOG_NAME

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> LocalPrometheus:
        if self.running:
            return self
        binary = shutil.which(self._binary) if self._binary else prometheus_binary()
        if binary is None:
            wanted = self._binary or os.environ.get(PROMETHEUS_BIN_VAR) or "prometheus"
            raise PrometheusNotInstalled(
                f"{wanted} not found; install it (`{INSTALL_HINT}`) or set {PROMETHEUS_BIN_VAR} to its path"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        start_on_a_port(
            self._requested_port,
            lambda port: self._launch(binary, port),
            lambda: self._wait_ready(timeout),
            self._terminate,
            PrometheusStartError,
        )
        return self

    def _launch(self, binary: str, port: int) -> None:
        self.port = port
        self._spawn(binary)
        atexit.register(self.stop)  # even if the owner forgets stop(), no orphan keeps the port

    def reconfigure(self, jobs: Mapping[str, Sequence[str]]) -> None:
        """New targets (a part restarted on other ports): rewrite prometheus.yml and have a running
        Prometheus reload it (SIGHUP), keeping its data and its port."""
        self.jobs = {name: list(targets) for name, targets in jobs.items()}
        if self.dir.is_dir():
            self._write_config()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGHUP)

    def _write_config(self) -> None:
        tmp = self.config_path.with_name(_CONFIG_NAME + ".tmp")
        tmp.write_text(render_config(self.jobs, self.scrape_interval, self.rule_files), encoding="utf-8")
        os.replace(tmp, self.config_path)  # a reload never reads half a file

    def _spawn(self, binary: str) -> None:
        command = [
            binary,
            f"--config.file={self.config_path}",
            f"--web.listen-address=127.0.0.1:{self.port}",  # loopback only: a dev stack is not for the network
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={_RETENTION}",
            # Keep the trace ids our histograms carry, so a slow bucket leads to its trace.
            "--enable-feature=exemplar-storage",
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
            log.flush()
            self._proc = spawn(command, log, cwd=self.dir)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise PrometheusStartError(self._failure(f"prometheus exited with code {self._proc.returncode}"))
            if self._ready() and self._answers_as_ours():
                return
            time.sleep(0.1)
        raise PrometheusStartError(self._failure(f"prometheus was not ready on {self.url} within {timeout:.0f} s"))

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=1) as reply:
                return bytes(reply.read()) if reply.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    def _ready(self) -> bool:
        return self._get("/-/ready") is not None

    def _answers_as_ours(self) -> bool:
        """True when *our* process answers: when the port was already taken, the other server answers
        while ours is still failing to bind. Ours is the one that runs our configuration file."""
        body = self._get("/api/v1/status/flags")
        try:
            flags = json.loads(body or b"{}").get("data", {})
        except ValueError:
            return False
        return bool(flags.get("config.file") == str(self.config_path))

    def _failure(self, headline: str) -> str:
        tail = log_tail(self.log_path)
        return f"{headline}; log {self.log_path}:\n{tail}" if tail else headline

    def _terminate(self, grace: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # it closes the head block and the WAL cleanly
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for fault tests): `start()` again is a restart on the same port
        and data (Prometheus replays its WAL)."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        self._requested_port = self.port  # the banner told people this address
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self._terminate()
