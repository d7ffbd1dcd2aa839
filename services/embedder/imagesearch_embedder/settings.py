"""Embedder settings: each variable declared once, read in main() and passed in."""

from __future__ import annotations

import os
from dataclasses import dataclass

from imagesearch.common.config import Settings, SettingsError, setting
from imagesearch.common.logs import LOG_FORMATS
from imagesearch.common.tls import TlsFiles, server_tls
from imagesearch.contracts.limits import MAX_IMAGES_PER_EMBED_REQUEST
from imagesearch.contracts.model import MODEL_NAME, SIZE_MULTIPLE
from imagesearch.imaging.decode import ResizeMode
from imagesearch.imaging.framing import IMAGE_SIZE, LOCALIZE_SIZE
from imagesearch.imaging.sniff import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, PILLOW_BOMB_PIXELS

RESIZE_MODES = tuple(mode.value for mode in ResizeMode)


@dataclass(frozen=True, repr=False)
class EmbedderSettings(Settings):
    host: str = setting("0.0.0.0", "EMBEDDER_HOST", "interface to listen on")
    port: int = setting(50052, "EMBEDDER_PORT", "gRPC port of the EmbedderService", minimum=0)
    metrics_port: int = setting(9465, "EMBEDDER_METRICS_PORT", "Prometheus /metrics port (0: a free one)", minimum=0)
    tls_cert_file: str = setting(
        "", "EMBEDDER_TLS_CERT_FILE", "PEM certificate chain: serve TLS (with EMBEDDER_TLS_KEY_FILE)"
    )
    tls_key_file: str = setting("", "EMBEDDER_TLS_KEY_FILE", "PEM private key of EMBEDDER_TLS_CERT_FILE")
    tls_client_ca_file: str = setting(
        "",
        "EMBEDDER_TLS_CLIENT_CA_FILE",
        "PEM CA bundle: refuse callers without a client certificate it signed (mutual TLS with the gateway)",
    )
    triton_url: str = setting(
        "127.0.0.1:8001",
        "TRITON_URL",
        "Triton gRPC target: host:port, or every pod (dns:///name:port on a headless Service, ipv4:a:p,b:p)",
    )
    triton_model: str = setting(MODEL_NAME, "TRITON_MODEL", "Triton model that turns images into embeddings")
    triton_model_version: str = setting(
        "", "TRITON_MODEL_VERSION", "model version to pin; empty = the latest version Triton serves"
    )
    triton_timeout_seconds: float = setting(
        10.0, "TRITON_TIMEOUT_SECONDS", "deadline of each call to Triton", minimum=0.01
    )
    max_image_bytes: int = setting(
        DEFAULT_MAX_BYTES, "EMBEDDER_MAX_IMAGE_BYTES", "largest encoded image accepted (per image)", minimum=1
    )
    max_pixels: int = setting(
        DEFAULT_MAX_PIXELS,
        "EMBEDDER_MAX_PIXELS",
        f"largest width*height accepted (at most {PILLOW_BOMB_PIXELS})",
        minimum=1,
    )
    max_batch_images: int = setting(
        MAX_IMAGES_PER_EMBED_REQUEST, "EMBEDDER_MAX_BATCH_IMAGES", "most images in one Embed request", minimum=1
    )
    max_message_bytes: int = setting(
        64 * 1024 * 1024, "EMBEDDER_MAX_MESSAGE_BYTES", "largest gRPC message (RESOURCE_EXHAUSTED above)", minimum=1024
    )
    max_in_flight: int = setting(
        128,
        "EMBEDDER_MAX_IN_FLIGHT",
        "calls served at once; more are refused at once with RESOURCE_EXHAUSTED",
        minimum=1,
    )
    max_in_flight_bytes: int = setting(
        256 * 1024 * 1024,
        "EMBEDDER_MAX_IN_FLIGHT_BYTES",
        "request bytes held by the calls in flight; more are refused at once with RESOURCE_EXHAUSTED",
        minimum=1024,
    )
    decode_memory_bytes: int = setting(
        1024 * 1024 * 1024,
        "EMBEDDER_DECODE_MEMORY_BYTES",
        "decoded pixels held at once by all requests (an upper bound per image: its mode's bytes per pixel, "
        "twice, times its size); beyond it RESOURCE_EXHAUSTED. Keep it 400 MiB under the memory limit",
        minimum=1024 * 1024,
    )
    decode_threads: int = setting(
        0, "EMBEDDER_DECODE_THREADS", "threads that validate and decode images", minimum=0, shown_default="<cpu count>"
    )
    resize_mode: str = setting(
        ResizeMode.CROP.value,
        "EMBEDDER_RESIZE_MODE",
        "crop: shorter side to model size, centre crop; pad: letterbox on white",
        parse=str.lower,
        choices=RESIZE_MODES,
    )
    image_size: int = setting(
        IMAGE_SIZE,
        "EMBEDDER_IMAGE_SIZE",
        "side of the square the model embeds, when the model takes any size (multiple of 32)",
    )
    localize_size: int = setting(
        LOCALIZE_SIZE,
        "EMBEDDER_LOCALIZE_SIZE",
        "side of the letterboxed photo the localisation pass looks at (multiple of 32)",
    )
    grace_seconds: float = setting(
        20.0, "EMBEDDER_GRACE_SECONDS", "drain time for in-flight calls on SIGTERM", minimum=0
    )
    log_level: str = setting("INFO", "LOG_LEVEL", "logging level")
    log_format: str = setting(
        "json",
        "LOG_FORMAT",
        "json: one object per line with trace_id/span_id; text: for a terminal",
        choices=LOG_FORMATS,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.tls_files  # noqa: B018 - a half-set TLS configuration fails here, naming its variables
        for name, size in (("EMBEDDER_IMAGE_SIZE", self.image_size), ("EMBEDDER_LOCALIZE_SIZE", self.localize_size)):
            if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
                raise SettingsError(f"{name} must be a positive multiple of {SIZE_MULTIPLE}, got {size}")
        if not 1 <= self.max_pixels <= PILLOW_BOMB_PIXELS:
            raise SettingsError(f"EMBEDDER_MAX_PIXELS must lie in [1, {PILLOW_BOMB_PIXELS}], got {self.max_pixels}")

    @property
    def decode_workers(self) -> int:
        return self.decode_threads or os.cpu_count() or 1

    @property
    def tls_files(self) -> TlsFiles | None:
        return server_tls(
            self.tls_cert_file,
            self.tls_key_file,
            self.tls_client_ca_file,
            ("EMBEDDER_TLS_CERT_FILE", "EMBEDDER_TLS_KEY_FILE", "EMBEDDER_TLS_CLIENT_CA_FILE"),
        )
