"""The Milvus adapter: one collection per model, one row per product image.

Layout (see services/retriever/README.md):

    <prefix>_<model name>_v<version>_<dimension>d      (sanitised to [A-Za-z0-9_])
      image_id   VARCHAR(300) primary key   "<product_id>#<image index>"
      product_id VARCHAR(256)
      title      VARCHAR(2048)
      category   VARCHAR(256)
      brand      VARCHAR(256)
      price      DOUBLE
      attributes JSON                        {"key": "value", ...}
      image_uri  VARCHAR(2048)
      embedding  FLOAT_VECTOR(dimension)     HNSW, metric IP (vectors are L2-normalised: IP = cosine)

The collection description records the model (JSON), and is checked whenever
an existing collection is opened, so two models can never share one.

pymilvus is synchronous: every call runs on a small dedicated thread pool (so
slow Milvus calls cannot starve the loop's default executor) with the
caller's context copied, so the per-call spans nest under the gRPC span.
Consistency: writes pay for it, reads don't. Every write ends with a Strong
*barrier* query, which returns only once the query nodes have applied
everything up to that moment; so when a write call returns, the write is
visible to every later read of any replica, and a deleted product never comes
back. Reads then use consistency_level="Session" by default
(RETRIEVER_READ_CONSISTENCY), which does not wait for Milvus' next time tick:
a Strong read costs up to one tick (200 ms by default), a Session read ~3 ms.
The queries of the write path are always Strong: they decide what to delete.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np
from opentelemetry.trace import Status, StatusCode, Tracer, TracerProvider
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import ConnectionNotExistException, MilvusException, MilvusUnavailableException

from imagesearch.common.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from imagesearch.common.types import ModelId, ProductRecord
from imagesearch.contracts.limits import (
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_ATTRIBUTES,
    MAX_BRAND_BYTES,
    MAX_CATEGORY_BYTES,
    MAX_IMAGE_URI_BYTES,
    MAX_PRODUCT_ID_BYTES,
    MAX_ROWS_PER_PRODUCT,
    MAX_TITLE_BYTES,
    check_attribute_key,
    check_product_id,
    check_text,
)
from imagesearch_retriever.filters import quote

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 1
MAX_IMAGE_ID_BYTES = MAX_PRODUCT_ID_BYTES + 1 + 4  # "<product_id>#<index>"
MAX_DIMENSION = 32768  # Milvus' FLOAT_VECTOR limit
MAX_MODEL_FIELD_CHARS = 128
MAX_SEARCH_LIMIT = 16384  # Milvus' limit on topk
MAX_COLLECTION_NAME = 255
_WRITE_BATCH_ROWS = 256  # ~1.3 MB of 1280-d vectors per upsert call, far below Milvus' 64 MB message cap
_QUERY_BATCH_IDS = 256
_CONNECT_FAILED = 2  # pymilvus Status.CONNECT_FAILED
_COLLECTION_NOT_FOUND = 100
_RATE_LIMITED = 8

PRODUCT_FIELDS = ("product_id", "title", "category", "brand", "price", "attributes")
_HIT_FIELDS = [*PRODUCT_FIELDS, "image_uri"]


@dataclass(frozen=True)
class HnswParams:
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 128


@dataclass(frozen=True)
class ImageMatch:
    """One matching image row: the product's fields, its image and the similarity."""

    product_id: str
    score: float
    image_uri: str
    title: str = ""
    category: str = ""
    brand: str = ""
    price: float = 0.0
    attributes: dict[str, str] = field(default_factory=dict)


Image = tuple[str, np.ndarray]  # (uri, vector)


class _CollectionGone(Exception):
    """A cached collection was dropped behind our back."""


def collection_name(prefix: str, model: ModelId) -> str:
    """`<prefix>_<name>_v<version>_<dim>d`, with everything outside [A-Za-z0-9_] replaced by '_'.

    Different models can sanitise to one name ("a-b" and "a_b"); the model
    recorded in the description catches that when the collection is opened.
    """
    raw = f"{prefix}_{model.name}_v{model.version}_{model.dimension}d"
    name = re.sub(r"[^A-Za-z0-9_]", "_", raw)
    if not re.match(r"[A-Za-z_]", name):
        name = "_" + name
    if len(name) > MAX_COLLECTION_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
        name = f"{name[: MAX_COLLECTION_NAME - 13]}_{digest}"
    return name


def validate_model(model: ModelId) -> None:
    for label, value in (("model.name", model.name), ("model.version", model.version)):
        check_text(value, label, MAX_MODEL_FIELD_CHARS, allow_empty=False)
    if not 1 <= model.dimension <= MAX_DIMENSION:
        raise InvalidArgument(f"model.dimension must be between 1 and {MAX_DIMENSION}, got {model.dimension}")


def normalised(vector: np.ndarray, dimension: int, what: str) -> np.ndarray:
    """A float32 unit vector, or InvalidArgument (wrong size, non-finite, zero)."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.shape[0] != dimension:
        raise InvalidArgument(f"{what} has {v.shape[0]} values; the model's dimension is {dimension}")
    if not np.all(np.isfinite(v)):
        raise InvalidArgument(f"{what} contains non-finite values")
    norm = float(np.linalg.norm(v))
    if norm == 0.0 or not math.isfinite(norm):
        raise InvalidArgument(f"{what} has zero length")
    # Embedders send unit vectors already; re-normalising keeps IP a true cosine in [-1, 1].
    return v / norm


def validate_product(product: ProductRecord, images: Sequence[Image], dimension: int) -> list[tuple[str, np.ndarray]]:
    """Check a product against the schema limits; return its images with unit vectors."""
    pid = product.product_id
    check_product_id(pid)
    check_text(product.title, f"product {pid!r}: title", MAX_TITLE_BYTES)
    check_text(product.category, f"product {pid!r}: category", MAX_CATEGORY_BYTES)
    check_text(product.brand, f"product {pid!r}: brand", MAX_BRAND_BYTES)
    if (
        isinstance(product.price, bool)
        or not isinstance(product.price, (int, float))
        or not math.isfinite(product.price)
    ):
        raise InvalidArgument(f"product {pid!r}: price must be a finite number, got {product.price!r}")
    if len(product.attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(f"product {pid!r}: {len(product.attributes)} attributes; at most {MAX_ATTRIBUTES}")
    for key, value in product.attributes.items():
        check_attribute_key(key, f"product {pid!r}: attribute key")
        check_text(value, f"product {pid!r}: attribute {key!r}", MAX_ATTRIBUTE_VALUE_BYTES)
    if not images:
        raise InvalidArgument(f"product {pid!r} has no images; a product is indexed through its images")
    if len(images) > MAX_ROWS_PER_PRODUCT:
        raise InvalidArgument(f"product {pid!r} has {len(images)} images; at most {MAX_ROWS_PER_PRODUCT}")
    checked = []
    for index, (uri, vector) in enumerate(images):
        check_text(uri, f"product {pid!r}: image {index} uri", MAX_IMAGE_URI_BYTES)
        checked.append((uri, normalised(vector, dimension, f"product {pid!r}: image {index} vector")))
    return checked


def _image_index(image_id: str) -> int:
    try:
        return int(image_id.rsplit("#", 1)[1])
    except (IndexError, ValueError):
        return 0


def _product_from_row(row: dict[str, Any]) -> dict[str, Any]:
    attributes = row.get("attributes") or {}
    return {
        "product_id": row["product_id"],
        "title": row.get("title", ""),
        "category": row.get("category", ""),
        "brand": row.get("brand", ""),
        "price": float(row.get("price", 0.0)),
        "attributes": {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {},
    }


def _in_list(field_name: str, values: Sequence[str]) -> str:
    return f"{field_name} in [{', '.join(quote(v) for v in values)}]"


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class MilvusStore:
    def __init__(
        self,
        uri: str,
        *,
        token: str = "",
        db_name: str = "",
        prefix: str = "imagesearch",
        hnsw: HnswParams = HnswParams(),
        timeout_seconds: float = 10.0,
        read_consistency: str = "Session",
        tracer_provider: TracerProvider,
        max_workers: int = 8,
    ) -> None:
        self.uri = uri
        self._token = token
        self._db_name = db_name
        self._prefix = prefix
        self._hnsw = hnsw
        self._consistency = read_consistency
        # pymilvus bounds its internal retries only by an *int* timeout (a float
        # one retries 75 times), so round up.
        self._timeout = max(1, math.ceil(timeout_seconds))
        self._tracer: Tracer = tracer_provider.get_tracer("imagesearch.retriever.milvus")
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="milvus")
        self._client: MilvusClient | None = None
        self._open: set[str] = set()  # collections known to exist, match their model and be loaded
        self._open_lock = threading.Lock()
        self._catalog = ""  # see scoped()

    # ---- lifecycle

    async def connect(self) -> None:
        await self._run(self._connect)

    def _connect(self) -> None:
        with self._span("milvus.connect", None, 0):
            try:
                client = MilvusClient(uri=self.uri, token=self._token, db_name=self._db_name, timeout=self._timeout)
            except Exception as err:
                raise Unavailable(f"milvus unavailable at {self.uri}: {_describe(err)}") from err
            try:
                client.list_collections(timeout=self._timeout)
            except Exception as err:
                client.close()
                raise self._translate(err, None) from err
        old, self._client = self._client, client
        if old is not None:
            old.close()

    async def check(self) -> None:
        await self._run(lambda: self._call("milvus.list_collections", None, 0, self._require_client().list_collections))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._run(client.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- operations

    def scoped(self, catalog: str) -> MilvusStore:
        """This store as seen by one catalog: same client and caches, its own collections.

        The default catalog ("") keeps the plain `<prefix>_...` names; a named one
        lives in `<prefix>_c_<catalog>_...`, and the catalog is also recorded in the
        collection description and checked on open.
        """
        if not catalog:
            return self
        view = copy.copy(self)
        view._prefix = f"{self._prefix}_c_{catalog}"
        view._catalog = catalog
        return view

    async def drop(self, model: ModelId) -> bool:
        """Drop this (catalog, model) collection; False when it did not exist."""
        validate_model(model)
        return await self._run(self._drop, model)

    def _drop(self, model: ModelId) -> bool:
        name = collection_name(self._prefix, model)
        client = self._require_client()
        if not self._call("milvus.has_collection", name, 0, client.has_collection, name):
            return False
        self._verify_collection(client, name, model)
        self._call("milvus.drop_collection", name, 0, client.drop_collection, name)
        self._forget(name)
        return True

    async def upsert(
        self, model: ModelId, products: Sequence[tuple[ProductRecord, Sequence[Image]]]
    ) -> tuple[int, int]:
        """Write products with their images; each replaces every earlier version of itself."""
        validate_model(model)
        if not products:
            return 0, 0
        # Validation of a large batch is CPU work too: off the event loop with the rest.
        return await self._run(self._upsert, model, products)

    def _upsert(self, model: ModelId, products: Sequence[tuple[ProductRecord, Sequence[Image]]]) -> tuple[int, int]:
        seen: set[str] = set()
        prepared: list[tuple[ProductRecord, list[tuple[str, np.ndarray]]]] = []
        for product, images in products:
            if product.product_id in seen:
                raise InvalidArgument(f"product {product.product_id!r} appears more than once in one request")
            seen.add(product.product_id)
            prepared.append((product, validate_product(product, images, model.dimension)))
        name = self._open_collection(model, create=True)
        assert name is not None
        client = self._require_client()
        rows: list[dict[str, Any]] = []
        for product, images in prepared:
            for index, (uri, vector) in enumerate(images):
                rows.append(
                    {
                        "image_id": f"{product.product_id}#{index}",
                        "product_id": product.product_id,
                        "title": product.title,
                        "category": product.category,
                        "brand": product.brand,
                        "price": float(product.price),
                        "attributes": dict(product.attributes),
                        "image_uri": uri,
                        "embedding": vector.tolist(),
                    }
                )
        try:
            # New rows first (upsert replaces rows with the same image_id), then the
            # leftovers of longer earlier versions: the product never disappears in between.
            # (pymilvus' own delete(ids=...) would not escape quotes in ids: we build the filter.)
            for batch in _chunks(rows, _WRITE_BATCH_ROWS):
                self._call("milvus.upsert", name, len(batch), client.upsert, name, list(batch))
            keep = {row["image_id"] for row in rows}
            for group in _chunks(prepared, _QUERY_BATCH_IDS):
                pids = [p.product_id for p, _ in group]
                existing = self._call(
                    "milvus.query",
                    name,
                    len(pids),
                    client.query,
                    name,
                    filter=_in_list("product_id", pids),
                    output_fields=["image_id"],
                    consistency_level="Strong",
                )
                stale = sorted(r["image_id"] for r in existing if r["image_id"] not in keep)
                if stale:  # by primary key: cheaper than an expression Milvus must evaluate first
                    self._call(
                        "milvus.delete", name, len(stale), client.delete, name, filter=_in_list("image_id", stale)
                    )
            self._barrier(client, name)
        except _CollectionGone:
            raise Unavailable(f"collection {name} was dropped during the write; retry") from None
        return len(prepared), len(rows)

    async def delete(self, model: ModelId, product_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Remove products; returns (deleted, not_found), each in request order."""
        validate_model(model)
        ids = list(dict.fromkeys(product_ids))
        for pid in ids:
            check_product_id(pid)
        if not ids:
            return [], []
        return await self._run(self._delete, model, ids)

    def _delete(self, model: ModelId, ids: list[str]) -> tuple[list[str], list[str]]:
        name = self._open_collection(model, create=False)
        if name is None:
            return [], ids
        client = self._require_client()
        present: set[str] = set()
        try:
            for batch in _chunks(ids, _QUERY_BATCH_IDS):
                # Ask first, so the caller learns which ids were unknown.
                rows = self._call(
                    "milvus.query",
                    name,
                    len(batch),
                    client.query,
                    name,
                    filter=_in_list("product_id", batch),
                    output_fields=["product_id"],
                    consistency_level="Strong",
                )
                found = {row["product_id"] for row in rows}
                if found:
                    self._call(
                        "milvus.delete",
                        name,
                        len(found),
                        client.delete,
                        name,
                        filter=_in_list("product_id", sorted(found)),
                    )
                present |= found
            if present:
                self._barrier(client, name)
        except _CollectionGone:
            pass  # dropped meanwhile: whatever was not deleted yet is gone anyway
        return [pid for pid in ids if pid in present], [pid for pid in ids if pid not in present]

    def _barrier(self, client: Any, name: str) -> None:
        """Wait until the query nodes have applied every write made so far (see module doc)."""
        self._call(
            "milvus.barrier",
            name,
            0,
            client.query,
            name,
            filter='image_id in [""]',
            output_fields=["image_id"],
            consistency_level="Strong",
        )

    async def get(self, model: ModelId, product_id: str) -> ProductRecord:
        validate_model(model)
        check_product_id(product_id)
        rows = await self._run(self._product_rows, model, product_id, [*PRODUCT_FIELDS, "image_id", "image_uri"])
        if not rows:
            raise NotFound(f"product {product_id!r} not found (model {model.name} v{model.version})")
        rows.sort(key=lambda r: _image_index(r["image_id"]))
        # Several rows may show one image (e.g. as sent and trimmed to its object): list each uri once, in order.
        uris = tuple(dict.fromkeys(r["image_uri"] for r in rows))
        return ProductRecord(**_product_from_row(rows[0]), image_uris=uris)

    async def product_vectors(self, model: ModelId, product_id: str) -> list[tuple[str, np.ndarray]]:
        """The (uri, vector) of each indexed image of a product; [] when it is unknown."""
        validate_model(model)
        check_product_id(product_id)
        rows = await self._run(self._product_rows, model, product_id, ["image_id", "image_uri", "embedding"])
        rows.sort(key=lambda r: _image_index(r["image_id"]))
        return [(r["image_uri"], np.asarray(r["embedding"], dtype=np.float32)) for r in rows]

    def _product_rows(self, model: ModelId, product_id: str, fields: list[str]) -> list[dict[str, Any]]:
        name = self._open_collection(model, create=False)
        if name is None:
            return []
        client = self._require_client()
        try:
            return list(
                self._call(
                    "milvus.query",
                    name,
                    1,
                    client.query,
                    name,
                    filter=f"product_id == {quote(product_id)}",
                    output_fields=fields,
                    consistency_level=self._consistency,
                )
            )
        except _CollectionGone:
            return []

    async def search(
        self, model: ModelId, vectors: Sequence[np.ndarray], limit: int, expr: str
    ) -> list[list[ImageMatch]]:
        """Nearest images for each query vector (best first), `limit` per vector, restricted by `expr`."""
        validate_model(model)
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise InvalidArgument(f"search limit must be between 1 and {MAX_SEARCH_LIMIT}, got {limit}")
        queries = [normalised(v, model.dimension, "query vector") for v in vectors]
        if not queries:
            return []
        return await self._run(self._search, model, queries, limit, expr)

    def _search(self, model: ModelId, queries: list[np.ndarray], limit: int, expr: str) -> list[list[ImageMatch]]:
        name = self._open_collection(model, create=False)
        if name is None:
            return [[] for _ in queries]  # nothing indexed for this model yet: an empty catalog
        client = self._require_client()
        params = {"metric_type": "IP", "params": {"ef": max(self._hnsw.ef_search, limit)}}
        try:
            pages = self._call(
                "milvus.search",
                name,
                len(queries),
                client.search,
                name,
                data=[q.tolist() for q in queries],
                limit=limit,
                filter=expr,
                output_fields=_HIT_FIELDS,
                search_params=params,
                consistency_level=self._consistency,
            )
        except _CollectionGone:
            return [[] for _ in queries]
        result: list[list[ImageMatch]] = []
        for page in pages:
            matches = []
            for hit in page:
                entity = hit["entity"]
                fields = _product_from_row(entity)
                # IP of unit vectors; clamp float noise so scores stay within [-1, 1].
                score = min(1.0, max(-1.0, float(hit["distance"])))
                matches.append(ImageMatch(score=score, image_uri=entity.get("image_uri", ""), **fields))
            result.append(matches)
        return result

    # ---- collections

    def _forget(self, name: str) -> None:
        with self._open_lock:
            self._open.discard(name)

    def _open_collection(self, model: ModelId, *, create: bool) -> str | None:
        """The model's collection, verified and loaded; None if it does not exist and create is False."""
        name = collection_name(self._prefix, model)
        if name in self._open:
            return name
        client = self._require_client()
        with self._open_lock:
            if name in self._open:
                return name
            try:
                return self._open_locked(client, name, model, create)
            except _CollectionGone:  # dropped between our calls
                if create:
                    raise Unavailable(f"collection {name} was dropped while being opened; retry") from None
                return None

    def _open_locked(self, client: MilvusClient, name: str, model: ModelId, create: bool) -> str | None:
        exists = self._call("milvus.has_collection", name, 0, client.has_collection, name)
        if not exists:
            if not create:
                return None
            self._create_collection(client, name, model)
        self._verify_collection(client, name, model)
        # Idempotent, and needed after a Milvus restart: collections come back released.
        self._call("milvus.load_collection", name, 0, client.load_collection, name)
        self._open.add(name)
        return name

    def _create_collection(self, client: MilvusClient, name: str, model: ModelId) -> None:
        description = json.dumps(
            {
                "imagesearch_schema": SCHEMA_VERSION,
                "model": {"name": model.name, "version": model.version, "dimension": model.dimension},
                "catalog": self._catalog,
            },
            sort_keys=True,
        )
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=description)
        schema.add_field("image_id", DataType.VARCHAR, is_primary=True, max_length=MAX_IMAGE_ID_BYTES)
        schema.add_field("product_id", DataType.VARCHAR, max_length=MAX_PRODUCT_ID_BYTES)
        schema.add_field("title", DataType.VARCHAR, max_length=MAX_TITLE_BYTES)
        schema.add_field("category", DataType.VARCHAR, max_length=MAX_CATEGORY_BYTES)
        schema.add_field("brand", DataType.VARCHAR, max_length=MAX_BRAND_BYTES)
        schema.add_field("price", DataType.DOUBLE)
        schema.add_field("attributes", DataType.JSON)
        schema.add_field("image_uri", DataType.VARCHAR, max_length=MAX_IMAGE_URI_BYTES)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=model.dimension)
        index = client.prepare_index_params()
        index.add_index(
            field_name="embedding",
            index_type="HNSW",
            metric_type="IP",
            params={"M": self._hnsw.m, "efConstruction": self._hnsw.ef_construction},
        )
        log.info("creating collection %s for model %s v%s (%dd)", name, model.name, model.version, model.dimension)
        try:
            self._call(
                "milvus.create_collection",
                name,
                0,
                client.create_collection,
                name,
                schema=schema,
                index_params=index,
                consistency_level="Strong",
            )  # the collection's default
        except DomainError:
            raise
        except Exception:
            if not self._call("milvus.has_collection", name, 0, client.has_collection, name):
                raise

    def _verify_collection(self, client: MilvusClient, name: str, model: ModelId) -> None:
        info = self._call("milvus.describe_collection", name, 0, client.describe_collection, name)
        try:
            described = json.loads(info.get("description") or "")
            recorded = described["model"]
            found = ModelId(str(recorded["name"]), str(recorded["version"]), int(recorded["dimension"]))
            catalog = str(described.get("catalog", ""))
        except (ValueError, KeyError, TypeError):
            raise FailedPrecondition(
                f"collection {name} exists but was not created by the retriever (no model in its description)"
            ) from None
        if catalog != self._catalog:
            raise FailedPrecondition(f"collection {name} belongs to catalog {catalog!r}, not {self._catalog!r}")
        dims = [f.get("params", {}).get("dim") for f in info.get("fields", []) if f.get("name") == "embedding"]
        if found != model or dims != [model.dimension]:
            raise FailedPrecondition(
                f"collection {name} holds vectors of model {found.name} v{found.version} ({found.dimension}d), "
                f"not {model.name} v{model.version} ({model.dimension}d)"
            )

    # ---- plumbing

    def _require_client(self) -> MilvusClient:
        client = self._client
        if client is None:
            raise Unavailable(f"milvus unavailable at {self.uri}: not connected yet")
        return client

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking pymilvus code on our pool, in the caller's context (for span parenting)."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(ctx.run, fn, *args))

    def _span(self, span_name: str, collection: str | None, rows: int) -> Any:
        attributes: dict[str, Any] = {"db.system": "milvus", "milvus.rows": rows}
        if collection is not None:
            attributes["milvus.collection"] = collection
        return self._tracer.start_as_current_span(span_name, attributes=attributes)

    def _call(
        self, span_name: str, collection: str | None, rows: int, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """One Milvus call: a child span, the deadline, and errors translated to domain errors."""
        with self._span(span_name, collection, rows) as span:
            try:
                return fn(*args, timeout=self._timeout, **kwargs)
            except Exception as err:
                translated = self._translate(err, collection)
                span.set_status(Status(StatusCode.ERROR, _describe(err)))
                if isinstance(translated, _CollectionGone) and collection is not None:
                    self._open.discard(collection)
                if translated is err:
                    raise
                raise translated from err

    def _translate(self, err: Exception, collection: str | None) -> Exception:
        if isinstance(err, DomainError):
            return err
        if isinstance(err, grpc.RpcError):
            code = err.code() if callable(getattr(err, "code", None)) else None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return DeadlineExceeded(f"milvus at {self.uri} did not answer within {self._timeout} s")
            return Unavailable(f"milvus unavailable at {self.uri}: {_describe(err)}")
        if isinstance(err, MilvusException):
            code = err.code
            if isinstance(code, grpc.StatusCode):  # pymilvus gave up retrying a transport failure
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    return DeadlineExceeded(f"milvus at {self.uri} did not answer within {self._timeout} s")
                return Unavailable(f"milvus unavailable at {self.uri}: {err.message}")
            if code == _CONNECT_FAILED or isinstance(err, (ConnectionNotExistException, MilvusUnavailableException)):
                return Unavailable(f"milvus unavailable at {self.uri}: {err.message}")
            if code == _COLLECTION_NOT_FOUND and collection is not None:
                return _CollectionGone(collection)
            if code == _RATE_LIMITED:
                return ResourceExhausted(f"milvus is rate limiting: {err.message}")
        return err  # unexpected: INTERNAL, with the traceback in the log


def _describe(err: Exception) -> str:
    if isinstance(err, MilvusException):
        return err.message or type(err).__name__
    if isinstance(err, grpc.RpcError) and callable(getattr(err, "details", None)):
        return f"{err.code().name}: {err.details()}"  # type: ignore[attr-defined]
    return str(err) or type(err).__name__
