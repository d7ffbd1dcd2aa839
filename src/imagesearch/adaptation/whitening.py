"""Learned whitening (Radenovic et al., "CNN image retrieval learns from BoW", ECCV 2016).

No gradient training: two eigendecompositions. First whiten by the covariance of
(view - clean shot) differences of the same item, so that directions in which a
product's photos vary (background, lighting, framing) are shrunk; eigenvalue
shrinkage keeps rare directions from being blown up. Then rotate onto the PCA of
the whitened clean shots and keep the strongest `dimension` directions, where
products differ from each other. y = l2n((x - mean) @ projection).

Offline on the dev benchmark (docs/quality.md) this beat plain PCA-whitening by
1-3 points R@1 and 4-5 points category P@10, on products the fit never saw too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from imagesearch.common.types import Floats


class WhiteningError(ValueError):
    """Not enough data to fit, or inconsistent inputs; the message says which."""


@dataclass(frozen=True)
class Whitening:
    mean: Floats  # (D,)
    projection: Floats  # (D, d)

    @property
    def input_dimension(self) -> int:
        return int(self.projection.shape[0])

    @property
    def dimension(self) -> int:
        return int(self.projection.shape[1])

    def apply(self, vectors: ArrayLike) -> Floats:
        """(N, D) -> (N, d), L2-normalised: the same arithmetic as the graph's appended nodes."""
        projected = (np.asarray(vectors, dtype=np.float32) - self.mean) @ self.projection
        return np.asarray(projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12), np.float32)


def fit_learned_whitening(
    clean: ArrayLike, views: ArrayLike, view_item: ArrayLike, dimension: int = 512, shrinkage: float = 0.5
) -> Whitening:
    """Fit from clean shots `clean` (N, D), synthetic views `views` (M, D) and each view's row in `clean`.

    `shrinkage` adds shrinkage x the mean eigenvalue to every eigenvalue of the intra-item covariance
    (0.5 was best on dev among 0.1-1.0; without it, whitening all 1280 dims collapses recall).
    """
    clean = np.asarray(clean, dtype=np.float64)
    views = np.asarray(views, dtype=np.float64)
    view_item = np.asarray(view_item)
    n, width = clean.shape
    if views.ndim != 2 or views.shape[1] != width or len(views) != len(view_item):
        raise WhiteningError(
            f"views {views.shape} and view_item {view_item.shape} do not match clean shots of width {width}"
        )
    if not 1 <= dimension <= width:
        raise WhiteningError(f"dimension must lie in [1, {width}], got {dimension}")
    if n < 2 or len(views) < 2:
        raise WhiteningError(f"need at least 2 items and 2 views to fit a whitening, got {n} and {len(views)}")
    if not shrinkage > 0:
        raise WhiteningError(f"shrinkage must be > 0 (it keeps the fit stable), got {shrinkage}")
    differences = views - clean[view_item]
    eigenvalues, vectors = np.linalg.eigh(np.cov(differences.T))
    eigenvalues = np.maximum(eigenvalues, 0.0)
    eigenvalues = eigenvalues + shrinkage * eigenvalues.mean()
    whiten = vectors / np.sqrt(eigenvalues)
    mean = clean.mean(axis=0)
    _, rotation = np.linalg.eigh(np.cov(((clean - mean) @ whiten).T))
    projection = whiten @ rotation[:, ::-1][:, :dimension]  # eigh sorts ascending: strongest last
    return Whitening(mean.astype(np.float32), projection.astype(np.float32))
