"""A private Milvus standalone for the local stack and the tests.

Wraps the embedded server of the PyPI package `milvus` (2.3.x, extra
`imagesearch[local]`): one `milvus run standalone` child process whose data,
configuration and logs all live under `base_dir`.

Why not just `MilvusServer().start()`:
  * the package picks its ports by scanning upward from Milvus' defaults
    (19530, 9091, ...), so a second server, or a user's own Milvus, gets
    whatever happens to be next; we hand every port an explicit free port;
  * Milvus' embedded etcd ignores the package's `etcd_port` and always binds
    2379/2380, so two servers on one machine collide. We give it an etcd
    config file (`etcd.config.path`) with free ports of its own;
  * its readiness wait loops for 180 s even when the process has died, and
    its stop() SIGKILLs after one second; we fail fast with the log tail and
    give Milvus time to flush on SIGTERM;
  * a few settings suit a private single-machine server better than Milvus'
    cluster defaults (see `_TEMPLATE_EDITS`): loopback addresses, a prompt
    stop, quicker restarts, and a 50 ms time tick, which is what a
    Strong-consistency read waits for (~55 ms per search instead of ~300 ms).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from imagesearch.stack.ports import free_ports
from imagesearch.stack.process import Managed, bound_port, log_tail, spawn

# Every `*_port` item of the package's config template: all must be free.
_CONFIG_PORT_KEYS = (
    "proxy_port",
    "proxy_internal_port",
    "etcd_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)
_LOG_NAME = "milvus.log"
# Edits to the package's config template for a private single-machine server:
# (text in the template, replacement, how many occurrences (0 = all)).
_TEMPLATE_EDITS: tuple[tuple[str, str, int], ...] = (
    # Milvus leaves its etcd sessions behind on exit and a restart waits for them
    # to expire; a shorter lease makes restarts on the same data quicker.
    ("    ttl: 30 #", "    ttl: 10 #", 1),
    # On SIGTERM the query node waits for its segments to be handed to another
    # node, which a standalone never has: it would hang for the default 30 min.
    # The data is safe in the WAL either way.
    ("  gracefulStopTimeout: 1800 #", "  gracefulStopTimeout: 3 #", 1),
    # Components register "the first unicastable address" and call each other
    # there; loopback keeps working when the machine's address changes (laptops).
    ("  ip: # if not specify address", "  ip: 127.0.0.1 # if not specify address", 0),
)
# Strong-consistency reads wait for the next time tick: measured on 2 cores,
# a search takes ~300 ms with Milvus' default 200 ms tick, ~55 ms with 50 ms.
_TIME_TICK_ITEM = "  timeTickInterval: 200 #"
_START_ATTEMPTS = 3


class MilvusStartError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


class _QuickFailure(MilvusStartError):
    """A start that failed fast (likely a port race): worth another try with fresh ports."""


def _bind_like_milvus(port: int) -> socket.socket | None:
    """The package's port check, with SO_REUSEADDR as Milvus' own (Go) listeners use: a port whose
    last server was killed keeps connections in TIME_WAIT for a minute, which a plain bind refuses
    though Milvus would listen on it fine. A port another process listens on is still refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


class LocalMilvus(Managed):
    """Milvus standalone as a child process; `start()` returns once a client can list collections.

    `port=0` picks a free port for the gRPC/HTTP endpoint (`uri`). Data
    persists in `base_dir` across restarts; the server's output goes to
    `base_dir/milvus.log` and Milvus' own logs to `base_dir/logs/`.
    """

    def __init__(
        self,
        base_dir: str | Path,
        port: int = 0,
        start_timeout: float = 120.0,
        stop_timeout: float = 10.0,
        time_tick_ms: int = 50,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self._time_tick_ms = time_tick_ms
        self._requested_port = port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = port
        self.health_port = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{bound_port(self, self.port)}"

    @property
    def log_path(self) -> Path:
        return self.base_dir / _LOG_NAME

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LocalMilvus:
        if self.running:
            return self
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # Ports picked by free_ports() can be taken before Milvus binds them: a
        # quick failure (bind check, early exit) is retried with fresh ports.
        attempts = _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except _QuickFailure as err:
                if attempt == attempts:
                    raise MilvusStartError(str(err)) from err
        raise AssertionError("unreachable")

    def _start_once(self) -> LocalMilvus:
        try:
            command, env = self._prepare()
        except RuntimeError as err:  # the package's "set proxy_port=..., but bind failed"
            if self._requested_port or "bind failed" not in str(err):
                raise
            raise _QuickFailure(str(err)) from err
        with open(self.log_path, "ab") as log:
            self._proc = spawn(command, log, cwd=self.base_dir, env=env)
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare(self) -> tuple[list[str], dict[str, str]]:
        """Write the configuration under base_dir; return the command line and environment."""
        # Imported here: the package is an optional extra and unpacks ~100 MB of binaries.
        import milvus as milvus_pkg

        ports = free_ports(len(_CONFIG_PORT_KEYS) + 2)
        if self._requested_port:
            ports = [self._requested_port, *[p for p in ports if p != self._requested_port][: len(ports) - 1]]
        config_ports = dict(zip(_CONFIG_PORT_KEYS, ports))
        etcd_peer_port, health_port = ports[-2:]
        self.port = config_ports["proxy_port"]
        self.health_port = health_port

        # Milvus reads `etcd.config.path`; the package template has no such item, so add it.
        etcd_config = self.base_dir / "configs" / "embed-etcd.yaml"
        etcd_config.parent.mkdir(parents=True, exist_ok=True)
        client_url, peer_url = f"http://127.0.0.1:{config_ports['etcd_port']}", f"http://127.0.0.1:{etcd_peer_port}"
        etcd_config.write_text(
            "name: default\n"
            f"listen-client-urls: {client_url}\nadvertise-client-urls: {client_url}\n"
            f"listen-peer-urls: {peer_url}\ninitial-advertise-peer-urls: {peer_url}\n"
            f"initial-cluster: default={peer_url}\n",
            encoding="utf-8",
        )
        package_template = Path(milvus_pkg.__file__).parent / "data" / "config.yaml.template"
        text = package_template.read_text(encoding="utf-8")
        anchor = "\netcd:\n"
        if anchor not in text:
            raise MilvusStartError(f"unexpected Milvus config template {package_template}: no top-level etcd section")
        text = text.replace(anchor, f"{anchor}  config:\n    path: {etcd_config}\n", 1)
        for before, after, count in _TEMPLATE_EDITS:
            text = text.replace(before, after, count or -1)
        text = text.replace(_TIME_TICK_ITEM, f"  timeTickInterval: {self._time_tick_ms} #", 1)
        template = self.base_dir / "configs" / "milvus.yaml.template"
        template.write_text(text, encoding="utf-8")

        config = milvus_pkg.MilvusServerConfig(template=str(template), data_dir=str(self.base_dir), **config_ports)
        # Set by the package only when it loads its own template.
        config.glog_conf_file = str(package_template.parent / "glog.conf")
        server = milvus_pkg.MilvusServer(config, wait_for_started=False)
        config.try_bind_port = _bind_like_milvus
        config.resolve()  # checks each port binds, writes configs/milvus.yaml, creates data/ and logs/
        milvus_pkg._initialize_data_files(config.base_data_dir)  # unpacks the binaries (once; md5-checked)
        executable = Path(server.get_milvus_executable_path())

        env = dict(os.environ)
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(health_port),  # also serves /healthz
            MILVUS_RUN_DIR=str(self.base_dir / "run"),
            LD_LIBRARY_PATH=":".join(p for p in (str(executable.parent), os.environ.get("LD_LIBRARY_PATH", "")) if p),
        )
        return [str(executable), "run", "standalone"], env

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        healthy = False
        last_error = ""
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                message = self._failure(f"milvus exited with code {self._proc.returncode}")
                raise (MilvusStartError if self._requested_port else _QuickFailure)(message)
            if not healthy:
                healthy = self._healthz()
            else:
                try:
                    self._list_collections()
                    return
                except Exception as err:  # noqa: BLE001 - any failure means "not ready yet"
                    last_error = str(err)
            time.sleep(0.2)
        raise MilvusStartError(
            self._failure(
                f"milvus did not become ready on {self.uri} within {self._start_timeout:.0f} s"
                + (f" (last error: {last_error})" if last_error else "")
            )
        )

    def _healthz(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _list_collections(self) -> list[str]:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.uri, timeout=5)
        try:
            return list(client.list_collections(timeout=5))
        finally:
            client.close()

    def _failure(self, headline: str) -> str:
        tail = log_tail(self.log_path)
        return f"{headline}; log {self.log_path}:\n{tail}" if tail else headline

    def kill(self) -> None:
        """SIGKILL the server and everything it started, as a crash would (for fault tests): nothing is
        flushed. `start()` again on the same `base_dir` and port is a restart on its own data."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session (spawn): the whole group
        proc.wait()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is None or proc.poll() is not None:
            return
        # SIGTERM lets Milvus flush rocksmq/etcd; only a hung server is killed.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(self._stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
