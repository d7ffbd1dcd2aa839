"""What the tests share besides fixtures (those are in conftest.py): paths, builders of products
and images, the channel options, the base-only model repository."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import numpy as np
from PIL import Image

from imagesearch.auth.keys import ALL_CATALOGS, KeyFile, Scope, new_key
from imagesearch.client.credentials import AioKeyInterceptor
from imagesearch.contracts import model as contract
from imagesearch.v1 import common_pb2, search_pb2

REPO = Path(__file__).resolve().parents[1]
DEV_SET = Path(os.environ.get("IMAGESEARCH_DEV_SET", REPO.parent / "shared" / "datasets" / "dev"))
# Strings that break naive quoting, escaping or LIKE matching: filters must compare them as they are.
HOSTILE_STRINGS = [
    'a"b',
    "a\\b",
    '" or 1==1 or "',
    '") || (price >= 0',
    '"] || category in ["',
    "\\",
    "trailing\\",
    '\\"',
    "x\\n",
    "line\nbreak",
    "tab\there",
    "\r\n",
    "it's",
    "ünïcødé",
    "😀 emoji",
    "数字",
    "\u2028line separator",
    "%_like_",
    'attributes["k"]',
    "",
]
# How long the test gateways keep a catalog uncached after a failed write or a lost (or new) cache state.
WRITE_WINDOW_SECONDS = 1.0
# The columns `imagesearch index` reads from a catalog CSV.
CSV_HEADER = "product_id,title,category,brand,price,image,attributes\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def solid_jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def product_input(
    product_id: str,
    images: list[bytes],
    *,
    category: str = "misc",
    brand: str = "acme",
    price: float = 10.0,
    attributes: dict[str, str] | None = None,
    title: str = "",
) -> search_pb2.ProductInput:
    return search_pb2.ProductInput(
        product=common_pb2.Product(
            product_id=product_id,
            title=title or product_id,
            category=category,
            brand=brand,
            price=price,
            attributes=attributes or {},
        ),
        images=[search_pb2.ProductImage(content=content) for content in images],
    )


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def side_by_side(left: Path, right: Path, size: int = 320) -> bytes:
    """A photo of two products next to each other, for region-of-interest queries."""
    canvas = Image.new("RGB", (2 * size, size), "white")
    canvas.paste(Image.open(left).convert("RGB").resize((size, size)), (0, 0))
    canvas.paste(Image.open(right).convert("RGB").resize((size, size)), (size, 0))
    return jpeg(canvas)


def open_channel(address: str, api_key: str | None = None, *, anonymous: bool = False) -> grpc.aio.Channel:
    """A channel whose calls carry `api_key` (default: the tests' admin key; none if `anonymous`)."""
    key = None if anonymous else (api_key or ADMIN_KEY)
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
        interceptors=[AioKeyInterceptor(key)] if key else None,
    )


# The tests' gateways authenticate like any other: one key file, one admin key for every test
# client (open_channel, and the CLI through IMAGESEARCH_API_KEY), more keys added where needed.
_ADMIN_RECORD, ADMIN_KEY = new_key([Scope.ADMIN], [ALL_CATALOGS], name="tests")
KEYS_FILE = Path(tempfile.mkdtemp(prefix="imagesearch-test-keys-")) / "keys.json"
KeyFile(KEYS_FILE).save([_ADMIN_RECORD])


def add_key(scopes: list[Scope], catalogs: list[str], **options: Any) -> tuple[str, str]:
    """A new key in the tests' key file: (id, token). Gateways see it at their next reload."""
    record, token = new_key(scopes, catalogs, existing=KeyFile(KEYS_FILE).load().keys, **options)
    KeyFile(KEYS_FILE).add(record)
    return record.id, token


BASE_VERSION = contract.BASE_VERSION


def load_tool(name: str) -> ModuleType:
    """A script of tools/ imported as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def base_model_repository(target: Path) -> Path:
    """A model repository holding only the base version of image_embedding, whatever else model_repo/ has.

    `imagesearch adapt` adds versions to model_repo/ and Triton serves the newest: tests must
    not depend on what a developer adapted locally. The config is copied, the model linked.
    """
    source = REPO / "model_repo" / "image_embedding"
    model_dir = target / "image_embedding"
    (model_dir / BASE_VERSION).mkdir(parents=True)
    shutil.copy2(source / "config.pbtxt", model_dir / "config.pbtxt")
    shutil.copytree(source / "configs", model_dir / "configs")
    for entry in (source / BASE_VERSION).iterdir():
        (model_dir / BASE_VERSION / entry.name).symlink_to(entry.resolve())
    return target


BASE_MODEL_FILE = contract.model_dir(REPO / "model_repo") / contract.BASE_VERSION / contract.MODEL_FILE
DEMO_IMAGES = sorted((REPO / "demo" / "catalog").glob("*.jpg"))


def ensure_base_model() -> Path:
    """The base model file (scripts/bootstrap.sh builds it; built here if a checkout skipped that)."""
    if not BASE_MODEL_FILE.is_file():
        subprocess.run([sys.executable, str(REPO / "tools" / "export_model.py")], cwd=REPO, check=True)
    return BASE_MODEL_FILE


def onnx_session(path: Path) -> Any:  # an onnxruntime.InferenceSession
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def mini_catalog(folder: Path, count: int) -> Path:
    """A catalog CSV of the first `count` demo products, one image each."""
    csv_path = folder / "catalog.csv"
    rows = ["product_id,image"] + [f"{p.stem},{p}" for p in DEMO_IMAGES[:count]]
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path


def demo_images(count: int, offset: int = 0, size: int = 224) -> np.ndarray:
    """Real catalog images, RGB, resized to size x size, uint8 NHWC."""
    paths = DEMO_IMAGES[offset : offset + count]
    assert len(paths) == count, f"need {count} images in demo/catalog"
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths])


class MemoryCap:
    """A memory cgroup of its own with a hard limit: a process in it that outgrows the limit is
    OOM-killed, as a container over its memory limit is. `MemoryCap.create()` is None where this
    machine gives no writable memory cgroup (v1 `memory` controller, or v2 with it delegated)."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit

    @staticmethod
    def create(limit: int) -> MemoryCap | None:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, own = line.split(":", 2)
            if controllers == "memory":  # cgroup v1
                base, knob = Path("/sys/fs/cgroup/memory") / own.lstrip("/"), "memory.limit_in_bytes"
            elif controllers == "" and "memory" in _read(Path("/sys/fs/cgroup/cgroup.subtree_control")):
                base, knob = Path("/sys/fs/cgroup") / own.lstrip("/"), "memory.max"
            else:
                continue
            path = base / f"imagesearch-test-{os.getpid()}-{len(list(base.glob('imagesearch-test-*')))}"
            try:
                path.mkdir()
                (path / knob).write_text(str(limit))
                swap = path / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(limit))
            except OSError:
                shutil.rmtree(path, ignore_errors=True)
                continue
            return MemoryCap(path, limit)
        return None

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def peak(self) -> int:
        """The most memory the kernel charged to the group (more than the resident set: it is
        sampled exactly, and counts page cache and kernel memory too)."""
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            if (self.path / name).exists():
                return int((self.path / name).read_text())
        return 0

    def remove(self) -> None:
        """Once its processes have exited."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class ServiceProcess:
    """One service (`imagesearch_<name>`) in a process of its own, for faults that need one: its
    memory measured, its process killed or stopped. `async with ServiceProcess(...) as svc:` starts it
    and waits until SERVING; leaving stops it with SIGTERM and fails if it had died."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, memory_cap: MemoryCap | None = None) -> None:
        from imagesearch.stack.ports import free_port

        self.memory_cap = memory_cap
        self.name, self.port, self.log = name, free_port(), log_dir / f"{name}.log"
        upper = name.upper()
        self._env = {
            **os.environ,
            "OTEL_SDK_DISABLED": "true",
            f"{upper}_HOST": "127.0.0.1",
            f"{upper}_PORT": str(self.port),
            f"{upper}_METRICS_PORT": "0",
            **(
                {"GATEWAY_API_KEYS_FILE": str(KEYS_FILE), "GATEWAY_API_KEYS_RELOAD_SECONDS": "0.2"}
                if name == "gateway"
                else {}
            ),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def peak_rss(self) -> int:
        """The process's high-water mark of resident memory (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    async def __aenter__(self) -> ServiceProcess:
        return await self.start()

    async def start(self) -> ServiceProcess:
        """Spawn it (again, after kill(): on the same port) and wait until it is SERVING."""
        import asyncio
        import time

        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from imagesearch.stack.process import spawn

        with self.log.open("ab") as log:
            self.proc = spawn([sys.executable, "-m", f"imagesearch_{self.name}"], log, env=self._env)
        if self.memory_cap is not None:
            self.memory_cap.add(self.proc.pid)  # before it has imported much: the decode work is what counts
        deadline = time.monotonic() + 90
        # Waited for without blocking the loop: the in-process services may be what it connects to.
        async with grpc.aio.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                assert self.proc.poll() is None, f"{self.name} exited:\n{self.log.read_text()[-3000:]}"
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.aio.AioRpcError:
                    pass
                assert time.monotonic() < deadline, f"{self.name} never became SERVING"
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no drain, nothing said to its clients."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        assert self.proc is not None
        alive = self.proc.poll() is None
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 30)
        assert alive, f"{self.name} died:\n{self.log.read_text()[-3000:]}"


class TlsBundle:
    """A throwaway CA and a server certificate it signed, for localhost and 127.0.0.1 (openssl)."""

    def __init__(self, folder: Path, name: str = "server") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.ca, self.ca_key = folder / f"{name}-ca.pem", folder / f"{name}-ca.key"
        self.cert, self.key = folder / f"{name}.pem", folder / f"{name}.key"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        csr, ext = folder / f"{name}.csr", folder / f"{name}.ext"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for command in (
            [
                "req",
                "-x509",
                *ec,
                "-keyout",
                self.ca_key,
                "-out",
                self.ca,
                "-days",
                "2",
                "-subj",
                f"/CN={name} test CA",
            ],
            ["req", *ec, "-keyout", self.key, "-out", csr, "-subj", "/CN=localhost"],
            [
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                self.ca,
                "-CAkey",
                self.ca_key,
                "-CAcreateserial",
                "-out",
                self.cert,
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        ):
            subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True, timeout=60)
