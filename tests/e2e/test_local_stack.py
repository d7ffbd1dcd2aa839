"""The README's main job, end to end: `imagesearch up`, then index / search / delete, then stop.

Everything runs as real subprocesses exactly as a developer types it: the
`imagesearch` console script of this venv, a private runtime folder, a free
gateway port and a REDIS_URL that points at nothing (so `up` must start its
own redis-server instead of borrowing the machine's). `up` is started once
for the module; the last test stops it with SIGTERM and checks that it exits
0, that every service drained, and that nothing it started is left running.

The tests run in file order (the stop test last), each against the same stack.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image
from support import base_model_repository

from imagesearch.common.probe import status as health_status
from imagesearch.stack.local import SERVICES, port_available
from imagesearch.stack.ports import free_port

REPO = Path(__file__).resolve().parents[2]
DEMO_CATALOG = REPO / "demo" / "catalog.csv"
HOST = "127.0.0.1"
START_TIMEOUT = 180.0  # a cold start on 2 busy cores; usually ~10 s
STOP_TIMEOUT = 30.0
CLI_TIMEOUT = 120.0
N_PRODUCTS = 6
_SERVING = 1  # grpc.health.v1.HealthCheckResponse.SERVING
# `up` runs a Prometheus when one is installed (scripts/bootstrap.sh installs Debian's), and says so otherwise.
PROMETHEUS = shutil.which("prometheus") is not None
SCRAPE_JOBS = ("gateway", "embedder", "retriever", "triton", "milvus")

# What `up` must have started (matched against the children's command lines).
EXPECTED_CHILDREN = {
    "redis-server": re.compile(r"(^|/)redis-server\b"),
    "tritonserver": re.compile(r"(^|/)tritonserver\b"),
    "milvus": re.compile(r"(^|/)milvus\b"),
    **{name: re.compile(rf"-m imagesearch_{name}\b") for name in SERVICES},
    **({"prometheus": re.compile(r"(^|/)prometheus --config\.file=")} if PROMETHEUS else {}),
}


def imagesearch_command() -> list[str]:
    """The console script the README uses (`.venv/bin/imagesearch`), else the module."""
    script = Path(sys.executable).parent / "imagesearch"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "imagesearch.cli.main"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus what would point the stack at shared servers or exporters."""
    dropped = {"REDIS_URL", "IMAGESEARCH_GATEWAY", "IMAGESEARCH_HOME", "LOG_LEVEL", "IMAGESEARCH_API_KEY"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k not in dropped}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="200", **extra)
    return env


# --- /proc: the processes `up` started ---------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    start_time: int  # clock ticks since boot: tells a live process from a reused pid
    cmdline: str


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of `pid`, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(root: int) -> list[Proc]:
    """Every live process below `root` (children, grandchildren, ...)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[0] != "Z":
                parent[int(entry.name)] = st[1]
    found: list[Proc] = []
    frontier = [root]
    while frontier:
        ppid = frontier.pop()
        for pid, pp in parent.items():
            if pp == ppid:
                st = _stat(pid)
                if st is not None:
                    found.append(Proc(pid, st[2], _cmdline(pid)))
                    frontier.append(pid)
    return found


def _parent(proc: Proc) -> int | None:
    st = _stat(proc.pid)
    return None if st is None else st[1]


def still_running(proc: Proc) -> bool:
    st = _stat(proc.pid)
    return st is not None and st[0] != "Z" and st[2] == proc.start_time


# --- the stack ---------------------------------------------------------------


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    gateway: str
    gateway_port: int
    runtime: Path
    stdout_path: Path
    stderr_path: Path
    children: list[Proc] = field(default_factory=list)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        """What to show when something fails: up's own output and the services' log tails."""
        parts = [f"--- up stdout ---\n{self.stdout()}", f"--- up stderr ---\n{self.stderr()[-4000:]}"]
        for log in sorted((self.runtime / "logs").glob("*.log")):
            parts.append(f"--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)


def _wait_ready(up: Up) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        code = up.proc.poll()
        if code is not None:
            pytest.fail(f"`imagesearch up` exited with {code} before it was ready\n{up.logs()}")
        if "ready." in up.stdout() and health_status(up.gateway) == _SERVING:
            return
        time.sleep(0.5)
    pytest.fail(f"`imagesearch up` was not ready within {START_TIMEOUT:.0f} s\n{up.logs()}")


def _kill_leftovers(up: Up) -> None:
    """Teardown after a failure: never leave servers behind for the next test run."""
    if up.proc.poll() is None:
        up.proc.send_signal(signal.SIGTERM)
        try:
            up.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            up.proc.kill()
            up.proc.wait()
    for child in up.children:
        if still_running(child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    runtime = tmp_path_factory.mktemp("up-runtime")
    # The base model only, whatever versions `imagesearch adapt` added to model_repo/ locally.
    models = base_model_repository(tmp_path_factory.mktemp("up-model-repo"))
    port = free_port(HOST)
    dead_redis = f"redis://{HOST}:{free_port(HOST)}/0"  # nothing listens there: up must start its own
    stdout_path, stderr_path = runtime.parent / "up.stdout", runtime.parent / "up.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [
                *imagesearch_command(),
                "up",
                "--no-demo",
                "--runtime-dir",
                str(runtime),
                "--gateway-port",
                str(port),
                "--model-repo",
                str(models),
            ],
            cwd=REPO,
            env=clean_env(REDIS_URL=dead_redis),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    stack = Up(proc, f"{HOST}:{port}", port, runtime, stdout_path, stderr_path)
    try:
        _wait_ready(stack)
        stack.children = descendants(proc.pid)
        yield stack
    finally:
        _kill_leftovers(stack)


@pytest.fixture(scope="module")
def products() -> list[dict[str, str]]:
    with DEMO_CATALOG.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # One product per category, so "the same image comes back first" is never a near tie.
    chosen: dict[str, dict[str, str]] = {}
    for row in rows:
        chosen.setdefault(row["category"], row)
    picked = list(chosen.values())[:N_PRODUCTS]
    assert len(picked) == N_PRODUCTS
    return picked


@pytest.fixture(scope="module")
def catalog_csv(tmp_path_factory: pytest.TempPathFactory, products: list[dict[str, str]]) -> Path:
    """A small catalog in a folder of its own, images by absolute path."""
    path = tmp_path_factory.mktemp("catalog") / "catalog.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(products[0]))
        writer.writeheader()
        for row in products:
            writer.writerow({**row, "image": str((DEMO_CATALOG.parent / row["image"]).resolve())})
    return path


def cli(up: Up, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`imagesearch ARGS` against the stack (through $IMAGESEARCH_GATEWAY, as a user would)."""
    return subprocess.run(
        [*imagesearch_command(), *args],
        check=False,
        cwd=cwd,
        # The stack's own admin key (`up` made it); in the default runtime folder the CLI finds it alone.
        env=clean_env(IMAGESEARCH_GATEWAY=up.gateway, IMAGESEARCH_API_KEY_FILE=str(up.runtime / "admin.key")),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


@pytest.fixture(scope="module")
def indexed(up: Up, catalog_csv: Path) -> subprocess.CompletedProcess[str]:
    return cli(up, "index", str(catalog_csv), "--no-progress", cwd=catalog_csv.parent)


def image_of(row: dict[str, str]) -> Path:
    return (DEMO_CATALOG.parent / row["image"]).resolve()


# --- the specifications ------------------------------------------------------


def test_up_prints_its_endpoints_and_the_gateway_is_serving(up: Up) -> None:
    out = up.stdout()
    assert up.gateway in out, up.logs()
    for part in ("gateway", "retriever", "embedder", "triton", "milvus", "redis"):
        assert re.search(rf"^{part}\s", out, re.MULTILINE), f"no {part} row in the banner\n{out}"
    # The banner's try-it line names this gateway, since it is not the default one.
    assert f"imagesearch --gateway {up.gateway} search " in out
    assert health_status(up.gateway) == _SERVING
    # REDIS_URL answered nothing, so up started a private redis-server: never the machine's shared one.
    assert "private" in out
    names = {name for name, pattern in EXPECTED_CHILDREN.items() if any(pattern.search(c.cmdline) for c in up.children)}
    assert names == set(EXPECTED_CHILDREN), f"missing children: {set(EXPECTED_CHILDREN) - names}\n{up.children}"


@pytest.mark.skipif(not PROMETHEUS, reason="prometheus is not installed (apt-get install prometheus)")
def test_prometheus_scrapes_every_part_of_the_stack(up: Up) -> None:
    row = re.search(r"^prometheus\s+(http://127\.0\.0\.1:\d+)\s", up.stdout(), re.MULTILINE)
    assert row is not None, f"no prometheus row in the banner\n{up.stdout()}"
    deadline = time.monotonic() + 60  # discovery batches new targets for 5 s, then one scrape every 5 s
    while True:
        with urllib.request.urlopen(f"{row.group(1)}/api/v1/targets", timeout=10) as reply:
            targets = json.loads(reply.read())["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if health == dict.fromkeys(SCRAPE_JOBS, "up"):
            break
        assert time.monotonic() < deadline, f"targets: {targets}\n{up.logs()}"
        time.sleep(1)
    assert (up.runtime / "prometheus" / "prometheus.yml").is_file()


def test_index_a_small_catalog(indexed: subprocess.CompletedProcess[str]) -> None:
    assert indexed.returncode == 0, describe(indexed)
    assert re.search(rf"^{N_PRODUCTS} indexed, 0 failed in [\d.]+ s$", indexed.stdout, re.MULTILINE), describe(indexed)
    assert "Traceback" not in indexed.stderr


def test_search_returns_the_indexed_product_first(
    up: Up, indexed: subprocess.CompletedProcess[str], products: list[dict[str, str]], tmp_path: Path
) -> None:
    target = products[0]
    result = cli(up, "search", str(image_of(target)), "--top-k", "3", "--json", cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    body = json.loads(result.stdout)  # stdout is pure JSON
    hits = body["hits"]
    assert len(hits) == 3
    assert hits[0]["product_id"] == target["product_id"]
    assert hits[0]["score"] > 0.5  # the very same image, cropped to its subject as every query is
    assert hits[0]["title"] == target["title"] and hits[0]["category"] == target["category"]
    assert hits[0]["image_uri"] == str(image_of(target))
    assert hits[0]["score"] == max(h["score"] for h in hits)  # best first (the rest: category-aware order)
    assert {h["product_id"] for h in hits} <= {p["product_id"] for p in products}
    assert body["model"]["name"] and int(body["model"]["dimension"]) > 0


def test_search_table_and_contact_sheet(
    up: Up, indexed: subprocess.CompletedProcess[str], products: list[dict[str, str]], tmp_path: Path
) -> None:
    target = products[1]
    sheet = tmp_path / "out.png"
    result = cli(up, "search", str(image_of(target)), "--top-k", "3", "--sheet", "out.png", cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    first = next(line for line in result.stdout.splitlines() if line.lstrip().startswith("1 "))
    assert target["product_id"] in first, result.stdout
    assert "contact sheet: out.png" in result.stdout
    with Image.open(sheet) as img:
        assert img.format == "PNG"
        assert img.width >= 400 and img.height >= 200
        img.verify()


def test_a_text_file_is_one_invalid_argument_line(up: Up, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a photo\n")
    result = cli(up, "search", str(text), cwd=tmp_path)
    assert result.returncode == 1, describe(result)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: INVALID_ARGUMENT: "), describe(result)
    assert "Traceback" not in result.stderr


def test_delete_removes_the_product_from_results(
    up: Up, indexed: subprocess.CompletedProcess[str], products: list[dict[str, str]], tmp_path: Path
) -> None:
    target = products[-1]
    pid, image = target["product_id"], str(image_of(target))
    before = cli(up, "search", image, "--top-k", "1", "--json", cwd=tmp_path)  # also fills the result cache
    assert before.returncode == 0 and json.loads(before.stdout)["hits"][0]["product_id"] == pid, describe(before)

    deleted = cli(up, "delete", pid, cwd=tmp_path)
    assert deleted.returncode == 0, describe(deleted)
    assert re.search(rf"^deleted\s+{pid}$", deleted.stdout, re.MULTILINE), describe(deleted)

    after = cli(up, "search", image, "--top-k", "3", "--json", cwd=tmp_path)
    assert after.returncode == 0, describe(after)
    body = json.loads(after.stdout)
    assert pid not in {h["product_id"] for h in body["hits"]}  # the cached answer did not outlive the delete
    assert body["cache_hit"] is False

    like = cli(up, "search", "--like", pid, cwd=tmp_path)
    assert like.returncode == 1 and like.stderr.startswith("error: NOT_FOUND: "), describe(like)

    again = cli(up, "delete", pid, cwd=tmp_path)
    assert again.returncode == 0 and re.search(rf"^not found\s+{pid}\b", again.stdout, re.MULTILINE), describe(again)


def test_a_crashed_dependency_and_a_crashed_service_are_restarted_and_search_works_again(
    up: Up, indexed: subprocess.CompletedProcess[str], products: list[dict[str, str]], tmp_path: Path
) -> None:
    """`up` supervises its children: killed, each is started again on its address (after a short
    back-off, saying so) while the rest keeps running, and searches find the catalog again.
    Triton and the embedder that depends on it; Milvus restarting on its data is covered apart
    (tests/faults/test_milvus_restart.py), and takes half a minute here."""
    victims = {"triton": EXPECTED_CHILDREN["tritonserver"], "embedder": EXPECTED_CHILDREN["embedder"]}
    for pattern in victims.values():
        # `up`'s own child, as the OOM killer or a crash would take it.
        victim = next(c for c in descendants(up.proc.pid) if pattern.search(c.cmdline) and _parent(c) == up.proc.pid)
        os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + START_TIMEOUT
    while not all(f"[up] {name}: restarted" in up.stderr() for name in victims):
        assert up.proc.poll() is None, f"`imagesearch up` stopped instead of restarting\n{up.logs()}"
        assert time.monotonic() < deadline, f"not restarted within {START_TIMEOUT:.0f} s\n{up.logs()}"
        time.sleep(0.5)
    restarted = time.monotonic() - killed
    assert all(f"{name} exited unexpectedly" in up.stderr() for name in victims), up.logs()

    target = products[0]
    while True:  # UNAVAILABLE until the embedder has connected to Triton and the gateway to it
        result = cli(up, "search", str(image_of(target)), "--top-k", "3", "--json", "--no-cache", cwd=tmp_path)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        assert "UNAVAILABLE" in result.stderr, describe(result)
        time.sleep(1.0)
    assert result.returncode == 0, describe(result)
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["product_id"] == target["product_id"] and len(hits) == 3, hits
    print(
        f"triton and embedder SIGKILL: both restarted after {restarted:.1f} s, answers again after "
        f"{time.monotonic() - killed:.1f} s"
    )


def test_sigterm_drains_every_service_and_leaves_nothing_running(up: Up) -> None:
    """Last: stops the module's stack."""
    assert up.proc.poll() is None, f"`imagesearch up` died early\n{up.logs()}"
    children = descendants(up.proc.pid)  # now, including anything started since start-up
    up.children = list({c.pid: c for c in [*up.children, *children]}.values())
    assert children

    started = time.monotonic()
    up.proc.send_signal(signal.SIGTERM)
    try:
        code = up.proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`imagesearch up` did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM\n{up.logs()}")
    took = time.monotonic() - started
    assert code == 0, f"exit {code} after {took:.1f} s\n{up.logs()}"

    left = [c for c in up.children if still_running(c)]
    assert not left, f"still running after `up` exited: {left}"
    assert port_available(HOST, up.gateway_port), "the gateway port is still bound"

    err = up.stderr()
    assert "Traceback" not in err, err
    # Reverse start order: the gateway drains first, while its backends still answer.
    parts = ("prometheus",) * PROMETHEUS + ("gateway", "retriever", "embedder", "triton", "milvus", "redis")
    order = [err.find(f"[up] {name}: stopping") for name in parts]
    assert -1 not in order and order == sorted(order), err
    # Each service took the graceful path on SIGTERM (not a SIGKILL after the grace period).
    for name in SERVICES:
        log = (up.runtime / "logs" / f"{name}.log").read_text(errors="replace")
        assert f"{name}: signal received, draining" in log and f"{name} stopped" in log, f"{name}.log:\n{log[-3000:]}"
