"""RetrieverCore against a fake store: grouping, re-fetching, validation; and the settings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from imagesearch.common.config import SettingsError
from imagesearch.common.errors import InvalidArgument, NotFound
from imagesearch.common.types import FilterSpec, Hit, ModelId, ProductRecord
from imagesearch_retriever.core import RetrieverCore
from imagesearch_retriever.milvus.schema import collection_name, heads_name
from imagesearch_retriever.settings import RetrieverSettings
from imagesearch_retriever.store import VectorQuery

MODEL = ModelId("m", "1", 4)


class FakeStore:
    """Exact search over (product_id, vector) images, recording the limits asked for."""

    max_search_limit = 16384

    def __init__(self, images: list[tuple[str, np.ndarray]]) -> None:
        self.images = [(pid, v / np.linalg.norm(v)) for pid, v in images]
        self.limits: list[int] = []
        self.excluded: list[str | None] = []

    async def search(self, catalog: str, model: ModelId, query: VectorQuery) -> list[list[Hit]]:
        limit, exclude_product_id = query.limit, query.exclude_product_id
        vectors: Sequence[np.ndarray] = query.vectors
        self.limits.append(limit)
        self.excluded.append(exclude_product_id)
        pages = []
        for q in vectors:
            q = q / np.linalg.norm(q)
            scored = sorted(
                ((float(v @ q), pid, i) for i, (pid, v) in enumerate(self.images) if pid != exclude_product_id),
                reverse=True,
            )
            pages.append([Hit(product_id=pid, score=s, image_uri=f"{pid}/{i}") for s, pid, i in scored[:limit]])
        return pages

    async def product_vectors(self, catalog: str, model: ModelId, product_id: str) -> list[tuple[str, np.ndarray]]:
        return [(f"{pid}/{i}", v) for i, (pid, v) in enumerate(self.images) if pid == product_id]

    async def upsert(self, catalog, model, products):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    async def delete(self, catalog, model, product_ids):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    async def get(self, catalog: str, model: ModelId, product_id: str) -> ProductRecord | None:
        return None

    async def drop(self, catalog: str, model: ModelId) -> bool:
        return False


def v(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float32)


async def test_a_product_with_many_images_does_not_crowd_out_the_others() -> None:
    # 30 near-identical images of "big" outrank everything; 2 other products exist.
    rng = np.random.default_rng(1)
    images = [("big", v(1, 0, 0, 0) + 0.01 * rng.standard_normal(4).astype(np.float32)) for _ in range(30)]
    images += [("b", v(0.8, 0.6, 0, 0)), ("c", v(0.6, 0.8, 0, 0))]
    store = FakeStore(images)
    hits = await RetrieverCore(store).search("", MODEL, v(1, 0, 0, 0), top_k=3, min_score=-1)
    assert [h.product_id for h in hits] == ["big", "b", "c"]
    assert store.limits == [12, 48]  # the first page (4 x top_k) held only "big": asked again, larger


async def test_no_refetch_when_the_page_was_not_full() -> None:
    store = FakeStore([("a", v(1, 0, 0, 0)), ("a", v(0.9, 0.1, 0, 0)), ("b", v(0, 1, 0, 0))])
    hits = await RetrieverCore(store).search("", MODEL, v(1, 0, 0, 0), top_k=5, min_score=-1)
    assert [h.product_id for h in hits] == ["a", "b"]
    assert hits[0].image_uri == "a/0"
    assert store.limits == [20]


async def test_no_refetch_when_min_score_already_cuts_the_rest() -> None:
    # A full page whose last score is below min_score: nothing unseen can qualify.
    images = [("a", v(1, 0, 0, 0))] + [(f"n{i}", v(0.1, 1, 0, 0)) for i in range(20)]
    store = FakeStore(images)
    hits = await RetrieverCore(store).search("", MODEL, v(1, 0, 0, 0), top_k=2, min_score=0.5)
    assert [h.product_id for h in hits] == ["a"]
    assert store.limits == [8]


async def test_more_like_this_uses_every_image_and_excludes_itself() -> None:
    store = FakeStore([("q", v(1, 0, 0, 0)), ("q", v(0, 1, 0, 0)), ("x", v(0, 1, 0, 0)), ("y", v(0.9, 0.1, 0, 0))])
    hits = await RetrieverCore(store).search("", MODEL, "q", top_k=5, min_score=-1)
    assert [h.product_id for h in hits][:2] == ["x", "y"]
    assert hits[0].score == pytest.approx(1.0)
    assert store.excluded == ["q"]
    with pytest.raises(NotFound, match="ghost"):
        await RetrieverCore(store).search("", MODEL, "ghost")


async def test_several_vectors_rank_each_product_at_its_best_over_them() -> None:
    store = FakeStore([("a", v(1, 0, 0, 0)), ("b", v(0, 1, 0, 0)), ("c", v(0.6, 0.8, 0, 0))])
    hits = await RetrieverCore(store).search("", MODEL, [v(1, 0, 0, 0), v(0, 1, 0, 0)], top_k=3, min_score=-1)
    assert [(h.product_id, round(h.score, 3)) for h in hits] == [("a", 1.0), ("b", 1.0), ("c", 0.8)]
    assert len(store.limits) == 1  # one store search for all the vectors
    with pytest.raises(InvalidArgument, match="any_of vectors must not be empty"):
        await RetrieverCore(store).search("", MODEL, [])
    with pytest.raises(InvalidArgument, match="17 any_of vectors; at most 16"):
        await RetrieverCore(store).search("", MODEL, [v(1, 0, 0, 0)] * 17)
    with pytest.raises(InvalidArgument, match="any_of vector 1"):
        await RetrieverCore(store).search("", MODEL, [v(1, 0, 0, 0), np.ones(3, np.float32)])


@pytest.mark.parametrize(
    "top_k, message", [(101, "got 101"), (-1, "got -1"), (100000, "between 1 and 100, got 100000")]
)
async def test_top_k_bounds(top_k: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await RetrieverCore(FakeStore([])).search("", MODEL, v(1, 0, 0, 0), top_k=top_k)


@pytest.mark.parametrize("min_score", [1.01, -1.5, float("nan"), float("inf")])
async def test_min_score_bounds(min_score: float) -> None:
    with pytest.raises(InvalidArgument, match="min_score"):
        await RetrieverCore(FakeStore([])).search("", MODEL, v(1, 0, 0, 0), min_score=min_score)


async def test_bad_filter_is_rejected_before_the_store_is_asked() -> None:
    store = FakeStore([("a", v(1, 0, 0, 0))])
    with pytest.raises(InvalidArgument):
        await RetrieverCore(store).search("", MODEL, v(1, 0, 0, 0), filter_spec=FilterSpec(categories=("\x00",)))
    assert store.limits == []


def test_collection_names() -> None:
    name = collection_name("imagesearch", ModelId("effnet-lite0", "1.2", 1280))
    assert name == "imagesearch_effnet_lite0_v1_2_1280d_s2"
    assert collection_name("p", ModelId("ü/ß", "x y", 3)) == "p_____vx_y_3d_s2"
    long = collection_name("p", ModelId("n" * 300, "1", 8))
    # Room is left for the heads collection's suffix within Milvus' 255 characters.
    assert len(heads_name(long)) == 255 and long != collection_name("p", ModelId("n" * 301, "1", 8))


def test_settings_defaults_and_validation() -> None:
    s = RetrieverSettings.from_env({})
    assert (
        s.port,
        s.milvus_uri,
        s.collection_prefix,
        s.max_top_k,
        s.hnsw_m,
        s.hnsw_ef_construction,
        s.hnsw_ef_search,
        s.timeout_seconds,
        s.grace_seconds,
    ) == (50053, "http://127.0.0.1:19530", "imagesearch", 100, 16, 200, 128, 10.0, 20.0)
    assert "secret" not in repr(RetrieverSettings.from_env({"MILVUS_TOKEN": "root:secret"}))
    for env in (
        {"RETRIEVER_COLLECTION_PREFIX": "bad-prefix"},
        {"RETRIEVER_MAX_TOP_K": "5000"},
        {"HNSW_M": "1"},
        {"RETRIEVER_PORT": "x"},
    ):
        with pytest.raises(SettingsError):
            RetrieverSettings.from_env(env)
