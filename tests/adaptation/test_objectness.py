"""The localisation map's pure parts: labels from a view's box, the fit, the interpolation the graph does."""

from __future__ import annotations

import numpy as np
import pytest

from imagesearch.adaptation.objectness import box_overlap, cell_features, cell_labels, fit_objectness


def test_cells_are_labelled_by_the_products_box_inside_the_letterboxed_photo() -> None:
    # A 320 x 160 photo letterboxed into 224 px: 0.7 px per photo pixel, 56 px of padding above and below.
    on, inside = cell_labels(320, 160, (0, 0, 160, 80), rows=14, cols=14)
    assert inside.sum() == 14 * 7 and not inside[:3].any() and not inside[-4:].any()
    assert on[3:7, :7].all() and on.sum() == 4 * 7  # the top-left quarter of the photo: its cell centres
    assert (on <= inside).all()


def test_the_fit_separates_cells_on_and_off_the_product_and_returns_raw_feature_weights() -> None:
    rng = np.random.default_rng(0)
    on = rng.random(4000) < 0.2
    cells = rng.normal(0, 1, (4000, 6)).astype(np.float32) * [1, 5, 1, 1, 1, 1] + [0, 100, 0, 0, 0, 0]
    cells[:, 0] += np.where(on, 2.0, -2.0)  # one informative feature map channel
    cells[:, 5] += np.where(on, 10.0, 0.0)  # one informative mid-level channel, on another scale
    fitted = fit_objectness(cells.astype(np.float32), on, channels=4)
    assert fitted.features_weights.shape == (4,) and fitted.mid_weights.shape == (2,)
    accuracy = np.mean((fitted.probability(cells) > 0.5) == on)
    assert accuracy > 0.97


def test_cells_all_on_or_all_off_cannot_be_fitted() -> None:
    with pytest.raises(ValueError, match="both on and off"):
        fit_objectness(np.ones((10, 3), np.float32), np.ones(10, bool), channels=2)


def test_the_feature_map_is_upsampled_with_half_pixel_centres_clamped_at_the_edges() -> None:
    features = np.array([[[[0.0, 4.0], [8.0, 12.0]]]], np.float32)  # (1, 1, 2, 2)
    mid = np.zeros((1, 1, 4, 4), np.float32)
    up = cell_features(features, mid)[0, :, :, 0]
    np.testing.assert_allclose(up[0], [0, 1, 3, 4])  # as torch's bilinear, align_corners=False
    np.testing.assert_allclose(up[:, 0], [0, 2, 6, 8])


def test_box_overlap_is_intersection_over_union() -> None:
    assert box_overlap((0, 0, 0.5, 1), (0, 0, 1, 1)) == pytest.approx(0.5)
    assert box_overlap((0, 0, 0.2, 0.2), (0.5, 0.5, 1, 1)) == 0.0
