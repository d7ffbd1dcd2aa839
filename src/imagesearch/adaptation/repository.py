"""Writing an adapted model as a new version of the Triton model.

    model_repo/image_embedding/
      config.pbtxt              + parameter same_product_calibration_v<N> (and in configs/*.pbtxt,
                                whose fixed EMBEDDING dims become the new width)
      <base>/                   the base version (model.onnx from tools/export_model.py)
      <N>/model.onnx            base graph + whitening (graph.py)
      <N>/model.py              the Python-backend runner, copied from the base version
      <N>/adaptation.json       how it was made: catalog, views, settings, figures

Triton serves the newest version by default, so the next start of the stack
serves the adapted model. Its vectors have another version (and dimension), so
the retriever puts them in a new collection: re-index the catalog after adapting.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from imagesearch.adaptation.graph import append_whitening
from imagesearch.adaptation.whitening import Whitening

CALIBRATION_PARAMETER = "same_product_calibration_v{version}"
RUNNER = "model.py"
MODEL_FILE = "model.onnx"


class RepositoryError(ValueError):
    """The model directory is not laid out as expected; the message says what is missing."""


def versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def base_model(model_dir: Path, base_version: int | None) -> tuple[int, Path]:
    """(version, model.onnx path) of the base: the given version, or the newest one that is not adapted."""
    if not (model_dir / "config.pbtxt").is_file():
        raise RepositoryError(f"{model_dir} has no config.pbtxt: not a Triton model directory")
    candidates = [base_version] if base_version is not None else [
        v for v in reversed(versions(model_dir)) if not (model_dir / str(v) / "adaptation.json").exists()
    ]
    for version in candidates:
        path = model_dir / str(version) / MODEL_FILE
        if path.is_file():
            return version, path
    wanted = f"version {base_version}" if base_version is not None else "a base (not adapted) version"
    raise RepositoryError(
        f"{model_dir} has no {wanted} with a {MODEL_FILE}; build the base model first "
        "(scripts/bootstrap.sh or python tools/export_model.py)"
    )


def _calibration_block(version: int, slope: float, intercept: float, note: str) -> str:
    return (
        f"\n# Written by `imagesearch adapt` ({note}): the same-product probability of version {version}'s scores.\n"
        "parameters {\n"
        f'  key: "{CALIBRATION_PARAMETER.format(version=version)}"\n'
        f'  value: {{ string_value: "{slope:.2f},{intercept:.2f}" }}\n'
        "}\n"
    )


def set_calibration(config: Path, version: int, slope: float, intercept: float, note: str) -> None:
    """Add (or replace) the version's calibration parameter in a config.pbtxt, keeping the rest as written."""
    text = config.read_text()
    key = re.escape(CALIBRATION_PARAMETER.format(version=version))
    # A previous block for this version (with its comment line) is replaced, not duplicated.
    text = re.sub(
        r"\n(# Written by `imagesearch adapt`[^\n]*\n)?parameters \{\s*key: \"" + key + r"\"[^}]*\}[^}]*\}\n", "", text
    )
    config.write_text(text.rstrip("\n") + "\n" + _calibration_block(version, slope, intercept, note))


_EMBEDDING_DIMS = re.compile(r'(name: "EMBEDDING"\n(?:[^\n]*\n){0,6}?\s*dims: \[ )(\d+)( \])')


def set_embedding_width(config: Path, width: int) -> bool:
    """Set a fixed EMBEDDING width to `width` (a config declaring -1 is left alone); True if changed.

    Triton's onnxruntime and TensorRT backends (the GPU config) check the declared dims against
    the graph, and serve the newest version only: the config must state that version's width.
    The Python backend's config declares -1 and needs nothing.
    """
    text = config.read_text()
    updated, count = _EMBEDDING_DIMS.subn(lambda m: f"{m.group(1)}{width}{m.group(3)}", text, count=1)
    if count and updated != text:
        config.write_text(updated)
        return True
    return False


def write_version(
    model_dir: Path,
    base_version: int,
    base_path: Path,
    whitening: Whitening,
    calibration: tuple[float, float],
    record: dict[str, Any],
    version: int | None = None,
) -> tuple[int, Path]:
    """Write the adapted version; returns (version, its directory). Nothing is left half-written on failure."""
    existing = versions(model_dir)
    version = version if version is not None else (max(existing) + 1 if existing else 1)
    if version == base_version:
        raise RepositoryError(f"version {version} is the base model; pick another version number")
    target = model_dir / str(version)
    staging = model_dir / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        runner = base_path.parent / RUNNER
        if runner.is_file():
            shutil.copy2(runner, staging / RUNNER)
        append_whitening(base_path, whitening, staging / MODEL_FILE, {
            "imagesearch.adaptation": f"learned whitening {whitening.input_dimension}->{whitening.dimension} "
                                      f"on top of version {base_version}",
            "imagesearch.embedding": f"EMBEDDING float32 [N,{whitening.dimension}] L2-normalised",
        })
        (staging / "adaptation.json").write_text(json.dumps({**record, "version": version}, indent=2) + "\n")
        # Triton must never see a half-written version: swap the whole directory in at the end.
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    slope, intercept = calibration
    note = f"{record.get('items', '?')} items, {record.get('views', '?')} views"
    for config in [model_dir / "config.pbtxt", *sorted((model_dir / "configs").glob("*.pbtxt"))]:
        set_calibration(config, version, slope, intercept, note)
        set_embedding_width(config, whitening.dimension)
    return version, target
