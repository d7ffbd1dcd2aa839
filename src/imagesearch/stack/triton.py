"""A local Triton Inference Server for `imagesearch up` and the tests.

Triton comes from the PyPI wheel `nvidia-pytriton`, installed in a venv of its
own (`.venv-triton`, numpy < 2) because it pins versions the services do not
want. The wheel ships a real `tritonserver` binary with only the Python
backend, which runs `model_repo/image_embedding/2/model.py` (onnxruntime, CPU).

What it takes to run that binary outside pytriton, all handled here:
  * the Python backend needs its stub (`triton_python_backend_stub`) for the
    venv's Python version *next to* `libtriton_python.so`. The wheel keeps the
    stubs elsewhere (`python_backend_stubs/3.X/`), so we assemble a backend
    directory under `runtime_dir` and pass `--backend-directory` (the wheel
    itself stays untouched);
  * the stub embeds libpython: `LD_LIBRARY_PATH` must point at the base
    interpreter's LIBDIR, or it picks up the system libpython and dies
    (`_recursion_count`); it must also list the wheel's `nvidia_pytriton.libs`
    (libcudart, ...), which the copied stub no longer finds through its
    `$ORIGIN`-relative rpath;
  * the stub's embedded interpreter ignores PYTHONPATH; it locates its
    packages like a bare `python3` does, through the first `python3` on PATH
    and its pyvenv.cfg. The Triton venv's bin/ goes first on PATH, otherwise
    model.py imports numpy/onnxruntime from the caller's venv (or numpy 2
    from the base interpreter);
  * two servers on one host collide on the backend's shared-memory names, so
    each gets its own `shm-region-prefix-name`.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagesearch.common import keepalive
from imagesearch.contracts.model import MODEL_NAME
from imagesearch.stack.ports import free_ports
from imagesearch.stack.process import Managed, log_tail, spawn

TRITON_ENV_VAR = "IMAGESEARCH_TRITON_ENV"
_LOG_NAME = "triton.log"
_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
_STUB_NAME = "triton_python_backend_stub"
_PORT_IN_USE_MARKERS = ("already in use", "Failed to bind", "failed to bind")
# Lines after which Triton never becomes ready (it may still linger until a stub timeout).
_FATAL_MARKERS = ("error while loading shared libraries", "failed to load '")
_START_ATTEMPTS = 3  # ports picked here can be grabbed by someone else before Triton binds them


class TritonStartError(RuntimeError):
    """tritonserver did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the pytriton wheel's server lives, and what its Python stub needs."""

    server_binary: Path
    python_backend: Path  # libtriton_python.so, triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for the venv's Python version
    libpython_dir: str  # LIBDIR of the base interpreter (holds libpython3.X.so)
    bundled_libs: Path  # nvidia_pytriton.libs: libcudart etc., found via an $ORIGIN rpath that copies lose
    site_packages: list[str]  # the Triton venv's purelib/platlib


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory above `start` (default: this file) that holds pyproject.toml."""
    here = (start or Path(__file__)).resolve()
    for directory in [here, *here.parents]:
        if (directory / "pyproject.toml").is_file():
            return directory
    raise FileNotFoundError(f"no pyproject.toml above {here}; pass triton_env explicitly")


def default_triton_env() -> Path:
    """$IMAGESEARCH_TRITON_ENV, else <repo>/.venv-triton."""
    configured = os.environ.get(TRITON_ENV_VAR)
    return Path(configured).expanduser() if configured else repo_root() / ".venv-triton"


def _venv_python(env: Path) -> Path:
    for name in ("python3", "python"):
        candidate = env / "bin" / name
        if candidate.exists():
            return candidate
    raise TritonStartError(f"{env} is not a virtual environment (no bin/python3); set {TRITON_ENV_VAR}")


def _interpreter_facts(python: Path) -> tuple[str, str, list[str]]:
    """(X.Y version, LIBDIR, site-packages dirs) of the Triton venv's interpreter."""
    code = (
        "import sys, sysconfig\n"
        "print(f'{sys.version_info[0]}.{sys.version_info[1]}')\n"
        "print(sysconfig.get_config_var('LIBDIR') or '')\n"
        "paths = sysconfig.get_paths()\n"
        "print(paths['purelib']); print(paths['platlib'])\n"
    )
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, timeout=60).stdout
    version, libdir, purelib, platlib = out.splitlines()[:4]
    return version, libdir, list(dict.fromkeys([purelib, platlib]))


def locate_triton(env: Path) -> TritonInstall:
    """Find tritonserver and the Python-backend pieces inside the Triton venv."""
    version, libdir, site_packages = _interpreter_facts(_venv_python(env))
    for site in site_packages:
        root = Path(site) / "pytriton" / "tritonserver"
        if (root / "bin" / "tritonserver").is_file():
            break
    else:
        raise TritonStartError(
            f"no pytriton/tritonserver in {env}; install it with "
            f"`{env}/bin/pip install 'nvidia-pytriton' 'numpy<2' onnxruntime` (or run scripts/bootstrap.sh)"
        )
    stub = root / "python_backend_stubs" / version / _STUB_NAME
    if not stub.is_file():
        raise TritonStartError(f"pytriton in {env} has no Python-backend stub for Python {version} ({stub})")
    return TritonInstall(
        server_binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stub=stub,
        libpython_dir=libdir,
        bundled_libs=root.parent.parent / "nvidia_pytriton.libs",
        site_packages=site_packages,
    )


def prepare_backend_dir(install: TritonInstall, runtime_dir: Path) -> Path:
    """<runtime_dir>/backends/python = the wheel's Python backend + the stub for our Python version."""
    backends = runtime_dir / "backends"
    target = backends / "python"
    target.mkdir(parents=True, exist_ok=True)
    sources = [install.python_backend / name for name in _BACKEND_FILES] + [install.stub]
    for source in sources:
        _copy_if_changed(source, target / source.name)
    return backends


def _copy_if_changed(source: Path, target: Path) -> None:
    stat = source.stat()
    if target.exists() and target.stat().st_size == stat.st_size and target.stat().st_mtime >= stat.st_mtime:
        return
    tmp = target.with_name(target.name + ".tmp")
    shutil.copy2(source, tmp)  # keeps the exec bit of the stub
    os.replace(tmp, target)


def check_model_repository(model_repository: Path) -> None:
    """Fail early, and say how to fix it, when the ONNX file that model.py loads was never built."""
    if not model_repository.is_dir():
        raise FileNotFoundError(f"model repository {model_repository} does not exist")
    for model_py in sorted(model_repository.glob("*/[0-9]*/model.py")):
        onnx_file = model_py.with_name("model.onnx")
        if not onnx_file.is_file():
            raise FileNotFoundError(
                f"{onnx_file} is missing: build it with `python tools/export_model.py` "
                f"(or run scripts/bootstrap.sh) before starting Triton"
            )


class TritonServer(Managed):
    """tritonserver as a child process serving `model_repository` on loopback ports.

    Ports given as 0 are picked free at `start()`; `metrics_port=None` turns
    metrics off. Server output goes to `log_path` (default
    `<runtime_dir>/triton.log`). As a context manager it starts the server,
    waits until the model is ready, and stops it on exit:

        with TritonServer(repo / "model_repo", tmp_path) as triton:
            client = tritonclient.grpc.InferenceServerClient(triton.grpc_url)
    """

    def __init__(
        self,
        model_repository: Path,
        runtime_dir: Path,
        grpc_port: int = 0,
        http_port: int = 0,
        metrics_port: int | None = 0,
        log_path: Path | None = None,
        triton_env: Path | None = None,
        model_config_name: str | None = None,
        model_name: str = MODEL_NAME,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.runtime_dir = Path(runtime_dir).resolve()
        self.log_path = Path(log_path).resolve() if log_path else self.runtime_dir / _LOG_NAME
        self.triton_env = Path(triton_env) if triton_env else default_triton_env()
        self.model_config_name = model_config_name
        self.model_name = model_name
        self._requested = (grpc_port, http_port, metrics_port)
        self.grpc_port, self.http_port, self.metrics_port = grpc_port, http_port, metrics_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._log_offset = 0
        self._shm_prefix = ""

    # -- addresses ---------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        """host:port for tritonclient.grpc (no scheme)."""
        self._require_ports()
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """host:port for tritonclient.http (no scheme)."""
        self._require_ports()
        return f"127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str | None:
        return f"http://127.0.0.1:{self.metrics_port}/metrics" if self.metrics_port else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _require_ports(self) -> None:
        if not self.grpc_port:
            raise RuntimeError("TritonServer has no ports until start()")

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> TritonServer:
        """Spawn tritonserver; returns at once (see wait_ready)."""
        if self.running:
            return self
        check_model_repository(self.model_repository)
        install = locate_triton(self.triton_env)
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        backends = prepare_backend_dir(install, self.runtime_dir)
        self._pick_ports()
        command = self._command(install, backends)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
            log.flush()
            self._proc = spawn(command, log, cwd=self.runtime_dir, env=self._environment(install))
        self._started_at = time.monotonic()
        atexit.register(self.stop)
        return self

    def wait_ready(self, timeout: float = 120) -> TritonServer:
        """Block until the server and the model are ready; raise TritonStartError with the log tail if not.

        When Triton lost a race for an automatically picked port, it is restarted
        on fresh ports (a few times) within the same timeout.
        """
        deadline = time.monotonic() + timeout
        for attempt in range(1, _START_ATTEMPTS + 1):
            if self._proc is None:
                self.start()
            try:
                self._poll_ready(deadline)
                return self
            except TritonStartError:
                retry = attempt < _START_ATTEMPTS and self._lost_port_race()
                self.stop()
                if not retry:
                    raise
        raise AssertionError("unreachable")

    def _poll_ready(self, deadline: float) -> None:
        # Probe the TCP port first: a gRPC channel that met a refused connection backs off
        # exponentially (1 s, 1.6 s, 2.6 s, ...) and would notice the server seconds late.
        self._wait_until(deadline, self._grpc_port_open, "the gRPC port to open")
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            self._wait_until(deadline, lambda: self._model_ready(client), f"model {self.model_name!r} to be ready")
        finally:
            client.close()

    def _wait_until(self, deadline: float, condition: Callable[[], bool], what: str) -> None:
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise TritonStartError(self._failure(f"tritonserver exited with code {self._proc.returncode}"))
            if self._fatal_in_log():
                raise TritonStartError(self._failure("tritonserver failed to load the model"))
            if condition():
                return
            if time.monotonic() > deadline:
                raise TritonStartError(
                    self._failure(
                        f"tritonserver on {self.grpc_url}: gave up waiting for {what} "
                        f"after {time.monotonic() - self._started_at:.0f} s"
                    )
                )
            time.sleep(0.1)

    def _grpc_port_open(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1).close()
            return True
        except OSError:
            return False

    def _model_ready(self, client: Any) -> bool:  # client: tritonclient.grpc.InferenceServerClient
        from tritonclient.utils import InferenceServerException

        try:
            return bool(
                client.is_server_ready(client_timeout=2) and client.is_model_ready(self.model_name, client_timeout=2)
            )
        except InferenceServerException:
            return False

    def _new_log(self) -> str:
        """What this run has written to the log so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _fatal_in_log(self) -> bool:
        text = self._new_log()
        return any(marker in text for marker in _FATAL_MARKERS)

    def _lost_port_race(self) -> bool:
        """Did this run fail to bind a port that we picked (rather than one the caller fixed)?"""
        if not any(port == 0 for port in self._requested):
            return False
        text = self._new_log()
        return any(marker in text for marker in _PORT_IN_USE_MARKERS)

    def kill(self) -> None:
        """SIGKILL the server and its Python-backend stubs, as a crash would (for fault tests and the
        local stack's supervision). `start()` again restarts it on the same ports."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if self.grpc_port:  # its clients know these addresses
            self._requested = (self.grpc_port, self.http_port, self.metrics_port)
        if proc is not None:
            # Its own session (spawn): the whole group, also when the server itself is already
            # dead and only its Python-backend stubs are left.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._remove_shared_memory()

    def stop(self, grace: float = 10) -> None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL after `grace` seconds.

        The process handle is dropped only once it is gone, so a stop() interrupted
        by Ctrl-C can be repeated (and the atexit hook still covers it).
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                # Kill the whole process group: the Python-backend stubs are Triton's children.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._proc = None
        atexit.unregister(self.stop)
        self._remove_shared_memory()

    def _remove_shared_memory(self) -> None:
        """A killed server leaves its Python-backend regions in /dev/shm; they are ours alone (unique prefix)."""
        if not self._shm_prefix:
            return
        for path in glob.glob(f"/dev/shm/{glob.escape(self._shm_prefix)}*"):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def __enter__(self) -> TritonServer:
        """Started and ready: the model loaded (stopped on exit, as every Managed part)."""
        self.start()
        return self.wait_ready()

    # -- command line and environment ----------------------------------------
    def _pick_ports(self) -> None:
        grpc_port, http_port, metrics_port = self._requested
        fresh = iter(free_ports(3))
        self.grpc_port = grpc_port or next(fresh)
        self.http_port = http_port or next(fresh)
        self.metrics_port = None if metrics_port is None else (metrics_port or next(fresh))

    def _command(self, install: TritonInstall, backends: Path) -> list[str]:
        self._shm_prefix = shm_prefix = f"imagesearch_{os.getpid()}_{self.grpc_port}_"
        command = [
            str(install.server_binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=none",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-verbose=0",
            "--exit-timeout-secs=5",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            *keepalive.triton_server_flags(),
            "--http-address=127.0.0.1",
            # Per-server shared-memory names (two servers on one host would otherwise collide), and a
            # first region big enough for a full batch (32 x 150 KB images) so it never has to grow.
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            "--backend-config=python,shm-default-byte-size=16777216",
            "--backend-config=python,shm-growth-byte-size=16777216",
        ]
        if self.metrics_port is None:
            command.append("--allow-metrics=false")
        else:
            command += [
                f"--metrics-port={self.metrics_port}",
                "--metrics-address=127.0.0.1",
                "--allow-gpu-metrics=false",
            ]
        if self.model_config_name:
            command.append(f"--model-config-name={self.model_config_name}")
        return command

    def _environment(self, install: TritonInstall) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
        # The stub's embedded interpreter ignores PYTHONPATH (it is initialised isolated) and finds its
        # packages the way a bare `python3` would: by the first python3 on PATH and that one's
        # pyvenv.cfg. So the Triton venv's bin/ must come first on PATH, or model.py silently imports
        # numpy/onnxruntime from whatever venv the caller has activated (or the system's numpy 2).
        venv_bin = str(self.triton_env.resolve() / "bin")
        env["PATH"] = os.pathsep.join(p for p in (venv_bin, os.environ.get("PATH", "")) if p)
        # Harmless where ignored, and honoured by stubs that are not isolated.
        env["PYTHONPATH"] = os.pathsep.join(install.site_packages)
        env["PYTHONNOUSERSITE"] = "1"
        # The stub must load the base interpreter's libpython; the copied stub and backend library
        # also lose their $ORIGIN rpath to the wheel's bundled libs (libcudart, ...).
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (install.libpython_dir, str(install.bundled_libs), os.environ.get("LD_LIBRARY_PATH", "")) if p
        )
        return env

    def _failure(self, headline: str) -> str:
        tail = log_tail(self.log_path)
        return f"{headline}; log {self.log_path}:\n{tail}" if tail else headline
