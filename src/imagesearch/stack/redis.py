"""A private, throw-away Redis for the local stack and the tests.

The gateway's result cache only needs a plain Redis; for local runs we start
our own `redis-server` (from PATH) on a free loopback port, with persistence
off: a cache that survives a restart would only hide stale answers.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from imagesearch.stack.ports import start_on_a_port
from imagesearch.stack.process import Managed, bound_port, log_tail, spawn


def redis_reachable(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis at `url` answers PING within `timeout` seconds."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


class RedisStartError(RuntimeError):
    """redis-server did not come up; the message carries its log tail."""


class LocalRedis(Managed):
    """`redis-server` as a child process: `start()` returns once it answers PING.

    `port=0` picks a free port. `dir` holds the log (and would hold dumps, but
    persistence is off); without it a temporary folder is used and removed on stop.
    """

    def __init__(
        self, port: int = 0, dir: str | Path | None = None, binary: str = "redis-server", password: str = ""
    ) -> None:
        self._requested_port = port
        self.password = password  # set: clients must AUTH (the url carries it)
        self._dir_arg = Path(dir) if dir is not None else None
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: str | None = None
        self.port = port
        self.dir: Path | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{bound_port(self, self.port)}/0"

    @property
    def log_path(self) -> Path | None:
        return self.dir / "redis.log" if self.dir is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> LocalRedis:
        if self.running:
            return self
        binary = shutil.which(self._binary)
        if binary is None:
            raise RedisStartError(f"{self._binary} not found on PATH; install Redis or set REDIS_URL to a running one")
        self.dir = self._prepare_dir()
        start_on_a_port(
            self._requested_port,
            lambda port: self._launch(binary, port),
            lambda: self._wait_ready(timeout),
            self._terminate,
            RedisStartError,
        )
        return self

    def _launch(self, binary: str, port: int) -> None:
        self.port = port
        self._spawn(binary)
        atexit.register(self.stop)  # even if the owner forgets stop(), no orphan keeps the port

    def _prepare_dir(self) -> Path:
        if self._dir_arg is not None:
            self._dir_arg.mkdir(parents=True, exist_ok=True)
            return self._dir_arg.resolve()
        self._tmp = tempfile.mkdtemp(prefix="imagesearch-redis-")
        return Path(self._tmp)

    def _spawn(self, binary: str) -> None:
        assert self.dir is not None and self.log_path is not None
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",  # no RDB snapshots: a cache must not outlive its stack
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",  # we own the process and stop it ourselves
            "--protected-mode",
            "yes",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        with open(self.log_path, "wb") as log:
            self._proc = spawn(args, log)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RedisStartError(self._failure(f"redis-server exited with code {self._proc.returncode}"))
            if self._answers_as_ours():
                return
            time.sleep(0.1)
        raise RedisStartError(
            self._failure(f"redis-server did not answer PING on port {self.port} within {timeout:.0f} s")
        )

    def _answers_as_ours(self) -> bool:
        """True when *our* process answers on the port.

        A plain PING is not enough: when the port was already taken, the
        other server answers while ours is still failing to bind.
        """
        assert self._proc is not None
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
            try:
                return int(client.info("server").get("process_id", -1)) == self._proc.pid
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    def _failure(self, headline: str) -> str:
        tail = log_tail(self.log_path) if self.log_path else ""
        return f"{headline}; log {self.log_path}:\n{tail}" if tail else headline

    def _terminate(self, grace: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for fault tests): `start()` again is a restart on the same port,
        empty (it keeps nothing on disk)."""
        proc, self._proc = self._proc, None
        self._requested_port = self.port  # its clients know this address
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self._terminate()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def without_password(url: str) -> str:
    """A Redis URL fit to print: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
