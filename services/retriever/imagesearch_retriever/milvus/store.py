"""The Milvus store: one collection per (catalog, model), one row per product image.

pymilvus is synchronous: every call runs on a small dedicated thread pool (so slow Milvus calls
cannot starve the loop's default executor) with the caller's context copied, so the per-call
spans nest under the gRPC span. Inputs arrive validated by the core; this module only stores.

Consistency: writes pay for it, reads don't. Every write ends with a Strong *barrier* query,
which returns only once the query nodes have applied everything up to that moment; so when a
write call returns, the write is visible to every later read of any replica, and a deleted
product never comes back. Reads then use consistency_level="Session" by default
(RETRIEVER_READ_CONSISTENCY), which does not wait for Milvus' next time tick: a Strong read costs
up to one tick (200 ms by default), a Session read ~3 ms. The queries of the write path are
always Strong: they decide what to delete.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from opentelemetry.trace import Status, StatusCode, Tracer, TracerProvider
from pymilvus import MilvusClient

from imagesearch.common.errors import DomainError, Unavailable
from imagesearch.common.types import Floats, Hit, ModelId, ProductRecord
from imagesearch_retriever.milvus import schema
from imagesearch_retriever.milvus.errors import CollectionGone, describe, translate
from imagesearch_retriever.milvus.expressions import build_expression, in_list, quote
from imagesearch_retriever.store import Image, VectorQuery

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_SEARCH_LIMIT = 16384  # Milvus' limit on topk
_WRITE_BATCH_ROWS = 256  # ~1.3 MB of 1280-d vectors per upsert call, far below Milvus' 64 MB message cap
_QUERY_BATCH_IDS = 256


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True)
class MilvusOptions:
    """Where Milvus is and how collections are built and read (the retriever's settings, by name)."""

    milvus_uri: str
    milvus_token: str = ""  # never logged
    milvus_db: str = ""
    collection_prefix: str = "imagesearch"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    timeout_seconds: float = 10.0
    read_consistency: str = "Session"

    def __repr__(self) -> str:
        return f"MilvusOptions(milvus_uri={self.milvus_uri!r}, collection_prefix={self.collection_prefix!r}, ...)"


class MilvusStore:
    max_search_limit = MAX_SEARCH_LIMIT

    def __init__(self, options: MilvusOptions, tracer_provider: TracerProvider, max_workers: int = 8) -> None:
        self.uri = options.milvus_uri
        self._token = options.milvus_token
        self._db_name = options.milvus_db
        self._prefix = options.collection_prefix
        self._hnsw = schema.HnswParams(options.hnsw_m, options.hnsw_ef_construction, options.hnsw_ef_search)
        self._consistency = options.read_consistency
        # pymilvus bounds its internal retries only by an *int* timeout (a float
        # one retries 75 times), so round up.
        self._timeout = max(1, math.ceil(options.timeout_seconds))
        self._tracer: Tracer = tracer_provider.get_tracer("imagesearch.retriever.milvus")
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="milvus")
        self._client: MilvusClient | None = None
        self._open: set[str] = set()  # collections known to exist, match their model and be loaded
        self._open_lock = threading.RLock()  # re-entered when a call inside the locked open finds the collection gone

    # ---- lifecycle

    async def connect(self) -> None:
        await self._run(self._connect)

    def _connect(self) -> None:
        with self._span("milvus.connect", None, 0):
            try:
                client = MilvusClient(uri=self.uri, token=self._token, db_name=self._db_name, timeout=self._timeout)
            except Exception as err:
                raise Unavailable(f"milvus unavailable at {self.uri}: {describe(err)}") from err
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

    async def drop(self, catalog: str, model: ModelId) -> bool:
        return await self._run(self._drop, catalog, model)

    def _drop(self, catalog: str, model: ModelId) -> bool:
        name = self._name(catalog, model)
        client = self._require_client()
        if not self._call("milvus.has_collection", name, 0, client.has_collection, name):
            return False
        self._verify_collection(client, name, model, catalog)
        self._call("milvus.drop_collection", name, 0, client.drop_collection, name)
        self._forget(name)
        return True

    async def upsert(
        self, catalog: str, model: ModelId, products: Sequence[tuple[ProductRecord, Sequence[Image]]]
    ) -> tuple[int, int]:
        """Write products with their images; each replaces every earlier version of itself."""
        if not products:
            return 0, 0
        return await self._run(self._upsert, catalog, model, products)

    def _upsert(
        self, catalog: str, model: ModelId, products: Sequence[tuple[ProductRecord, Sequence[Image]]]
    ) -> tuple[int, int]:
        name = self._open_collection(catalog, model, create=True)
        assert name is not None
        client = self._require_client()
        rows: list[dict[str, Any]] = [
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
            for product, images in products
            for index, (uri, vector) in enumerate(images)
        ]
        try:
            # New rows first (upsert replaces rows with the same image_id), then the
            # leftovers of longer earlier versions: the product never disappears in between.
            # (pymilvus' own delete(ids=...) would not escape quotes in ids: we build the filter.)
            for batch in _chunks(rows, _WRITE_BATCH_ROWS):
                self._call("milvus.upsert", name, len(batch), client.upsert, name, list(batch))
            keep = {row["image_id"] for row in rows}
            for group in _chunks(products, _QUERY_BATCH_IDS):
                pids = [p.product_id for p, _ in group]
                existing = self._rows_of(client, name, pids, ["image_id"])
                stale = sorted(r["image_id"] for r in existing if r["image_id"] not in keep)
                if stale:  # by primary key: cheaper than an expression Milvus must evaluate first
                    self._call(
                        "milvus.delete", name, len(stale), client.delete, name, filter=in_list("image_id", stale)
                    )
            self._barrier(client, name)
        except CollectionGone:
            raise Unavailable(f"collection {name} was dropped during the write; retry") from None
        return len(products), len(rows)

    async def delete(self, catalog: str, model: ModelId, product_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Remove products; returns (deleted, not_found), each in request order."""
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return [], []
        return await self._run(self._delete, catalog, model, ids)

    def _delete(self, catalog: str, model: ModelId, ids: list[str]) -> tuple[list[str], list[str]]:
        name = self._open_collection(catalog, model, create=False)
        if name is None:
            return [], ids
        client = self._require_client()
        present: set[str] = set()
        try:
            for batch in _chunks(ids, _QUERY_BATCH_IDS):
                # Ask first, so the caller learns which ids were unknown.
                rows = self._rows_of(client, name, batch, ["product_id"])
                found = {row["product_id"] for row in rows}
                if found:
                    self._call(
                        "milvus.delete",
                        name,
                        len(found),
                        client.delete,
                        name,
                        filter=in_list("product_id", sorted(found)),
                    )
                present |= found
            if present:
                self._barrier(client, name)
        except CollectionGone:
            pass  # dropped meanwhile: whatever was not deleted yet is gone anyway
        return [pid for pid in ids if pid in present], [pid for pid in ids if pid not in present]

    def _rows_of(self, client: Any, name: str, product_ids: Sequence[str], fields: list[str]) -> list[dict[str, Any]]:
        """The rows of these products, read Strong: the write path decides what to delete on them."""
        return list(
            self._call(
                "milvus.query",
                name,
                len(product_ids),
                client.query,
                name,
                filter=in_list("product_id", product_ids),
                output_fields=fields,
                consistency_level="Strong",
            )
        )

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

    async def get(self, catalog: str, model: ModelId, product_id: str) -> ProductRecord | None:
        fields = [*schema.PRODUCT_FIELDS, "image_id", "image_uri"]
        rows = await self._run(self._product_rows, catalog, model, product_id, fields)
        if not rows:
            return None
        rows.sort(key=lambda r: schema.image_index(r["image_id"]))
        # Several rows may show one image (e.g. as sent and trimmed to its object): list each uri once, in order.
        uris = tuple(dict.fromkeys(r["image_uri"] for r in rows))
        return ProductRecord(**schema.product_fields(rows[0]), image_uris=uris)

    async def product_vectors(self, catalog: str, model: ModelId, product_id: str) -> list[Image]:
        rows = await self._run(self._product_rows, catalog, model, product_id, ["image_id", "image_uri", "embedding"])
        rows.sort(key=lambda r: schema.image_index(r["image_id"]))
        return [(r["image_uri"], np.asarray(r["embedding"], dtype=np.float32)) for r in rows]

    def _product_rows(self, catalog: str, model: ModelId, product_id: str, fields: list[str]) -> list[dict[str, Any]]:
        name = self._open_collection(catalog, model, create=False)
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
        except CollectionGone:
            return []

    async def search(self, catalog: str, model: ModelId, query: VectorQuery) -> list[list[Hit]]:
        """Nearest images for each query vector (best first), `limit` per vector, restricted by the filter."""
        if not query.vectors:
            return []
        expr = build_expression(query.spec, query.exclude_product_id)
        return await self._run(self._search, catalog, model, list(query.vectors), query.limit, expr)

    def _search(self, catalog: str, model: ModelId, queries: list[Floats], limit: int, expr: str) -> list[list[Hit]]:
        name = self._open_collection(catalog, model, create=False)
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
                output_fields=schema.HIT_FIELDS,
                search_params=params,
                consistency_level=self._consistency,
            )
        except CollectionGone:
            return [[] for _ in queries]
        result: list[list[Hit]] = []
        for page in pages:
            matches = []
            for hit in page:
                entity = hit["entity"]
                # IP of unit vectors; clamp float noise so scores stay within [-1, 1].
                score = min(1.0, max(-1.0, float(hit["distance"])))
                matches.append(Hit(score=score, image_uri=entity.get("image_uri", ""), **schema.product_fields(entity)))
            result.append(matches)
        return result

    # ---- collections

    def _name(self, catalog: str, model: ModelId) -> str:
        return schema.collection_name(schema.catalog_prefix(self._prefix, catalog), model)

    def _forget(self, name: str) -> None:
        with self._open_lock:
            self._open.discard(name)

    def _open_collection(self, catalog: str, model: ModelId, *, create: bool) -> str | None:
        """The (catalog, model) collection, verified and loaded; None if it does not exist and create is False."""
        name = self._name(catalog, model)
        if name in self._open:
            return name
        client = self._require_client()
        with self._open_lock:
            if name in self._open:
                return name
            try:
                return self._open_locked(client, name, catalog, model, create)
            except CollectionGone:  # dropped between our calls
                if create:
                    raise Unavailable(f"collection {name} was dropped while being opened; retry") from None
                return None

    def _open_locked(self, client: MilvusClient, name: str, catalog: str, model: ModelId, create: bool) -> str | None:
        exists = self._call("milvus.has_collection", name, 0, client.has_collection, name)
        if not exists:
            if not create:
                return None
            self._create_collection(client, name, catalog, model)
        self._verify_collection(client, name, model, catalog)
        # Idempotent, and needed after a Milvus restart: collections come back released.
        self._call("milvus.load_collection", name, 0, client.load_collection, name)
        self._open.add(name)
        return name

    def _create_collection(self, client: MilvusClient, name: str, catalog: str, model: ModelId) -> None:
        log.info("creating collection %s for model %s v%s (%dd)", name, model.name, model.version, model.dimension)
        try:
            self._call(
                "milvus.create_collection",
                name,
                0,
                client.create_collection,
                name,
                schema=schema.schema(model, catalog),
                index_params=schema.index_params(client, self._hnsw),
                consistency_level="Strong",  # the collection's default
            )
        except DomainError:
            raise
        except Exception:
            if not self._call("milvus.has_collection", name, 0, client.has_collection, name):
                raise

    def _verify_collection(self, client: MilvusClient, name: str, model: ModelId, catalog: str) -> None:
        schema.verify(
            self._call("milvus.describe_collection", name, 0, client.describe_collection, name), name, model, catalog
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

    def _translate(self, err: Exception, collection: str | None) -> Exception:
        return translate(err, self.uri, self._timeout, collection)

    def _call(
        self, span_name: str, collection: str | None, rows: int, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """One Milvus call: a child span, the deadline, and errors translated to domain errors."""
        with self._span(span_name, collection, rows) as span:
            try:
                return fn(*args, timeout=self._timeout, **kwargs)
            except Exception as err:
                translated = self._translate(err, collection)
                span.set_status(Status(StatusCode.ERROR, describe(err)))
                if isinstance(translated, CollectionGone) and collection is not None:
                    self._forget(collection)
                if translated is err:
                    raise
                raise translated from err
