"""The embedder's settings and command line."""

from __future__ import annotations

import pytest

from imagesearch.common.config import SettingsError
from imagesearch_embedder.settings import EmbedderSettings


def test_settings_from_env() -> None:
    s = EmbedderSettings.from_env(
        {
            "EMBEDDER_PORT": "6000",
            "TRITON_MODEL_VERSION": "3",
            "EMBEDDER_RESIZE_MODE": "PAD",
            "EMBEDDER_MAX_PIXELS": "1_000_000",
            "EMBEDDER_DECODE_THREADS": "3",
        }
    )
    assert (s.port, s.triton_model_version, s.resize_mode, s.max_pixels, s.decode_workers) == (
        6000,
        "3",
        "pad",
        1_000_000,
        3,
    )
    defaults = EmbedderSettings.from_env({})
    assert (defaults.triton_url, defaults.max_image_bytes, defaults.max_batch_images) == (
        "127.0.0.1:8001",
        10 * 2**20,
        64,
    )
    with pytest.raises(SettingsError, match="EMBEDDER_RESIZE_MODE"):
        EmbedderSettings.from_env({"EMBEDDER_RESIZE_MODE": "stretch"})
    with pytest.raises(SettingsError, match="EMBEDDER_MAX_PIXELS"):
        EmbedderSettings.from_env({"EMBEDDER_MAX_PIXELS": str(10**9)})
    with pytest.raises(SettingsError, match="TRITON_TIMEOUT_SECONDS"):
        EmbedderSettings.from_env({"TRITON_TIMEOUT_SECONDS": "soon"})
