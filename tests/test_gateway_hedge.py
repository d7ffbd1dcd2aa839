"""When a localised query's best hit is unconvincing, the whole photo gets the last places of page one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from imagesearch.common.types import Hit, ModelId
from imagesearch.contracts.calibration import ScoreCalibration
from imagesearch_gateway.core import SearchCore, SearchQuery
from imagesearch_gateway.hedge import hedge_with_whole_photo

MODEL = ModelId("image_embedding", "3", 4)


def hits(*ids: str, score: float = 0.3) -> list[Hit]:
    return [Hit(pid, score - i * 0.01, "", "c", "", 0.0, "") for i, pid in enumerate(ids)]


CROP = hits(*(f"c{i}" for i in range(20)))


def test_the_whole_photo_takes_the_last_places_of_the_first_page_and_never_the_first() -> None:
    out = hedge_with_whole_photo(CROP, hits("w0", "c1", "w1", "w2"), slots=2, top_k=100)
    assert [h.product_id for h in out[:10]] == [f"c{i}" for i in range(8)] + ["w0", "w1"]
    assert [h.product_id for h in out[10:12]] == ["c8", "c9"]  # pushed down, not dropped
    assert len(out) == len(CROP) + 2


def test_products_already_listed_are_not_repeated() -> None:
    out = hedge_with_whole_photo(CROP, hits("c0", "c9", "w0"), slots=2, top_k=10)
    ids = [h.product_id for h in out]
    assert ids[:10] == [f"c{i}" for i in range(8)] + ["c9", "w0"] and len(ids) == len(set(ids))


@pytest.mark.parametrize(("slots", "top_k"), [(0, 10), (2, 2), (2, 1)])
def test_no_room_beside_the_first_hit_or_no_slots_changes_nothing(slots: int, top_k: int) -> None:
    assert hedge_with_whole_photo(CROP, hits("w0"), slots=slots, top_k=top_k) == CROP


class TwoListRetriever:
    """The crop's vector finds c*, the whole photo's finds w*."""

    def __init__(self, top_score: float) -> None:
        self.top_score = top_score
        self.calls = 0

    async def search(self, model: ModelId, vector: np.ndarray, **kwargs: Any) -> list[Hit]:
        self.calls += 1
        return hits(*(f"c{i}" for i in range(12)), score=self.top_score) if vector[0] > 0 else hits("w0", "w1", "w2")


class LocalisingEmbedder:
    async def embed_with_whole(self, images: Any, localize: bool = False, trim_to_object: bool = False) -> list[Any]:
        return [(np.array([1, 0, 0, 0], np.float32), np.array([-1, 0, 0, 0], np.float32))]


class NoCache:
    async def get(self, catalog: str, fingerprint: str, read: bool = True) -> tuple[None, None]:
        return None, None


class Models:
    model = MODEL
    calibration = ScoreCalibration(20.0, -6.0)  # p = 0.5 at score 0.3


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(("top_score", "hedged"), [(0.25, True), (0.45, False)])
async def test_search_hedges_only_when_the_best_hit_is_unconvincing(top_score: float, hedged: bool) -> None:
    retriever = TwoListRetriever(top_score)
    core = SearchCore(LocalisingEmbedder(), retriever, NoCache(), Models(), 10, 100, True, 0.0, 0, 2, 0.5)  # type: ignore[arg-type]
    outcome = await core.search(SearchQuery(image=b"photo"))
    ids = [h.product_id for h in outcome.hits]
    assert ids[0] == "c0" and len(ids) == 10
    assert (ids[8:] == ["w0", "w1"]) is hedged
    assert retriever.calls == (2 if hedged else 1)  # the extra search only when it is needed
