"""The learned whitening: pure numpy, specified on data with a known structure."""

from __future__ import annotations

import numpy as np
import pytest

from imagesearch.adaptation.whitening import WhiteningError, fit_learned_whitening

NUISANCE = 10.0  # how much a product's photos vary along the 'background' dims


def _noise(rng: np.random.Generator, rows: int) -> np.ndarray:
    return np.concatenate([rng.normal(0, 0.05, (rows, 16)), rng.normal(0, NUISANCE, (rows, 16))], axis=1)


def _items_and_views(rng: np.random.Generator, items: int = 300, views: int = 4, width: int = 32):
    """Items differ along dims 0-15; views of one item vary strongly along dims 16-31 (a 'background')."""
    clean = np.zeros((items, width))
    clean[:, :16] = rng.normal(0, 1.0, (items, 16))
    clean[:, 16:] = rng.normal(0, 0.1, (items, 16))
    item = np.repeat(np.arange(items), views)
    return clean, clean[item] + _noise(rng, len(item)), item


def _recall_at_1(queries: np.ndarray, index: np.ndarray) -> float:
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    index = index / np.linalg.norm(index, axis=1, keepdims=True)
    return float(np.mean(np.argmax(queries @ index.T, axis=1) == np.arange(len(index))))


def test_the_whitening_makes_photos_find_their_item_where_raw_cosine_does_not() -> None:
    rng = np.random.default_rng(0)
    clean, views, item = _items_and_views(rng)
    whitening = fit_learned_whitening(clean, views, item, dimension=16, shrinkage=0.5)
    photos = clean + _noise(rng, len(clean))  # fresh views, one per item, not used by the fit
    assert _recall_at_1(photos, clean) < 0.7
    assert _recall_at_1(whitening.apply(photos), whitening.apply(clean)) > 0.95


def test_outputs_are_unit_vectors_of_the_asked_dimension() -> None:
    clean, views, item = _items_and_views(np.random.default_rng(1))
    whitening = fit_learned_whitening(clean, views, item, dimension=8)
    out = whitening.apply(views)
    assert out.shape == (len(views), 8) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert (whitening.input_dimension, whitening.dimension) == (32, 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dimension": 0}, "dimension must lie in"),
        ({"dimension": 33}, "dimension must lie in"),
        ({"shrinkage": 0.0}, "shrinkage must be > 0"),
    ],
)
def test_bad_settings_are_named(change: dict, message: str) -> None:
    clean, views, item = _items_and_views(np.random.default_rng(2))
    with pytest.raises(WhiteningError, match=message):
        fit_learned_whitening(clean, views, item, **{"dimension": 8, "shrinkage": 0.5, **change})


def test_views_of_another_width_are_refused() -> None:
    clean, views, item = _items_and_views(np.random.default_rng(3))
    with pytest.raises(WhiteningError, match="do not match"):
        fit_learned_whitening(clean, views[:, :16], item)
