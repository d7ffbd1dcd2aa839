"""Retriever settings: each variable declared once, read in main() and passed in."""

from __future__ import annotations

import re
from dataclasses import dataclass

from imagesearch.common.config import Settings, SettingsError, setting
from imagesearch.common.logs import LOG_FORMATS
from imagesearch.common.tls import TlsFiles, server_tls
from imagesearch.contracts.limits import MAX_TOP_K
from imagesearch_retriever.core import OVERFETCH
from imagesearch_retriever.milvus.store import MAX_SEARCH_LIMIT

NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# The over-fetch (OVERFETCH x top_k) must stay within Milvus' limit on topk.
MAX_TOP_K_LIMIT = MAX_SEARCH_LIMIT // OVERFETCH
# Bounded/Eventually would let a deleted product come back: not offered.
READ_CONSISTENCY_LEVELS = ("Strong", "Session")


@dataclass(frozen=True, repr=False)
class RetrieverSettings(Settings):
    host: str = setting("0.0.0.0", "RETRIEVER_HOST", "interface to listen on")
    port: int = setting(50053, "RETRIEVER_PORT", "gRPC port of the internal RetrieverService", minimum=0)
    metrics_port: int = setting(9466, "RETRIEVER_METRICS_PORT", "Prometheus /metrics port (0: a free one)", minimum=0)
    tls_cert_file: str = setting(
        "", "RETRIEVER_TLS_CERT_FILE", "PEM certificate chain: serve TLS (with RETRIEVER_TLS_KEY_FILE)"
    )
    tls_key_file: str = setting("", "RETRIEVER_TLS_KEY_FILE", "PEM private key of RETRIEVER_TLS_CERT_FILE")
    tls_client_ca_file: str = setting(
        "",
        "RETRIEVER_TLS_CLIENT_CA_FILE",
        "PEM CA bundle: refuse callers without a client certificate it signed (mutual TLS with the gateway)",
    )
    milvus_uri: str = setting("http://127.0.0.1:19530", "MILVUS_URI", "Milvus endpoint")
    milvus_token: str = setting(
        "", "MILVUS_TOKEN", "Milvus credentials, 'user:password' or an API key; empty without auth", secret=True
    )
    milvus_db: str = setting("", "MILVUS_DB", "Milvus database; empty for the default one")
    collection_prefix: str = setting(
        "imagesearch", "RETRIEVER_COLLECTION_PREFIX", "first part of every collection name ([A-Za-z_][A-Za-z0-9_]*)"
    )
    max_top_k: int = setting(MAX_TOP_K, "RETRIEVER_MAX_TOP_K", "largest top_k a search may ask for", minimum=1)
    hnsw_m: int = setting(16, "HNSW_M", "HNSW graph degree of new collections", minimum=2)
    hnsw_ef_construction: int = setting(
        200, "HNSW_EF_CONSTRUCTION", "HNSW build-time candidate list of new collections", minimum=1
    )
    hnsw_ef_search: int = setting(
        128, "HNSW_EF_SEARCH", "HNSW search-time candidate list (raised to the fetch size when larger)", minimum=1
    )
    read_consistency: str = setting(
        "Session",
        "RETRIEVER_READ_CONSISTENCY",
        "Session: reads do not wait (every write already ends with a Strong barrier, so it is visible to later "
        "reads when its call returns; with RETRIEVER_REDIS_URL, reads wait for the catalog's shared write "
        "horizon instead, which holds with several query replicas too). Strong: every read waits for Milvus' "
        "next time tick (~1.5 x proxy.timeTickInterval)",
        choices=READ_CONSISTENCY_LEVELS,
    )
    redis_url: str = setting(
        "",
        "RETRIEVER_REDIS_URL",
        "shared write horizons for several retriever replicas and Milvus query replicas "
        "(redis://[:PASSWORD@]host:port/db, rediss:// for TLS; the gateway's Redis will do): a write returns once "
        "every replica's reads will see it, reads wait only for writes they have not seen yet. Empty: none "
        "(one query replica, or RETRIEVER_READ_CONSISTENCY=Strong)",
        empty_is_a_value=True,
        secret=True,  # it may carry the password
    )
    redis_namespace: str = setting(
        "imagesearch",
        "RETRIEVER_REDIS_NAMESPACE",
        "first part of every Redis key the retriever writes: deployments that share one Redis must each have their own",
    )
    redis_timeout_seconds: float = setting(
        0.1,
        "RETRIEVER_REDIS_TIMEOUT_SECONDS",
        "give up on Redis after this long: the read is made Strong instead (a write fails UNAVAILABLE)",
        minimum=0.001,
    )
    timeout_seconds: float = setting(
        10.0, "RETRIEVER_TIMEOUT_SECONDS", "deadline of each Milvus call, retries included", minimum=0.1
    )
    max_message_bytes: int = setting(
        64 * 1024 * 1024,
        "RETRIEVER_MAX_MESSAGE_BYTES",
        "largest gRPC request accepted (upserts carry vectors)",
        minimum=1024,
    )
    max_in_flight: int = setting(
        256,
        "RETRIEVER_MAX_IN_FLIGHT",
        "calls served at once; more are refused at once with RESOURCE_EXHAUSTED",
        minimum=1,
    )
    max_in_flight_bytes: int = setting(
        256 * 1024 * 1024,
        "RETRIEVER_MAX_IN_FLIGHT_BYTES",
        "request bytes held by the calls in flight; more are refused at once with RESOURCE_EXHAUSTED",
        minimum=1024,
    )
    grace_seconds: float = setting(
        20.0, "RETRIEVER_GRACE_SECONDS", "drain time for in-flight calls on SIGTERM", minimum=0
    )
    catalog_count_seconds: float = setting(
        15.0,
        "RETRIEVER_CATALOG_COUNT_SECONDS",
        "how often the products of each catalog are counted for /metrics (a query per catalog)",
        minimum=1,
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
        if not _PREFIX_RE.match(self.collection_prefix):
            raise SettingsError(
                "RETRIEVER_COLLECTION_PREFIX must match [A-Za-z_][A-Za-z0-9_]{0,63} "
                f"(Milvus collection names), got {self.collection_prefix!r}"
            )
        if not 1 <= self.max_top_k <= MAX_TOP_K_LIMIT:
            raise SettingsError(f"RETRIEVER_MAX_TOP_K must be between 1 and {MAX_TOP_K_LIMIT}, got {self.max_top_k}")
        if not 2 <= self.hnsw_m <= 2048:
            raise SettingsError(f"HNSW_M must be between 2 and 2048, got {self.hnsw_m}")
        if not NAMESPACE.fullmatch(self.redis_namespace):
            raise SettingsError(
                f"RETRIEVER_REDIS_NAMESPACE must be 1-64 characters of [A-Za-z0-9_.-], got {self.redis_namespace!r}"
            )
        if not self.milvus_uri:
            raise SettingsError("MILVUS_URI must not be empty")

    @property
    def tls_files(self) -> TlsFiles | None:
        return server_tls(
            self.tls_cert_file,
            self.tls_key_file,
            self.tls_client_ca_file,
            ("RETRIEVER_TLS_CERT_FILE", "RETRIEVER_TLS_KEY_FILE", "RETRIEVER_TLS_CLIENT_CA_FILE"),
        )
