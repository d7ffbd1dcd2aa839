"""Hedging a localised search with the whole photo.

The embedder crops a shopper's photo to where the model's activations say the
product is. When that crop is wrong (a small product in a busy scene, where a
patch of background wins), every hit is wrong. The localisation pass has also
embedded the whole photo, for free: when the best hit is not convincing (its
same-product probability is low), the last `slots` places of the first page go
to the whole photo's best products not already listed. On dev with the adapted
model this took Recall@10 from 0.940 to 0.957 at no cost to Recall@1 (the first
hit is never replaced) and none to category P@10 (docs/quality.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from imagesearch.common.types import Hit

# The first page of results: the places a shopper looks at.
PAGE = 10


def hedge_with_whole_photo(ranked: Sequence[Hit], whole_photo: Sequence[Hit], slots: int, top_k: int) -> list[Hit]:
    """`ranked` with its places page-slots+1 .. page given to `whole_photo`'s best new products.

    page = min(top_k, PAGE); nothing changes when the page has no room beside the first hit.
    The hits keep their own scores (the whole photo's similarity, for the inserted ones).
    """
    page = min(top_k, PAGE)
    if slots <= 0 or page - slots < 1 or not whole_photo:
        return list(ranked)
    head = list(ranked[: page - slots])
    listed = {h.product_id for h in head}
    fill: list[Hit] = []
    for hit in whole_photo:
        if len(fill) == slots:
            break
        if hit.product_id not in listed:
            fill.append(hit)
            listed.add(hit.product_id)
    rest = [h for h in ranked[page - slots :] if h.product_id not in listed]
    return head + fill + rest
