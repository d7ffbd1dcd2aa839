"""Gateway settings, read once from the environment in main() and passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from imagesearch.common.config import SettingsError, env_bool, env_float, env_int, env_str
from imagesearch.contracts.calibration import FALLBACK as CALIBRATION_FALLBACK
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch.contracts.limits import MAX_ROWS_PER_PRODUCT

CALIBRATION_DEFAULT = str(CALIBRATION_FALLBACK)


def _calibration(text: str) -> ScoreCalibration:
    try:
        return ScoreCalibration.parse(text)
    except ValueError as err:
        raise SettingsError(f"SAME_PRODUCT_CALIBRATION {err}") from None


# (variable, default, meaning) — also rendered by `--help`.
ENV_VARS: tuple[tuple[str, str, str], ...] = (
    ("GATEWAY_HOST", "0.0.0.0", "interface to listen on"),
    ("GATEWAY_PORT", "50051", "gRPC port of the public SearchService"),
    ("EMBEDDER_ADDR", "127.0.0.1:50052", "embedder service host:port"),
    ("RETRIEVER_ADDR", "127.0.0.1:50053", "retriever service host:port"),
    ("REDIS_URL", "redis://127.0.0.1:6379/0", "result cache; empty string disables caching"),
    ("CACHE_TTL_SECONDS", "300", "how long a cached search answer lives"),
    ("CACHE_TIMEOUT_SECONDS", "0.25", "give up on Redis after this long and search uncached"),
    ("CACHE_RETRY_SECONDS", "2", "after a Redis failure, skip the cache this long before trying again"),
    ("EMBED_TIMEOUT_SECONDS", "15", "deadline of each call to the embedder"),
    ("RETRIEVE_TIMEOUT_SECONDS", "10", "deadline of each call to the retriever"),
    ("GATEWAY_MAX_MESSAGE_BYTES", str(16 * 1024 * 1024), "largest request accepted (RESOURCE_EXHAUSTED above)"),
    (
        "GATEWAY_MAX_IMAGES_PER_PRODUCT",
        "32",
        "images one product may carry (at most 64 with "
        "GATEWAY_INDEX_OBJECT_CROPS: the retriever stores at most 128 rows per product)",
    ),
    (
        "GATEWAY_INDEX_OBJECT_CROPS",
        "true",
        "index every catalog image twice: as sent, and trimmed to the object "
        "on its plain background (matches tight query crops; twice the catalog rows and embedding work)",
    ),
    (
        "GATEWAY_CATEGORY_BOOST",
        "0.5",
        "after the best match, rank products of the predicted category ahead of "
        "look-alikes from others: the lift, in units of the query's top-10 score spread (0 = plain score order)",
    ),
    (
        "GATEWAY_RERANK_DEPTH",
        "50",
        "nearest products fetched for that ranking when the caller asks for fewer (results still top_k)",
    ),
    (
        "GATEWAY_WHOLE_PHOTO_SLOTS",
        "2",
        "when the best hit of a localised query is unconvincing, the last places of "
        "the first 10 that go to the whole photo's best products (in case the crop missed the product; 0 = never)",
    ),
    ("GATEWAY_WHOLE_PHOTO_BELOW", "0.5", "unconvincing = a same-product probability below this"),
    (
        "GATEWAY_LOCALIZE_QUERIES",
        "true",
        "crop query photos to the product the model finds before matching "
        "(a second model evaluation; a request's region overrides it)",
    ),
    (
        "SAME_PRODUCT_CALIBRATION",
        CALIBRATION_DEFAULT,
        "fallback slope,intercept of the logistic map from score "
        "to same-product probability, used only when the served model version carries none (its Triton config's "
        "same_product_calibration_v<version>; tools/fit_calibration.py prints both)",
    ),
    ("GATEWAY_GRACE_SECONDS", "20", "drain time for in-flight calls on SIGTERM"),
    ("LOG_LEVEL", "INFO", "logging level"),
)


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "0.0.0.0"
    port: int = 50051
    embedder_addr: str = "127.0.0.1:50052"
    retriever_addr: str = "127.0.0.1:50053"
    redis_url: str = "redis://127.0.0.1:6379/0"
    cache_ttl_seconds: int = 300
    cache_timeout_seconds: float = 0.25
    cache_retry_seconds: float = 2.0
    embed_timeout_seconds: float = 15.0
    retrieve_timeout_seconds: float = 10.0
    max_message_bytes: int = 16 * 1024 * 1024
    max_images_per_product: int = 32
    grace_seconds: float = 20.0
    localize_queries: bool = True
    index_object_crops: bool = True
    category_boost: float = 0.5
    rerank_depth: int = 50
    whole_photo_slots: int = 2
    whole_photo_below: float = 0.5
    calibration: ScoreCalibration = CALIBRATION_FALLBACK
    log_level: str = "INFO"
    default_top_k: int = 10
    max_top_k: int = 100

    def __post_init__(self) -> None:
        if not 0.0 <= self.whole_photo_below <= 1.0:
            raise SettingsError(f"GATEWAY_WHOLE_PHOTO_BELOW is a probability, in [0, 1]; got {self.whole_photo_below}")
        # Checked here, not at the first upsert: the retriever would refuse the whole request.
        rows = self.max_images_per_product * (2 if self.index_object_crops else 1)
        if rows > MAX_ROWS_PER_PRODUCT:
            raise SettingsError(
                f"GATEWAY_MAX_IMAGES_PER_PRODUCT={self.max_images_per_product} makes {rows} rows per product"
                f"{' (GATEWAY_INDEX_OBJECT_CROPS indexes each image twice)' if self.index_object_crops else ''}; "
                f"the retriever stores at most {MAX_ROWS_PER_PRODUCT}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        e = environ
        redis_url = (os.environ if e is None else e).get("REDIS_URL")
        return cls(
            host=env_str("GATEWAY_HOST", cls.host, e),
            port=env_int("GATEWAY_PORT", cls.port, e, minimum=0),
            embedder_addr=env_str("EMBEDDER_ADDR", cls.embedder_addr, e),
            retriever_addr=env_str("RETRIEVER_ADDR", cls.retriever_addr, e),
            # An explicitly empty REDIS_URL turns the cache off.
            redis_url=cls.redis_url if redis_url is None else redis_url.strip(),
            cache_ttl_seconds=env_int("CACHE_TTL_SECONDS", cls.cache_ttl_seconds, e, minimum=1),
            cache_timeout_seconds=env_float("CACHE_TIMEOUT_SECONDS", cls.cache_timeout_seconds, e, minimum=0.01),
            cache_retry_seconds=env_float("CACHE_RETRY_SECONDS", cls.cache_retry_seconds, e, minimum=0.0),
            embed_timeout_seconds=env_float("EMBED_TIMEOUT_SECONDS", cls.embed_timeout_seconds, e, minimum=0.1),
            retrieve_timeout_seconds=env_float(
                "RETRIEVE_TIMEOUT_SECONDS", cls.retrieve_timeout_seconds, e, minimum=0.1
            ),
            max_message_bytes=env_int("GATEWAY_MAX_MESSAGE_BYTES", cls.max_message_bytes, e, minimum=1024),
            max_images_per_product=env_int("GATEWAY_MAX_IMAGES_PER_PRODUCT", cls.max_images_per_product, e, minimum=1),
            grace_seconds=env_float("GATEWAY_GRACE_SECONDS", cls.grace_seconds, e, minimum=0.0),
            localize_queries=env_bool("GATEWAY_LOCALIZE_QUERIES", cls.localize_queries, e),
            index_object_crops=env_bool("GATEWAY_INDEX_OBJECT_CROPS", cls.index_object_crops, e),
            category_boost=env_float("GATEWAY_CATEGORY_BOOST", cls.category_boost, e, minimum=0.0),
            rerank_depth=env_int("GATEWAY_RERANK_DEPTH", cls.rerank_depth, e, minimum=1),
            whole_photo_slots=env_int("GATEWAY_WHOLE_PHOTO_SLOTS", cls.whole_photo_slots, e, minimum=0),
            whole_photo_below=env_float("GATEWAY_WHOLE_PHOTO_BELOW", cls.whole_photo_below, e, minimum=0.0),
            calibration=_calibration(env_str("SAME_PRODUCT_CALIBRATION", CALIBRATION_DEFAULT, e)),
            log_level=env_str("LOG_LEVEL", cls.log_level, e),
        )
