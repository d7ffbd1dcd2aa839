"""Gateway settings: each variable declared once, read in main() and passed in."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagesearch.common.config import Settings, SettingsError, setting
from imagesearch.common.logs import LOG_FORMATS
from imagesearch.common.tls import ClientTls, TlsFiles, client_tls, server_tls
from imagesearch.contracts.calibration import FALLBACK, ScoreCalibration
from imagesearch.contracts.limits import MAX_ROWS_PER_PRODUCT

NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, repr=False)
class GatewaySettings(Settings):
    host: str = setting("0.0.0.0", "GATEWAY_HOST", "interface to listen on")
    port: int = setting(50051, "GATEWAY_PORT", "gRPC port of the public SearchService", minimum=0)
    metrics_port: int = setting(9464, "GATEWAY_METRICS_PORT", "Prometheus /metrics port (0: a free one)", minimum=0)
    embedder_addr: str = setting(
        "127.0.0.1:50052",
        "EMBEDDER_ADDR",
        "embedder gRPC target: host:port, or every pod (dns:///name:port on a headless Service, ipv4:a:p,b:p)",
    )
    retriever_addr: str = setting(
        "127.0.0.1:50053",
        "RETRIEVER_ADDR",
        "retriever gRPC target: host:port, or every pod (dns:///name:port on a headless Service, ipv4:a:p,b:p)",
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "REDIS_URL",
        "result cache (redis://[:PASSWORD@]host:port/db, rediss:// for TLS); empty string disables caching",
        empty_is_a_value=True,
        secret=True,  # it may carry the password
    )
    cache_namespace: str = setting(
        "imagesearch",
        "CACHE_NAMESPACE",
        "first part of every Redis key: deployments that share one Redis must each have their own",
    )
    cache_ttl_seconds: int = setting(300, "CACHE_TTL_SECONDS", "how long a cached search answer lives", minimum=1)
    cache_timeout_seconds: float = setting(
        0.25, "CACHE_TIMEOUT_SECONDS", "give up on Redis after this long and search uncached", minimum=0.01
    )
    cache_retry_seconds: float = setting(
        2.0, "CACHE_RETRY_SECONDS", "after a Redis failure, skip the cache this long before trying again", minimum=0
    )
    cache_write_window_seconds: float = setting(
        60.0,
        "CACHE_WRITE_WINDOW_SECONDS",
        "a catalog write that failed or was given up on may still land this long: its catalog is searched "
        "uncached meanwhile (keep it above RETRIEVE_TIMEOUT_SECONDS plus one Milvus call)",
        minimum=1,
    )
    auth: bool = setting(
        True,
        "GATEWAY_AUTH",
        "require an API key on every call (false: anyone who reaches the port may do anything; logged as a warning)",
    )
    api_keys_file: str = setting(
        "",
        "GATEWAY_API_KEYS_FILE",
        "the key file (`imagesearch keys`; a mounted Secret in Kubernetes), re-read when it changes",
    )
    api_keys_reload_seconds: float = setting(
        5.0, "GATEWAY_API_KEYS_RELOAD_SECONDS", "how often the key file is checked for changes (revocations)", minimum=0
    )
    key_rate_per_second: float = setting(
        50.0,
        "GATEWAY_KEY_RATE_PER_SECOND",
        "calls a second each key may make on this replica, unless the key sets its own (0: unlimited)",
        minimum=0,
    )
    auth_failures_per_minute: float = setting(
        30.0,
        "GATEWAY_AUTH_FAILURES_PER_MINUTE",
        "bad keys tolerated per client address before its calls are refused for a while",
        minimum=1,
    )
    reflection: bool = setting(
        False, "GATEWAY_REFLECTION", "serve gRPC reflection on the public port (it lists every method to anyone)"
    )
    tls_cert_file: str = setting(
        "",
        "GATEWAY_TLS_CERT_FILE",
        "PEM certificate chain: serve TLS (with GATEWAY_TLS_KEY_FILE); re-read when replaced",
    )
    tls_key_file: str = setting("", "GATEWAY_TLS_KEY_FILE", "PEM private key of GATEWAY_TLS_CERT_FILE")
    internal_tls_ca_file: str = setting(
        "",
        "INTERNAL_TLS_CA_FILE",
        "PEM CA bundle: call the embedder and retriever over TLS, trusting the certificates it signed",
    )
    internal_tls_cert_file: str = setting(
        "", "INTERNAL_TLS_CERT_FILE", "PEM client certificate for internal services that require one (mutual TLS)"
    )
    internal_tls_key_file: str = setting("", "INTERNAL_TLS_KEY_FILE", "PEM private key of INTERNAL_TLS_CERT_FILE")
    trust_trace_context: bool = setting(
        False,
        "GATEWAY_TRUST_TRACE_CONTEXT",
        "let callers' traceparent/tracestate join and sample our traces (only behind a proxy that strips outsiders')",
    )
    embed_timeout_seconds: float = setting(
        15.0, "EMBED_TIMEOUT_SECONDS", "deadline of each call to the embedder", minimum=0.1
    )
    retrieve_timeout_seconds: float = setting(
        10.0, "RETRIEVE_TIMEOUT_SECONDS", "deadline of each call to the retriever", minimum=0.1
    )
    max_message_bytes: int = setting(
        16 * 1024 * 1024,
        "GATEWAY_MAX_MESSAGE_BYTES",
        "largest request accepted (RESOURCE_EXHAUSTED above)",
        minimum=1024,
    )
    max_in_flight: int = setting(
        64, "GATEWAY_MAX_IN_FLIGHT", "calls served at once; more are refused at once with RESOURCE_EXHAUSTED", minimum=1
    )
    max_in_flight_bytes: int = setting(
        256 * 1024 * 1024,
        "GATEWAY_MAX_IN_FLIGHT_BYTES",
        "request bytes held by the calls in flight; more are refused at once with RESOURCE_EXHAUSTED",
        minimum=1024,
    )
    max_images_per_product: int = setting(
        32,
        "GATEWAY_MAX_IMAGES_PER_PRODUCT",
        f"images one product may carry (at most {MAX_ROWS_PER_PRODUCT // 2} with GATEWAY_INDEX_OBJECT_CROPS: "
        f"the retriever stores at most {MAX_ROWS_PER_PRODUCT} rows per product)",
        minimum=1,
    )
    index_object_crops: bool = setting(
        True,
        "GATEWAY_INDEX_OBJECT_CROPS",
        "index every catalog image twice: as sent, and trimmed to the object on its plain background "
        "(matches tight query crops; twice the catalog rows and embedding work)",
    )
    category_boost: float = setting(
        0.5,
        "GATEWAY_CATEGORY_BOOST",
        "after the best match, rank products of the predicted category ahead of look-alikes from others: "
        "the lift, in units of the query's top-10 score spread (0 = plain score order)",
        minimum=0,
    )
    rerank_depth: int = setting(
        50,
        "GATEWAY_RERANK_DEPTH",
        "nearest products fetched for that ranking when the caller asks for fewer (results still top_k)",
        minimum=1,
    )
    whole_photo_slots: int = setting(
        2,
        "GATEWAY_WHOLE_PHOTO_SLOTS",
        "when the best hit of a localised query is unconvincing, the last places of the first 10 that go to "
        "the whole photo's best products (in case the crop missed the product; 0 = never)",
        minimum=0,
    )
    whole_photo_below: float = setting(
        0.5, "GATEWAY_WHOLE_PHOTO_BELOW", "unconvincing = a same-product probability below this", minimum=0
    )
    zoom_tile_side: float = setting(
        0.6,
        "GATEWAY_ZOOM_TILE_SIDE",
        "when the best hit of a localised query is unconvincing, also search the photo's four corners, each this "
        "share of its side, every product at its best of crop and tiles (9.2 model evaluations more for those "
        "queries with GATEWAY_ZOOM_TILE_LOCALIZE, 5.2 without; 0 = never)",
        minimum=0,
    )
    zoom_tile_discount: float = setting(
        1.2,
        "GATEWAY_ZOOM_TILE_DISCOUNT",
        "how much less a tile's match counts than the crop's, in logits of the same-product calibration",
        minimum=0,
    )
    zoom_tile_localize: bool = setting(
        True,
        "GATEWAY_ZOOM_TILE_LOCALIZE",
        "look for the product inside each zoom tile as in a photo, and search both the tile and that crop "
        "(small products need the closer crop: 9.2 model evaluations of 224 px per unconvincing query instead "
        "of 5.2; false = the tiles as they are)",
    )
    zoom_popout: bool = setting(
        True,
        "GATEWAY_ZOOM_POPOUT",
        "when the best hit of a localised query is unconvincing, also look at the photo's most conspicuous part "
        "(the embedder's model-free second guess at the product, searched as a localised zoom tile is: 2.3 model "
        "evaluations more for those queries; on even with GATEWAY_ZOOM_TILE_SIDE=0)",
    )
    localize_queries: bool = setting(
        True,
        "GATEWAY_LOCALIZE_QUERIES",
        "crop query photos to the product the model finds before matching "
        "(a second model evaluation; a request's region overrides it)",
    )
    detect_objects: bool = setting(
        True,
        "GATEWAY_DETECT_OBJECTS",
        "list every object of a query photo in SearchResponse.objects, searchable by object_index "
        "(with GATEWAY_LOCALIZE_QUERIES; a model evaluation and a vote per further object found)",
    )
    calibration: ScoreCalibration = setting(
        FALLBACK,
        "SAME_PRODUCT_CALIBRATION",
        "fallback slope,intercept of the logistic map from score to same-product probability, used only when "
        "the served model version carries none (its Triton config's same_product_calibration_v<version>; "
        "tools/fit_calibration.py writes both)",
        parse=ScoreCalibration.parse,
    )
    grace_seconds: float = setting(
        20.0, "GATEWAY_GRACE_SECONDS", "drain time for in-flight calls on SIGTERM", minimum=0
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
        self.internal_tls  # noqa: B018 - a half-set TLS configuration fails here, naming its variables
        self.tls_files  # noqa: B018 - a half-set TLS configuration fails here, naming its variables
        if self.auth and not self.api_keys_file:
            raise SettingsError(
                "GATEWAY_API_KEYS_FILE is not set: create keys with `imagesearch keys create --file PATH` and set it, "
                "or set GATEWAY_AUTH=false to serve without authentication (never on a reachable network)"
            )
        if not NAMESPACE.fullmatch(self.cache_namespace):
            raise SettingsError(f"CACHE_NAMESPACE must match {NAMESPACE.pattern}, got {self.cache_namespace!r}")
        if not 0.0 <= self.zoom_tile_side < 1.0:
            raise SettingsError(
                f"GATEWAY_ZOOM_TILE_SIDE is a share of the photo's side, in [0, 1); got {self.zoom_tile_side}"
            )
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

    @property
    def tls_files(self) -> TlsFiles | None:
        return server_tls(
            self.tls_cert_file, self.tls_key_file, "", ("GATEWAY_TLS_CERT_FILE", "GATEWAY_TLS_KEY_FILE", "")
        )

    @property
    def internal_tls(self) -> ClientTls | None:
        return client_tls(
            self.internal_tls_ca_file,
            self.internal_tls_cert_file,
            self.internal_tls_key_file,
            ("INTERNAL_TLS_CA_FILE", "INTERNAL_TLS_CERT_FILE", "INTERNAL_TLS_KEY_FILE"),
        )
