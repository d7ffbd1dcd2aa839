"""The model contract: what the Triton model is called, what goes in and out, where its files
live, and the one reader and writer of its `config.pbtxt` files.

The embedder drives the model through it, `tools/export_model.py` builds version 2 to it,
`imagesearch adapt` writes new versions by it, and the local stack and the tests serve it. The
Python-backend runner (`model_repo/image_embedding/<version>/model.py`) runs inside Triton's own
interpreter, which cannot import this package: it reads every tensor name from the config Triton
hands it, so the config files written here are its contract too.

Tensors (both configs declare exactly these; model_repo/README.md explains them):

    IMAGE      UINT8 [N, H, W, 3]   RGB, NHWC, H and W multiples of 32; normalised inside the graph
    EMBEDDING  FP32  [N, D]         L2-normalised (dot product = cosine); D is each version's own
    LOGITS     FP32  [N, 1000]      ImageNet-1k logits, for debugging
    SALIENCY   FP32  [N, H/16, W/16] where the object is, for localising the product in a photo
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagesearch.contracts.calibration import ScoreCalibration

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

MODEL_NAME = "image_embedding"
INPUT = "IMAGE"
EMBEDDING = "EMBEDDING"
LOGITS = "LOGITS"
SALIENCY = "SALIENCY"
INPUT_DATATYPE = "UINT8"
OUTPUT_DATATYPE = "FP32"
SALIENCY_STRIDE = 16
# Input sides are multiples of this (the network's total stride).
SIZE_MULTIPLE = 32

# The version tools/export_model.py builds from the ImageNet weights; `imagesearch adapt` adds
# later ones on top of it. Triton serves the newest version of the model directory.
BASE_VERSION = "2"

# Files of a version directory, and of the model directory.
MODEL_FILE = "model.onnx"  # Triton's default_model_filename for the onnxruntime backend
RUNNER = "model.py"  # the Python backend's entry point (local, CPU)
ADAPTATION_RECORD = "adaptation.json"  # how an adapted version was made
CONFIG_FILE = "config.pbtxt"  # the default config: Python backend, CPU
CONFIG_DIR = "configs"  # alternatives picked with tritonserver --model-config-name=<name>
GPU_CONFIG = "tensorrt"  # configs/tensorrt.pbtxt: onnxruntime + TensorRT in NVIDIA's container

_CALIBRATION_KEY = "same_product_calibration_v{version}"


def calibration_key(version: str | int) -> str:
    """The config parameter holding `version`'s "slope,intercept": one per version, because one
    config serves every version in the directory."""
    return _CALIBRATION_KEY.format(version=version)


def calibration_of(config: ModelConfig, version: str | int) -> ScoreCalibration | None:
    """The calibration a ModelConfig (Triton's, or a file's) carries for `version`.

    None when it carries none; ValueError, naming the parameter, when the one it carries is unusable.
    """
    key = calibration_key(version)
    if key not in config.parameters:
        return None
    try:
        return ScoreCalibration.parse(config.parameters[key].string_value)
    except ValueError as err:
        raise ValueError(f"parameter {key} {err}") from None


# ---------------------------------------------------------------------------- the repository


def model_dir(repository: Path) -> Path:
    """The model's directory in a Triton model repository."""
    return repository / MODEL_NAME


def versions(directory: Path) -> list[int]:
    """The version numbers present in a model directory, ascending."""
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def is_adapted(directory: Path, version: int | str) -> bool:
    return (directory / str(version) / ADAPTATION_RECORD).exists()


def config_paths(directory: Path) -> list[Path]:
    """Every config of a model directory: the default one, then the alternatives in configs/."""
    return [directory / CONFIG_FILE, *sorted((directory / CONFIG_DIR).glob("*.pbtxt"))]


# ---------------------------------------------------------------------------- config files


@dataclass
class ConfigFile:
    """A `config.pbtxt`: its leading comment block, kept as written, and the ModelConfig below it.

    `read` parses with protobuf's text format (so a typo fails here, not in Triton), `write`
    prints the canonical text form. Explanations belong in the header: comments inside the body
    do not survive a write. The checked-in configs are kept in written form (a test checks), so
    every change, by hand or by a tool, goes through here.
    """

    path: Path
    header: str
    config: ModelConfig

    @classmethod
    def read(cls, path: Path) -> ConfigFile:
        from google.protobuf import text_format
        from tritonclient.grpc.model_config_pb2 import ModelConfig

        text = path.read_text()
        lines = text.splitlines(keepends=True)
        cut = 0
        while cut < len(lines) and (lines[cut].startswith("#") or not lines[cut].strip()):
            cut += 1
        header = "".join(lines[:cut]).strip()
        try:
            config = text_format.Parse("".join(lines[cut:]), ModelConfig())
        except text_format.ParseError as err:
            raise ValueError(f"{path}: not a Triton model config: {err}") from None
        return cls(path, header, config)

    def render(self) -> str:
        from google.protobuf import text_format

        body = text_format.MessageToString(self.config, use_short_repeated_primitives=True)
        return (self.header + "\n\n" if self.header else "") + body

    def write(self) -> None:
        """Replace the file atomically: Triton may read it at any moment."""
        staging = self.path.with_name(f".{self.path.name}.partial")
        staging.write_text(self.render())
        staging.replace(self.path)

    # ---- what the tools change

    def calibration(self, version: str | int) -> ScoreCalibration | None:
        return calibration_of(self.config, version)

    def set_calibration(self, version: str | int, calibration: ScoreCalibration) -> ScoreCalibration:
        """Store `version`'s calibration; returns the one the config now carries. One it already
        carries that agrees within a refit's noise is kept (contracts.calibration.REFIT_NOISE_LOGITS)."""
        try:
            current = calibration_of(self.config, version)
        except ValueError:  # unusable: replaced
            current = None
        if current is not None and current.agrees_with(calibration):
            return current
        self.config.parameters[calibration_key(version)].string_value = str(calibration)
        return calibration

    def embedding_width(self) -> int:
        """EMBEDDING's declared width; -1 when the config leaves it to each version."""
        return int(self._output(EMBEDDING).dims[-1])

    def set_embedding_width(self, width: int) -> bool:
        """Fix EMBEDDING's width to `width` where the config states one; True if it changed.

        Triton's onnxruntime and TensorRT backends (the GPU config) check declared dims against
        the graph and serve the newest version only, so that config must state the newest
        version's width. The Python backend's config declares -1 and is left alone.
        """
        output = self._output(EMBEDDING)
        if output.dims[-1] == -1 or output.dims[-1] == width:
            return False
        output.dims[-1] = width
        return True

    def _output(self, name: str) -> Any:
        for output in self.config.output:
            if output.name == name:
                return output
        raise ValueError(f"{self.path} declares no output {name}")
