"""The Milvus store: per (catalog, model) a collection of image rows and one of heads (schema.py).

pymilvus is synchronous: every call runs on a small dedicated thread pool (so slow Milvus calls
cannot starve the loop's default executor) with the caller's context copied, so the per-call
spans nest under the gRPC span. Inputs arrive validated by the core; this module only stores.

Writes are versioned (versions.py): a product is its newest committed version or, after a delete,
nothing; never a mix of two writes, whatever fails between the steps and however many replicas
write it at once. Every read resolves which rows are visible from the heads.

Consistency: writes pay for it, reads don't. A write waits (a Strong *barrier* query, which
returns only once the query nodes have applied everything up to that moment) after its rows and
again after its heads; so when a write call returns it is visible to every later read of any
replica served by that query node, and a deleted product never comes back. Reads use
consistency_level="Session" by default (RETRIEVER_READ_CONSISTENCY), which does not wait for
Milvus' next time tick: a Strong read costs up to one tick (200 ms by default), a Session read
~3 ms. The write path's own queries are Strong: they decide what to delete.

Several query replicas (a distributed Milvus, or Milvus load balancing a shard across nodes) may
answer a read from a node the barrier did not wait for. With a shared Redis (`horizons`,
horizon.py) every write records the Milvus timestamp of its commit (the heads insert's, the one
that changes what readers see) as its catalog's *write horizon*, and every read passes it as its
guarantee timestamp (consistency "Customized": Milvus' proxy keeps a Customized or Session
request's own guarantee timestamp, while pymilvus replaces a Session one by the timestamp of this
process' last write; Strong uses the proxy's newest). The query node waits only until it has
served that timestamp, which right after a write's barrier it normally already has: reads cost
what Session costs, and see every write that has returned on any replica. A read with no
trustworthy horizon (Redis unreachable, emptied, restarted) is Strong, never possibly stale.

Why Redis and not Milvus itself: a horizon read from Milvus would need a Strong read to be
current, the very cost it saves; and the timestamp Milvus could report for the search (the
response's session_ts) is not filled in by Milvus 2.3. Deletes return no timestamp on 2.3 (0):
a delete's commit is its tombstone heads insert, which does. Dropping a catalog is a DDL
change that Milvus' proxies learn of before the drop returns; a read after it finds no
collection, whatever its timestamp.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from opentelemetry.trace import Status, StatusCode, Tracer, TracerProvider
from pymilvus import MilvusClient
from pymilvus.client import ts_utils
from pymilvus.grpc_gen import milvus_pb2

from imagesearch.common import deadline
from imagesearch.common.breaker import OUTAGES, PROBE_TIMEOUT_SECONDS, Breaker
from imagesearch.common.errors import DeadlineExceeded, DomainError, Unavailable
from imagesearch.common.metrics import UNTIMED
from imagesearch.common.types import Floats, Hit, ModelId, ProductRecord
from imagesearch_retriever.horizon import Horizons
from imagesearch_retriever.milvus import schema, versions
from imagesearch_retriever.milvus.errors import CollectionGone, NotLoaded, describe, translate
from imagesearch_retriever.milvus.expressions import both, build_expression, exact_versions, in_list
from imagesearch_retriever.store import Image, VectorQuery

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_SEARCH_LIMIT = 16384  # Milvus' limit on topk
# A collection created by another replica gets its index just after: wait this long for it.
INDEX_NOT_FOUND = 700  # Milvus's code
INDEX_WAIT_ATTEMPTS, INDEX_WAIT_SECONDS = 30, 0.1
_WRITE_BATCH_ROWS = 256  # ~1.3 MB of 1280-d vectors per insert call, far below Milvus' 64 MB message cap
# A query returns at most 16384 rows: 32 products of up to 128 rows, in up to 4 versions at once.
_ROW_QUERY_PRODUCTS = 32
_HEAD_QUERY_PRODUCTS = 1024
_DELETE_BATCH_IDS = 1024
# How a read is made: pymilvus keyword arguments (consistency, guarantee timestamp).
ReadAt = dict[str, Any]
_STRONG: ReadAt = {"consistency_level": "Strong"}


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True)
class Pair:
    """The two collections of one (catalog, model): image rows, and the heads that say which are visible."""

    rows: str
    heads: str


@dataclass(frozen=True)
class _Row:
    """An image row found by a search, with the version of the write that made it."""

    hit: Hit
    version: int
    image_id: str


def _merged(page: list[_Row], extra: list[_Row]) -> list[_Row]:
    """Two result pages of one query as one, best first, each row once."""
    rows = {row.image_id or id(row): row for row in page}
    for row in extra:
        rows.setdefault(row.image_id or id(row), row)
    return sorted(rows.values(), key=lambda row: -row.hit.score)


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

    def __init__(
        self,
        options: MilvusOptions,
        tracer_provider: TracerProvider,
        max_workers: int = 8,
        horizons: Horizons | None = None,
    ) -> None:
        self.uri = options.milvus_uri
        self._token = options.milvus_token
        self._db_name = options.milvus_db
        self._prefix = options.collection_prefix
        self._hnsw = schema.HnswParams(options.hnsw_m, options.hnsw_ef_construction, options.hnsw_ef_search)
        self._consistency = options.read_consistency
        self.calls = UNTIMED  # the service's Milvus timer, once it has metrics (RetrieverBackend.register_metrics)
        # Shared write horizons (several replicas); reads use them unless configured Strong.
        self._horizons = horizons
        # pymilvus bounds its internal retries only by an *int* timeout (a float
        # one retries 75 times), so round up.
        self._timeout = max(1, math.ceil(options.timeout_seconds))
        self._tracer: Tracer = tracer_provider.get_tracer("imagesearch.retriever.milvus")
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="milvus")
        self._client: MilvusClient | None = None
        self._open: set[str] = set()  # rows collections whose pair is known to exist, match and be loaded
        self._known: dict[str, tuple[str, ModelId]] = {}  # every pair opened since start: reloaded by check()
        self._breaker = Breaker(f"milvus at {self.uri}")
        self._open_lock = threading.RLock()  # re-entered when a call inside the locked open finds the collection gone

    @property
    def breaker(self) -> Breaker:
        """Open while Milvus is known to be down (for /metrics)."""
        return self._breaker

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

    def _reconnect(self) -> None:
        """A fresh channel while Milvus is down: one that has failed to connect for a while waits up
        to two minutes between attempts (gRPC's reconnect back-off, which pymilvus does not let us
        set); a new one connects as soon as Milvus answers."""
        try:
            client = MilvusClient(uri=self.uri, token=self._token, db_name=self._db_name, timeout=PROBE_TIMEOUT_SECONDS)
        except Exception as err:
            self._breaker.failed(f"milvus unavailable at {self.uri}: {describe(err)}")
            raise Unavailable(f"milvus unavailable at {self.uri}: {describe(err)}") from err
        old, self._client = self._client, client
        if old is not None:
            old.close()

    @property
    def horizons(self) -> Horizons | None:
        return self._horizons

    async def check(self) -> None:
        """Milvus answers, and every collection this retriever has served is loaded and caught up
        (after a Milvus restart they come back released, and replay what they had not flushed):
        SERVING only when answers are complete."""
        await self._run(self._check)

    def _check(self) -> None:
        if self._horizons is not None:
            self._horizons.probe()  # a Redis outage only makes reads Strong: never NOT_SERVING
        if self._breaker.is_open:
            self._reconnect()
        client = self._require_client()
        self._call(
            "milvus.list_collections",
            None,
            0,
            client.list_collections,
            call_timeout=PROBE_TIMEOUT_SECONDS,
            probe=True,
        )
        for rows_name, (catalog, model) in list(self._known.items()):
            if rows_name not in self._open:
                log.info("reloading collection %s", rows_name)
                if self._open_collection(catalog, model, create=False) is None:
                    self._known.pop(rows_name, None)  # dropped meanwhile

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._run(client.close)
        if self._horizons is not None:
            await self._run(self._horizons.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- operations

    async def drop(self, catalog: str, model: ModelId) -> bool:
        """Drop every collection of the catalog, of every model (`model` is the caller's current one)."""
        return await self._run(self._drop, catalog)

    def _drop(self, catalog: str) -> bool:
        client = self._require_client()
        pairs = self._catalog_pairs(client, catalog, load=False)
        for pair in pairs:
            for name in (pair.heads, pair.rows):  # heads first: rows without heads are invisible
                if self._call("milvus.has_collection", name, 0, client.has_collection, name):
                    self._call("milvus.drop_collection", name, 0, client.drop_collection, name)
            self._forget(pair.rows)
        return bool(pairs)

    async def upsert(
        self,
        catalog: str,
        model: ModelId,
        products: Sequence[tuple[ProductRecord, Sequence[Image]]],
        deadline: float | None = None,
    ) -> tuple[int, int]:
        """Write products with their images; each replaces every earlier version of itself, atomically.

        `deadline` (time.monotonic()): past it, the write is not committed (its caller has gone).
        """
        if not products:
            return 0, 0
        return await self._run(self._upsert, catalog, model, products, deadline)

    def _upsert(
        self,
        catalog: str,
        model: ModelId,
        products: Sequence[tuple[ProductRecord, Sequence[Image]]],
        deadline: float | None,
    ) -> tuple[int, int]:
        pair = self._open_collection(catalog, model, create=True)
        assert pair is not None
        client = self._require_client()
        version = versions.new_version()
        rows: list[dict[str, Any]] = [
            {
                "image_id": versions.image_id(product.product_id, version, index),
                "version": version,
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
        heads = [versions.Head(product.product_id, version) for product, _ in products]
        nonce = self._prepare(catalog)
        try:
            for batch in _chunks(rows, _WRITE_BATCH_ROWS):
                self._call("milvus.insert", pair.rows, len(batch), client.insert, pair.rows, list(batch))
            # A reader that sees a head must see its rows: they are applied before the head exists.
            self._barrier(client, pair.rows, "image_id")
            committed = self._commit(client, pair, heads, deadline)
        except CollectionGone:
            raise Unavailable(f"collection {pair.rows} was dropped during the write; retry") from None
        self._record(catalog, committed, nonce)
        self._clean_up(client, pair, [head.product_id for head in heads])
        return len(products), len(rows)

    async def delete(
        self, catalog: str, model: ModelId, product_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[list[str], list[str]]:
        """Remove products from every model's collection of the catalog (a rollback must not bring
        them back); returns (deleted, not_found), each in request order."""
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return [], []
        return await self._run(self._delete, catalog, ids, deadline)

    def _delete(self, catalog: str, ids: list[str], deadline: float | None) -> tuple[list[str], list[str]]:
        client = self._require_client()
        present: set[str] = set()
        nonce: str | None = None
        committed = 0
        try:
            for pair in self._catalog_pairs(client, catalog, load=True):
                try:
                    live = versions.live_versions(self._heads_of(client, pair, ids, _STRONG))
                    existing = [pid for pid in ids if pid in live]
                    if not existing:
                        continue
                    if nonce is None:
                        nonce = self._prepare(catalog)
                    version = versions.new_version()
                    tombstones = [versions.Head(pid, version, deleted=True) for pid in existing]
                    committed = max(committed, self._commit(client, pair, tombstones, deadline))
                except CollectionGone:
                    continue  # dropped meanwhile: whatever was in it is gone anyway
                present.update(existing)
                self._clean_up(client, pair, existing)
        finally:
            if committed:  # also when a later model's collection failed: what is committed is recorded
                self._record(catalog, committed, nonce)
        return [pid for pid in ids if pid in present], [pid for pid in ids if pid not in present]

    def _prepare(self, catalog: str) -> str | None:
        """Before a write commits: the write horizon is ready to be raised (horizon.py), or the write
        fails here, having changed nothing visible."""
        return None if self._horizons is None else self._horizons.prepare(catalog)

    def _record(self, catalog: str, committed: int, nonce: str | None) -> None:
        """After a write committed at `committed`: every replica's later reads wait for it."""
        if self._horizons is None:
            return
        try:
            self._horizons.record(catalog, committed, nonce or "")
        except Unavailable as err:
            raise Unavailable(
                f"the write is committed, but its write horizon could not be recorded ({err.message}): "
                "other retriever replicas may not show it yet; retry the write"
            ) from err

    def _commit(self, client: Any, pair: Pair, heads: Sequence[versions.Head], deadline: float | None) -> int:
        """The commit point: every head of the write in one insert (one timestamp), then a barrier.
        Returns a Milvus timestamp at or after the commit (this process' newest insert into the
        heads: MilvusClient.insert does not return the MutationResult, pymilvus keeps its timestamp)."""
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded("the caller's deadline passed before the write was committed; nothing changed")
        rows = [
            {
                "head_id": head.head_id,
                "product_id": head.product_id,
                "version": head.version,
                "deleted": head.deleted,
                "slot": schema.HEAD_SLOT,
            }
            for head in heads
        ]
        self._call("milvus.insert", pair.heads, len(rows), client.insert, pair.heads, rows)
        committed = int(ts_utils.get_collection_ts(pair.heads))
        self._barrier(client, pair.heads, "head_id")
        return committed

    def _clean_up(self, client: Any, pair: Pair, product_ids: Sequence[str]) -> None:
        """Delete what no reader will see again (versions.stale_rows, stale_heads). Best effort: the
        write is committed whatever happens here, and the next write of a product cleans it too."""
        try:
            now_ms = int(time.time() * 1000)
            for group in _chunks(product_ids, _ROW_QUERY_PRODUCTS):
                heads = self._heads_of(client, pair, group, _STRONG)
                newest = versions.committed(heads)
                stored = self._query(
                    client, pair.rows, in_list("product_id", group), ["image_id", "product_id", "version"], _STRONG
                )
                rows = [versions.StoredRow(r["image_id"], r["product_id"], int(r["version"])) for r in stored]
                for batch in _chunks(versions.stale_rows(rows, newest, now_ms), _DELETE_BATCH_IDS):
                    self._call(
                        "milvus.delete",
                        pair.rows,
                        len(batch),
                        client.delete,
                        pair.rows,
                        filter=in_list("image_id", batch),
                    )
                for batch in _chunks(versions.stale_heads(heads, newest), _DELETE_BATCH_IDS):
                    self._call(
                        "milvus.delete",
                        pair.heads,
                        len(batch),
                        client.delete,
                        pair.heads,
                        filter=in_list("head_id", batch),
                    )
        except (DomainError, CollectionGone) as err:
            log.warning("clean-up of %d products in %s left for later: %s", len(product_ids), pair.rows, err)

    def _heads_of(self, client: Any, pair: Pair, product_ids: Sequence[str], read: ReadAt) -> list[versions.Head]:
        heads: list[versions.Head] = []
        for group in _chunks(list(product_ids), _HEAD_QUERY_PRODUCTS):
            found = self._query(
                client, pair.heads, in_list("product_id", group), ["product_id", "version", "deleted"], read
            )
            heads.extend(versions.Head(r["product_id"], int(r["version"]), bool(r["deleted"])) for r in found)
        return heads

    def _query(self, client: Any, name: str, expr: str, fields: list[str], read: ReadAt) -> list[dict[str, Any]]:
        return list(
            self._call(
                "milvus.query",
                name,
                0,
                client.query,
                name,
                filter=expr,
                output_fields=fields,
                **read,
            )
        )

    def _barrier(self, client: Any, name: str, primary_key: str) -> None:
        """Wait until the query nodes have applied every write made so far (see module doc)."""
        self._call(
            "milvus.barrier",
            name,
            0,
            client.query,
            name,
            filter=f'{primary_key} in [""]',
            output_fields=[primary_key],
            consistency_level="Strong",
        )

    def _read_at(self, catalog: str) -> ReadAt:
        """How one read call (all its Milvus queries) is made: see the module doc."""
        if self._horizons is None or self._consistency == "Strong":
            return {"consistency_level": self._consistency}
        horizon = self._horizons.read(catalog)
        if horizon is None:
            self._horizons.relearn(catalog, self._fresh_timestamp)
            return _STRONG
        return {"consistency_level": "Customized", "guarantee_timestamp": horizon}

    def _fresh_timestamp(self) -> int:
        """A timestamp from Milvus' allocator, newer than anything Milvus had stamped when called.
        MilvusClient has no public call for it (pymilvus 2.4); Milvus 2.3 answers AllocTimestamp."""
        stub = self._require_client()._get_connection()._stub
        reply = stub.AllocTimestamp(milvus_pb2.AllocTimestampRequest(), timeout=PROBE_TIMEOUT_SECONDS)
        if reply.status.error_code != 0 or reply.status.code != 0 or not reply.timestamp:
            raise Unavailable(f"milvus at {self.uri}: no timestamp allocated ({reply.status.reason})")
        return int(reply.timestamp)

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
        """The rows of the product's visible version; [] when it has none."""
        pair = self._open_collection(catalog, model, create=False)
        if pair is None:
            return []
        client = self._require_client()
        read = self._read_at(catalog)
        try:
            version = versions.live_versions(self._heads_of(client, pair, [product_id], read))
            if product_id not in version:
                return []
            expr = exact_versions({product_id: version[product_id]})
            return self._query(client, pair.rows, expr, fields, read)
        except CollectionGone:
            return []

    async def catalog_sizes(self) -> dict[tuple[str, ...], float]:
        """Products per (catalog, model `name:version`) of the collections this replica has open
        (replicas agree; take the max across them): committed heads not deleted, which counts a
        product twice only while an interrupted write's clean-up is pending. For /metrics."""
        return await self._run(self._catalog_sizes)

    def _catalog_sizes(self) -> dict[tuple[str, ...], float]:
        client = self._require_client()
        with self._open_lock:
            serving = [(name, *self._known[name]) for name in sorted(self._open) if name in self._known]
        sizes: dict[tuple[str, ...], float] = {}
        for name, catalog, model in serving:
            try:
                counted = self._call(
                    "milvus.count",
                    name,
                    0,
                    client.query,
                    schema.heads_name(name),
                    filter="deleted == false",
                    output_fields=["count(*)"],
                    consistency_level="Bounded",  # a gauge may lag a moment; it must never wait
                )
            except (CollectionGone, NotLoaded):
                continue  # dropped or released meanwhile
            sizes[(catalog, f"{model.name}:{model.version}")] = float(counted[0]["count(*)"]) if counted else 0.0
        return sizes

    async def search(self, catalog: str, model: ModelId, query: VectorQuery) -> list[list[Hit]]:
        """Nearest visible images for each query vector (best first), `limit` per vector, restricted by the filter."""
        if not query.vectors:
            return []
        expr = build_expression(query.spec, query.exclude_product_id)
        return await self._run(self._search, catalog, model, list(query.vectors), query.limit, expr)

    def _search(self, catalog: str, model: ModelId, queries: list[Floats], limit: int, expr: str) -> list[list[Hit]]:
        pair = self._open_collection(catalog, model, create=False)
        if pair is None:
            return [[] for _ in queries]  # nothing indexed for this model yet: an empty catalog
        client = self._require_client()
        read = self._read_at(catalog)
        fetch = limit
        try:
            while True:
                pages = self._raw_search(client, pair.rows, queries, fetch, expr, read)
                visible = self._visible(client, pair, queries, pages, fetch, expr, read)
                # A page that lost rows to older or unfinished versions may hide visible ones behind them.
                short = any(len(raw) >= fetch and len(seen) < limit for raw, seen in zip(pages, visible))
                if not short or fetch >= MAX_SEARCH_LIMIT:
                    return [[row.hit for row in page[:limit]] for page in visible]
                fetch = min(fetch * 2, MAX_SEARCH_LIMIT)
        except CollectionGone:
            return [[] for _ in queries]

    def _visible(
        self,
        client: Any,
        pair: Pair,
        queries: list[Floats],
        pages: list[list[_Row]],
        fetch: int,
        expr: str,
        read: ReadAt,
    ) -> list[list[_Row]]:
        """Each page with only rows of their product's visible version. A product whose page rows
        are of another version (a write is being applied, or was cleaned up half-way) is looked up
        again at its visible version, so it is ranked by the rows a reader must see."""
        product_ids = {row.hit.product_id for page in pages for row in page}
        if not product_ids:
            return pages
        live = versions.live_versions(self._heads_of(client, pair, sorted(product_ids), read))
        outdated = {
            pid: live[pid]
            for pid in {
                row.hit.product_id for page in pages for row in page if live.get(row.hit.product_id) != row.version
            }
            if pid in live
        }
        kept = [[row for row in page if live.get(row.hit.product_id) == row.version] for page in pages]
        if outdated:
            again = self._raw_search(client, pair.rows, queries, fetch, both(expr, exact_versions(outdated)), read)
            kept = [_merged(page, extra) for page, extra in zip(kept, again)]
        return kept

    def _raw_search(
        self, client: Any, name: str, queries: list[Floats], limit: int, expr: str, read: ReadAt
    ) -> list[list[_Row]]:
        params = {"metric_type": "IP", "params": {"ef": max(self._hnsw.ef_search, limit)}}
        pages = self._call(
            "milvus.search",
            name,
            len(queries),
            client.search,
            name,
            data=[q.tolist() for q in queries],
            limit=limit,
            filter=expr,
            output_fields=[*schema.HIT_FIELDS, "version"],
            search_params=params,
            **read,
        )
        result: list[list[_Row]] = []
        for page in pages:
            rows = []
            for hit in page:
                entity = hit["entity"]
                # IP of unit vectors; clamp float noise so scores stay within [-1, 1].
                score = min(1.0, max(-1.0, float(hit["distance"])))
                found = Hit(score=score, image_uri=entity.get("image_uri", ""), **schema.product_fields(entity))
                rows.append(_Row(found, int(entity.get("version", 0)), str(hit.get("id", ""))))
            result.append(rows)
        return result

    # ---- collections

    def _name(self, catalog: str, model: ModelId) -> str:
        return schema.collection_name(schema.catalog_prefix(self._prefix, catalog), model)

    def _forget(self, name: str) -> None:
        rows_name = name.removesuffix(schema.HEADS_SUFFIX)
        with self._open_lock:
            self._open.discard(rows_name)
            self._known.pop(rows_name, None)  # dropped: nothing to reload

    def _forget_all(self) -> None:
        """Every collection is loaded and caught up again before its next read (see _call)."""
        with self._open_lock:
            self._open.clear()

    def _open_collection(self, catalog: str, model: ModelId, *, create: bool) -> Pair | None:
        """The (catalog, model) collections, verified and loaded; None if they do not exist and create is False."""
        name = self._name(catalog, model)
        pair = Pair(name, schema.heads_name(name))
        if name in self._open:
            return pair
        client = self._require_client()
        # A reload (after a Milvus restart) can take seconds: callers fail fast meanwhile rather
        # than queue behind it. A first open is quick and waited for.
        if not self._open_lock.acquire(blocking=name not in self._known):
            raise Unavailable(f"milvus at {self.uri}: collection {name} is being loaded again; retry shortly")
        try:
            if name in self._open:
                return pair
            try:
                return pair if self._open_locked(client, pair, catalog, model, create) else None
            except CollectionGone:  # dropped between our calls
                if create:
                    raise Unavailable(f"collection {name} was dropped while being opened; retry") from None
                return None
        finally:
            self._open_lock.release()

    def _open_locked(self, client: MilvusClient, pair: Pair, catalog: str, model: ModelId, create: bool) -> bool:
        for name, role in ((pair.rows, "images"), (pair.heads, "heads")):
            if not self._call("milvus.has_collection", name, 0, client.has_collection, name):
                if not create:
                    return False
                self._create_collection(client, name, catalog, model, role)
            self._verify_collection(client, name, model, catalog, role)
            # Idempotent, and needed after a Milvus restart: collections come back released.
            self._load(client, name)
        # Loaded is not caught up: after a restart Milvus replays what it had not flushed. A Strong
        # read returns once it has, so no read of ours sees a partial catalog.
        self._barrier(client, pair.rows, "image_id")
        self._barrier(client, pair.heads, "head_id")
        self._open.add(pair.rows)
        self._known[pair.rows] = (catalog, model)
        return True

    def _load(self, client: MilvusClient, name: str) -> None:
        """Load a collection. One that another replica has just created may not have its index yet
        (Milvus: "index not found", code 700) for a moment: wait for it, briefly, then give up."""
        for _ in range(INDEX_WAIT_ATTEMPTS - 1):
            try:
                self._call("milvus.load_collection", name, 0, client.load_collection, name)
                return
            except Exception as err:
                if getattr(err, "code", None) != INDEX_NOT_FOUND:
                    raise
                time.sleep(INDEX_WAIT_SECONDS)
        self._call("milvus.load_collection", name, 0, client.load_collection, name)

    def _catalog_pairs(self, client: MilvusClient, catalog: str, *, load: bool) -> list[Pair]:
        """The collections of every model the catalog has been written with."""
        prefix = schema.catalog_prefix(self._prefix, catalog) + "_"
        pairs = []
        names = self._call("milvus.list_collections", None, 0, client.list_collections)
        for name in sorted(n for n in names if n.startswith(prefix) and not n.endswith(schema.HEADS_SUFFIX)):
            try:
                info = self._call("milvus.describe_collection", name, 0, client.describe_collection, name)
            except CollectionGone:
                continue
            mine = schema.recorded(info)
            if mine is None or mine[1] != catalog or mine[2] != "images":
                continue  # another catalog's (a name that merely starts alike), or not ours
            if load:
                opened = self._open_collection(catalog, mine[0], create=False)
                if opened is not None:
                    pairs.append(opened)
            else:
                pairs.append(Pair(name, schema.heads_name(name)))
        return pairs

    def _create_collection(self, client: MilvusClient, name: str, catalog: str, model: ModelId, role: str) -> None:
        log.info(
            "creating collection %s (%s) for model %s v%s (%dd)", name, role, model.name, model.version, model.dimension
        )
        if role == "images":
            fields, index = schema.schema(model, catalog), schema.index_params(client, self._hnsw)
        else:
            fields, index = schema.heads_schema(model, catalog), schema.heads_index_params(client)
        try:
            self._call(
                "milvus.create_collection",
                name,
                0,
                client.create_collection,
                name,
                schema=fields,
                index_params=index,
                consistency_level="Strong",  # the collection's default
            )
        except DomainError:
            raise
        except Exception:
            if not self._call("milvus.has_collection", name, 0, client.has_collection, name):
                raise

    def _verify_collection(self, client: MilvusClient, name: str, model: ModelId, catalog: str, role: str) -> None:
        schema.verify(
            self._call("milvus.describe_collection", name, 0, client.describe_collection, name),
            name,
            model,
            catalog,
            role,
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
        self,
        span_name: str,
        collection: str | None,
        rows: int,
        fn: Callable[..., T],
        *args: Any,
        call_timeout: float | None = None,
        probe: bool = False,
        **kwargs: Any,
    ) -> T:
        """One Milvus call: the breaker, a child span, the deadline (ours cut to the caller's), and
        errors translated to domain errors. After an outage every collection is loaded (and waited
        for) again before it is read: Milvus may have restarted, and come back with them released."""
        if not probe:  # probes are how the breaker learns Milvus is back
            self._breaker.check()
        wanted = self._timeout if call_timeout is None else call_timeout
        bounded = deadline.bounded(wanted, f"milvus at {self.uri}")
        # pymilvus bounds its retries only by an int timeout: whole seconds, at least one.
        timeout = max(1, math.ceil(bounded))
        with self._span(span_name, collection, rows) as span, self.calls.timed(span_name.removeprefix("milvus.")):
            try:
                result = fn(*args, timeout=timeout, **kwargs)
            except Exception as err:
                translated = self._translate(err, collection)
                span.set_status(Status(StatusCode.ERROR, describe(err)))
                if isinstance(translated, NotLoaded):
                    self._forget_all()
                elif isinstance(translated, OUTAGES):
                    self._breaker.record(translated, cut_by_caller=bounded < wanted)
                    self._forget_all()
                elif isinstance(translated, CollectionGone) and collection is not None:
                    self._forget(collection)
                if translated is err:
                    raise
                raise translated from err
        self._breaker.succeeded()
        return result
