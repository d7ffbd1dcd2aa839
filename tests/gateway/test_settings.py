"""The gateway's settings: defaults, the environment, and the rules between them."""

from __future__ import annotations

import pytest

from imagesearch.common.config import SettingsError
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch_gateway.settings import GatewaySettings

KEYED = {"GATEWAY_API_KEYS_FILE": "/run/secrets/keys.json"}


def test_authentication_is_on_by_default_and_needs_a_key_file_or_an_explicit_off() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_API_KEYS_FILE is not set"):
        GatewaySettings.from_env({})
    assert GatewaySettings.from_env(KEYED).auth is True
    assert GatewaySettings.from_env({"GATEWAY_AUTH": "false"}).auth is False
    assert GatewaySettings.from_env(KEYED).reflection is False  # the public port lists nothing


def test_object_crops_default_on_and_read_the_environment() -> None:
    assert GatewaySettings.from_env(KEYED).index_object_crops is True
    assert GatewaySettings.from_env({**KEYED, "GATEWAY_INDEX_OBJECT_CROPS": "false"}).index_object_crops is False
    assert GatewaySettings.from_env({**KEYED, "GATEWAY_INDEX_OBJECT_CROPS": "1"}).index_object_crops is True
    with pytest.raises(SettingsError, match="GATEWAY_INDEX_OBJECT_CROPS"):
        GatewaySettings.from_env({**KEYED, "GATEWAY_INDEX_OBJECT_CROPS": "sometimes"})
    assert ("GATEWAY_INDEX_OBJECT_CROPS", "true") in [
        (name, default) for name, default, _ in GatewaySettings.variables()
    ]


def test_doubled_rows_must_fit_the_retrievers_limit() -> None:
    assert GatewaySettings.from_env({**KEYED, "GATEWAY_MAX_IMAGES_PER_PRODUCT": "64"}).max_images_per_product == 64
    with pytest.raises(SettingsError, match="130 rows per product"):
        GatewaySettings.from_env({**KEYED, "GATEWAY_MAX_IMAGES_PER_PRODUCT": "65"})
    off = {"GATEWAY_MAX_IMAGES_PER_PRODUCT": "128", "GATEWAY_INDEX_OBJECT_CROPS": "off"}
    assert GatewaySettings.from_env({**KEYED, **off}).max_images_per_product == 128


def test_the_calibration_setting_is_the_fallback_and_says_so() -> None:
    [(_, default, meaning)] = [v for v in GatewaySettings.variables() if v[0] == "SAME_PRODUCT_CALIBRATION"]
    assert default == "32.84,-23.40" and "only when the served model version carries none" in meaning
    assert GatewaySettings.from_env({**KEYED, "SAME_PRODUCT_CALIBRATION": "5,-1"}).calibration == ScoreCalibration(
        5.0, -1.0
    )
    for bad in ("1", "a,b", "-3,1"):
        with pytest.raises(SettingsError, match="SAME_PRODUCT_CALIBRATION"):
            GatewaySettings.from_env({**KEYED, "SAME_PRODUCT_CALIBRATION": bad})
