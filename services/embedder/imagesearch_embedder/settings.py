"""Embedder settings, read once from the environment in main() and passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from imagesearch.common.config import SettingsError, env_float, env_int, env_str

RESIZE_MODES = ("crop", "pad")

# Pillow's own decompression-bomb threshold (PIL.Image.MAX_IMAGE_PIXELS default): above it
# Image.open() warns, above twice it raises. Our explicit pixel cap must stay below it so
# our check is the one that fires, with our message; we never raise Pillow's global.
PILLOW_BOMB_PIXELS = 1024 * 1024 * 1024 // 4 // 3

# (variable, default, meaning) — also rendered by `--help`.
ENV_VARS: tuple[tuple[str, str, str], ...] = (
    ("EMBEDDER_HOST", "0.0.0.0", "interface to listen on"),
    ("EMBEDDER_PORT", "50052", "gRPC port of the EmbedderService"),
    ("TRITON_URL", "127.0.0.1:8001", "Triton Inference Server gRPC host:port"),
    ("TRITON_MODEL", "image_embedding", "Triton model that turns images into embeddings"),
    ("TRITON_MODEL_VERSION", "", "model version to pin; empty = the latest version Triton serves"),
    ("TRITON_TIMEOUT_SECONDS", "10", "deadline of each call to Triton"),
    ("EMBEDDER_MAX_IMAGE_BYTES", str(10 * 1024 * 1024), "largest encoded image accepted (per image)"),
    ("EMBEDDER_MAX_PIXELS", "40000000", f"largest width*height accepted (at most {PILLOW_BOMB_PIXELS})"),
    ("EMBEDDER_MAX_BATCH_IMAGES", "64", "most images in one Embed request"),
    ("EMBEDDER_MAX_MESSAGE_BYTES", str(64 * 1024 * 1024), "largest gRPC message (RESOURCE_EXHAUSTED above)"),
    ("EMBEDDER_DECODE_THREADS", "<cpu count>", "threads that validate and decode images"),
    ("EMBEDDER_RESIZE_MODE", "crop", "crop: shorter side to model size, centre crop; pad: letterbox on white"),
    (
        "EMBEDDER_IMAGE_SIZE",
        "256",
        "side of the square the model embeds, when the model takes any size (multiple of 32)",
    ),
    ("EMBEDDER_LOCALIZE_SIZE", "224", "side of the letterboxed photo the localisation pass looks at (multiple of 32)"),
    ("EMBEDDER_GRACE_SECONDS", "20", "drain time for in-flight calls on SIGTERM"),
    ("LOG_LEVEL", "INFO", "logging level"),
)


@dataclass(frozen=True)
class EmbedderSettings:
    host: str = "0.0.0.0"
    port: int = 50052
    triton_url: str = "127.0.0.1:8001"
    triton_model: str = "image_embedding"
    triton_model_version: str = ""
    triton_timeout_seconds: float = 10.0
    max_image_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_batch_images: int = 64
    max_message_bytes: int = 64 * 1024 * 1024
    decode_threads: int = 0  # 0 = os.cpu_count(), resolved by from_env()
    resize_mode: str = "crop"
    # 224 px to find the product, 256 px to embed its crop: 2.31 model evaluations at 224 px per
    # localised query. A 288 px first pass (2.65-2.96) was no better (docs/quality.md).
    image_size: int = 256
    localize_size: int = 224
    grace_seconds: float = 20.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        # Checked here too so settings built in code (tests, tools) obey the same rules.
        if self.resize_mode not in RESIZE_MODES:
            raise SettingsError(
                f"EMBEDDER_RESIZE_MODE must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode!r}"
            )
        for name, size in (("EMBEDDER_IMAGE_SIZE", self.image_size), ("EMBEDDER_LOCALIZE_SIZE", self.localize_size)):
            if size < 32 or size % 32:
                raise SettingsError(f"{name} must be a positive multiple of 32, got {size}")
        if not 1 <= self.max_pixels <= PILLOW_BOMB_PIXELS:
            raise SettingsError(f"EMBEDDER_MAX_PIXELS must lie in [1, {PILLOW_BOMB_PIXELS}], got {self.max_pixels}")

    @property
    def decode_workers(self) -> int:
        return self.decode_threads or os.cpu_count() or 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmbedderSettings:
        e = environ
        return cls(
            host=env_str("EMBEDDER_HOST", cls.host, e),
            port=env_int("EMBEDDER_PORT", cls.port, e, minimum=0),
            triton_url=env_str("TRITON_URL", cls.triton_url, e),
            triton_model=env_str("TRITON_MODEL", cls.triton_model, e),
            triton_model_version=env_str("TRITON_MODEL_VERSION", cls.triton_model_version, e),
            triton_timeout_seconds=env_float("TRITON_TIMEOUT_SECONDS", cls.triton_timeout_seconds, e, minimum=0.01),
            max_image_bytes=env_int("EMBEDDER_MAX_IMAGE_BYTES", cls.max_image_bytes, e, minimum=1),
            max_pixels=env_int("EMBEDDER_MAX_PIXELS", cls.max_pixels, e, minimum=1),
            max_batch_images=env_int("EMBEDDER_MAX_BATCH_IMAGES", cls.max_batch_images, e, minimum=1),
            max_message_bytes=env_int("EMBEDDER_MAX_MESSAGE_BYTES", cls.max_message_bytes, e, minimum=1024),
            decode_threads=env_int("EMBEDDER_DECODE_THREADS", os.cpu_count() or 1, e, minimum=1),
            resize_mode=env_str("EMBEDDER_RESIZE_MODE", cls.resize_mode, e).lower(),
            image_size=env_int("EMBEDDER_IMAGE_SIZE", cls.image_size, e, minimum=32),
            localize_size=env_int("EMBEDDER_LOCALIZE_SIZE", cls.localize_size, e, minimum=32),
            grace_seconds=env_float("EMBEDDER_GRACE_SECONDS", cls.grace_seconds, e, minimum=0.0),
            log_level=env_str("LOG_LEVEL", cls.log_level, e),
        )
