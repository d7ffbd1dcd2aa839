"""Retriever settings, read once from the environment in main() and passed in."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from imagesearch.common.config import SettingsError, env_float, env_int, env_str
from imagesearch.contracts.limits import MAX_TOP_K

# (variable, default, meaning) — also rendered by `--help`.
ENV_VARS: tuple[tuple[str, str, str], ...] = (
    ("RETRIEVER_HOST", "0.0.0.0", "interface to listen on"),
    ("RETRIEVER_PORT", "50053", "gRPC port of the internal RetrieverService"),
    ("MILVUS_URI", "http://127.0.0.1:19530", "Milvus endpoint"),
    ("MILVUS_TOKEN", "", "Milvus credentials, 'user:password' or an API key; empty without auth"),
    ("MILVUS_DB", "", "Milvus database; empty for the default one"),
    ("RETRIEVER_COLLECTION_PREFIX", "imagesearch", "first part of every collection name ([A-Za-z_][A-Za-z0-9_]*)"),
    ("RETRIEVER_MAX_TOP_K", str(MAX_TOP_K), "largest top_k a search may ask for"),
    ("HNSW_M", "16", "HNSW graph degree of new collections"),
    ("HNSW_EF_CONSTRUCTION", "200", "HNSW build-time candidate list of new collections"),
    ("HNSW_EF_SEARCH", "128", "HNSW search-time candidate list (raised to the fetch size when larger)"),
    (
        "RETRIEVER_READ_CONSISTENCY",
        "Session",
        "Session: reads do not wait (every write already ends with a Strong barrier, so it is visible to later "
        "reads when its call returns). Strong: every read also waits for Milvus' next time tick "
        "(~1.5 x proxy.timeTickInterval), for Milvus deployments with several query replicas",
    ),
    ("RETRIEVER_TIMEOUT_SECONDS", "10", "deadline of each Milvus call, retries included"),
    ("RETRIEVER_MAX_MESSAGE_BYTES", str(64 * 1024 * 1024), "largest gRPC request accepted (upserts carry vectors)"),
    ("RETRIEVER_GRACE_SECONDS", "20", "drain time for in-flight calls on SIGTERM"),
    ("LOG_LEVEL", "INFO", "logging level"),
)

_PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Over-fetch (4 x top_k) must stay within Milvus' 16384 limit on topk.
MAX_TOP_K_LIMIT = 4096
# Bounded/Eventually would let a deleted product come back: not offered.
READ_CONSISTENCY_LEVELS = ("Strong", "Session")


@dataclass(frozen=True)
class RetrieverSettings:
    host: str = "0.0.0.0"
    port: int = 50053
    milvus_uri: str = "http://127.0.0.1:19530"
    milvus_token: str = ""
    milvus_db: str = ""
    collection_prefix: str = "imagesearch"
    max_top_k: int = MAX_TOP_K
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    read_consistency: str = "Session"
    timeout_seconds: float = 10.0
    max_message_bytes: int = 64 * 1024 * 1024
    grace_seconds: float = 20.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.collection_prefix):
            raise SettingsError(
                "RETRIEVER_COLLECTION_PREFIX must match [A-Za-z_][A-Za-z0-9_]{0,63} "
                f"(Milvus collection names), got {self.collection_prefix!r}"
            )
        if not 1 <= self.max_top_k <= MAX_TOP_K_LIMIT:
            raise SettingsError(f"RETRIEVER_MAX_TOP_K must be between 1 and {MAX_TOP_K_LIMIT}, got {self.max_top_k}")
        if not 2 <= self.hnsw_m <= 2048:
            raise SettingsError(f"HNSW_M must be between 2 and 2048, got {self.hnsw_m}")
        if self.read_consistency not in READ_CONSISTENCY_LEVELS:
            raise SettingsError(
                f"RETRIEVER_READ_CONSISTENCY must be one of {', '.join(READ_CONSISTENCY_LEVELS)}, got {self.read_consistency!r}"
            )
        if not self.milvus_uri:
            raise SettingsError("MILVUS_URI must not be empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetrieverSettings:
        e = environ
        return cls(
            host=env_str("RETRIEVER_HOST", cls.host, e),
            port=env_int("RETRIEVER_PORT", cls.port, e, minimum=0),
            milvus_uri=env_str("MILVUS_URI", cls.milvus_uri, e),
            milvus_token=env_str("MILVUS_TOKEN", cls.milvus_token, e),
            milvus_db=env_str("MILVUS_DB", cls.milvus_db, e),
            collection_prefix=env_str("RETRIEVER_COLLECTION_PREFIX", cls.collection_prefix, e),
            max_top_k=env_int("RETRIEVER_MAX_TOP_K", cls.max_top_k, e, minimum=1),
            hnsw_m=env_int("HNSW_M", cls.hnsw_m, e, minimum=2),
            hnsw_ef_construction=env_int("HNSW_EF_CONSTRUCTION", cls.hnsw_ef_construction, e, minimum=1),
            hnsw_ef_search=env_int("HNSW_EF_SEARCH", cls.hnsw_ef_search, e, minimum=1),
            read_consistency=env_str("RETRIEVER_READ_CONSISTENCY", cls.read_consistency, e),
            timeout_seconds=env_float("RETRIEVER_TIMEOUT_SECONDS", cls.timeout_seconds, e, minimum=0.1),
            max_message_bytes=env_int("RETRIEVER_MAX_MESSAGE_BYTES", cls.max_message_bytes, e, minimum=1024),
            grace_seconds=env_float("RETRIEVER_GRACE_SECONDS", cls.grace_seconds, e, minimum=0.0),
            log_level=env_str("LOG_LEVEL", cls.log_level, e),
        )

    def __repr__(self) -> str:  # never print the token into logs
        fields = {k: v for k, v in self.__dict__.items() if k != "milvus_token"}
        token = "***" if self.milvus_token else ""
        return f"RetrieverSettings({', '.join(f'{k}={v!r}' for k, v in fields.items())}, milvus_token={token!r})"
