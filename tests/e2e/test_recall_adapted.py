"""The whitened models meet their floors on dev: `imagesearch adapt`, then `imagesearch eval`.

Two versions, each fitted into a copy of the base model repository, served with its own Triton and
embedder and evaluated through a gateway, as a user runs them:
* adapted to dev's own catalog (`imagesearch adapt ../shared/datasets/dev`);
* the generic whitening a fresh clone serves (scripts/bootstrap.sh: `imagesearch adapt` on
  tools/build_generic_set.py's emoji objects, no dev image), where Debian's emoji font is installed.

Opt-in (IMAGESEARCH_SLOW_TESTS=1): each fit takes ~3-6 minutes on a 2-core CPU, more than the
suite's budget. Figures: docs/quality.md.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from support import KEYS_FILE, base_model_repository, load_tool

from imagesearch.cli.main import main as cli
from imagesearch.common.server import ServerOptions, ServiceServer

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(os.environ.get("IMAGESEARCH_SLOW_TESTS") != "1", reason="slow: set IMAGESEARCH_SLOW_TESTS=1"),
    # A fit (~6 minutes on 2 cores) and a dev evaluation through the services: past the suite's 600 s.
    pytest.mark.timeout(1500),
]

RECALL_AT_1_FLOOR = 0.92  # measured 0.950 with the zoom looks (target 0.93)
RECALL_AT_10_FLOOR = 0.95  # measured 0.973 (target 0.98: not reached)
CATEGORY_P10_FLOOR = 0.40  # measured 0.435

GENERIC_RECALL_AT_1_FLOOR = 0.90  # measured 0.936 with the zoom looks (the bare backbone: 0.860; target 0.88)
GENERIC_RECALL_AT_10_FLOOR = 0.95  # measured 0.977 (the bare backbone: 0.933)


async def test_the_adapted_model_finds_dev_products(fleet, dev_set: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    report = await _fit_serve_and_evaluate(fleet, dev_set, dev_set, tmp_path)
    print(capsys.readouterr().out)
    assert report["recall_at_1"] >= RECALL_AT_1_FLOOR
    assert report["recall_at_10"] >= RECALL_AT_10_FLOOR
    assert report["category_precision_at_10"] >= CATEGORY_P10_FLOOR


async def test_the_generic_whitening_finds_dev_products_it_never_saw(
    fleet, dev_set: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    tool = load_tool("build_generic_set")
    if not tool.FONT.is_file():
        pytest.skip(f"{tool.FONT} is not installed (apt-get install {tool.PACKAGE})")
    generic = tmp_path / "generic"
    tool.build(generic)
    report = await _fit_serve_and_evaluate(fleet, generic, dev_set, tmp_path, ["--dimension", str(tool.DIMENSION)])
    print(capsys.readouterr().out)
    assert report["recall_at_1"] >= GENERIC_RECALL_AT_1_FLOOR
    assert report["recall_at_10"] >= GENERIC_RECALL_AT_10_FLOOR


async def _fit_serve_and_evaluate(  # type: ignore[no-untyped-def]
    fleet, fit_on: Path, dev_set: Path, tmp_path: Path, options: list[str] | None = None
) -> dict[str, float]:
    from opentelemetry.sdk.trace import TracerProvider

    from imagesearch.stack.triton import TritonServer
    from imagesearch_embedder.app import build_server as build_embedder
    from imagesearch_embedder.settings import EmbedderSettings
    from imagesearch_gateway.app import GatewayBackend
    from imagesearch_gateway.settings import GatewaySettings

    repo = base_model_repository(tmp_path / "model_repo")
    assert (
        await asyncio.to_thread(
            cli, ["adapt", str(fit_on), "--model-repo", str(repo), "--no-progress", *(options or [])]
        )
        == 0
    )
    servers: list[ServiceServer] = []
    with TritonServer(model_repository=repo, runtime_dir=tmp_path / "triton") as triton:
        try:
            embedder = build_embedder(
                EmbedderSettings.from_env(
                    {
                        "EMBEDDER_HOST": "127.0.0.1",
                        "EMBEDDER_PORT": "0",
                        "EMBEDDER_METRICS_PORT": "0",
                        "TRITON_URL": triton.grpc_url,
                    }
                ),
                TracerProvider(),
            )
            servers.append(embedder)
            await embedder.start()
            await embedder.wait_until_serving(timeout=120)
            settings = GatewaySettings(
                host="127.0.0.1",
                port=0,
                embedder_addr=embedder.address,
                retriever_addr=fleet.retriever.address,
                redis_url="",
                api_keys_file=str(KEYS_FILE),
            )
            gateway = ServiceServer(
                "gateway",
                GatewayBackend(settings, TracerProvider()),
                ServerOptions(host="127.0.0.1", port=0),
                TracerProvider(),
            )
            servers.append(gateway)
            await gateway.start()
            await gateway.wait_until_serving(timeout=60)
            out = tmp_path / "dev.json"
            argv = ["--gateway", gateway.address, "eval", str(dev_set), "--out", str(out), "--no-progress"]
            assert await asyncio.to_thread(cli, argv) == 0
        finally:
            for server in reversed(servers):
                await server.stop(1)
    report: dict[str, float] = json.loads(out.read_text())["report"]
    return report
