"""Writing an adapted model as a new version of the Triton model.

    model_repo/image_embedding/
      config.pbtxt              + parameter same_product_calibration_v<N> (and in configs/*.pbtxt,
                                whose fixed EMBEDDING dims become the new width), through
                                imagesearch.contracts.model.ConfigFile, the configs' one writer
      <base>/                   the base version (model.onnx from tools/export_model.py)
      <N>/model.onnx            base graph + whitening (+ learned localisation map) (graph.py)
      <N>/model.py              the Python-backend runner, copied from the base version
      <N>/adaptation.json       how it was made: catalog, views, settings, figures

Triton serves the newest version by default, so the next start of the stack
serves the adapted model. Its vectors have another version (and dimension), so
the retriever puts them in a new collection: re-index the catalog after adapting.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from imagesearch.adaptation.graph import write_adapted_graph
from imagesearch.adaptation.objectness import Objectness
from imagesearch.adaptation.whitening import Whitening
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.contracts.model import (
    ADAPTATION_RECORD,
    CONFIG_FILE,
    MODEL_FILE,
    RUNNER,
    ConfigFile,
    config_paths,
    is_adapted,
    versions,
)


class RepositoryError(ValueError):
    """The model directory is not laid out as expected; the message says what is missing."""


def base_model(model_dir: Path, base_version: int | None) -> tuple[int, Path]:
    """(version, model.onnx path) of the base: the given version, or the newest one that is not adapted."""
    if not (model_dir / CONFIG_FILE).is_file():
        raise RepositoryError(f"{model_dir} has no {CONFIG_FILE}: not a Triton model directory")
    if base_version is not None and is_adapted(model_dir, base_version):
        # Its graph already ends in a whitening: refuse before minutes of fitting, not when writing.
        raise RepositoryError(
            f"version {base_version} of {model_dir} is itself adapted ({ADAPTATION_RECORD}); adapt from a base "
            "version instead (the default: the newest version that is not adapted)"
        )
    candidates = (
        [base_version]
        if base_version is not None
        else [v for v in reversed(versions(model_dir)) if not is_adapted(model_dir, v)]
    )
    for version in candidates:
        path = model_dir / str(version) / MODEL_FILE
        if path.is_file():
            return version, path
    wanted = f"version {base_version}" if base_version is not None else "a base (not adapted) version"
    raise RepositoryError(
        f"{model_dir} has no {wanted} with a {MODEL_FILE}; build the base model first "
        "(scripts/bootstrap.sh or python tools/export_model.py)"
    )


def write_version(
    model_dir: Path,
    base_version: int,
    base_path: Path,
    whitening: Whitening,
    calibration: ScoreCalibration,
    record: dict[str, Any],
    version: int | None = None,
    objectness: Objectness | None = None,
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
        description = f"learned whitening {whitening.input_dimension}->{whitening.dimension}"
        if objectness is not None:
            description += " and a learned localisation map in SALIENCY"
        write_adapted_graph(
            base_path,
            staging / MODEL_FILE,
            {
                "imagesearch.adaptation": f"{description} on top of version {base_version}",
                "imagesearch.embedding": f"EMBEDDING float32 [N,{whitening.dimension}] L2-normalised",
            },
            whitening,
            objectness,
        )
        (staging / ADAPTATION_RECORD).write_text(json.dumps({**record, "version": version}, indent=2) + "\n")
        # Triton must never see a half-written version: swap the whole directory in at the end.
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for path in config_paths(model_dir):
        config = ConfigFile.read(path)
        config.set_calibration(version, calibration)
        config.set_embedding_width(whitening.dimension)
        config.write()
    return version, target
