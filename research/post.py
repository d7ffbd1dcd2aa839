"""Steps 4/5: PCA-whitening learned on the index embeddings; query expansion / database augmentation."""
import numpy as np

from common import l2n


def fit_pcaw(X, dim=None, power=0.5, shrink=0.0):
    """PCA-whitening learned on index embeddings X [N,D]. Returns (mean, P) with y = l2n((x-mean) @ P)."""
    mu = X.mean(0)
    C = np.cov((X - mu).T)
    ev, V = np.linalg.eigh(C)
    ev, V = ev[::-1], V[:, ::-1]
    if dim:
        ev, V = ev[:dim], V[:, :dim]
    ev = ev + shrink * ev.mean()
    P = V / np.power(np.maximum(ev, 1e-9), power)
    return mu.astype(np.float32), P.astype(np.float32)


def apply_pcaw(x, mu, P):
    return l2n((x - mu) @ P)


def alpha_qe(q, idx, k=3, alpha=3.0, owner=None):
    """alpha-QE over the top-k index rows: q' = l2n(q + sum s_i^alpha x_i)."""
    s = q @ idx.T
    top = np.argsort(-s, 1)[:, :k]
    w = np.clip(np.take_along_axis(s, top, 1), 0, None) ** alpha
    return l2n(q + (w[..., None] * idx[top]).sum(1))


def dba(idx, k=2, alpha=3.0):
    """database-side augmentation: every index row averaged with its top-k neighbours."""
    s = idx @ idx.T
    top = np.argsort(-s, 1)[:, : k + 1]  # includes itself
    w = np.clip(np.take_along_axis(s, top, 1), 0, None) ** alpha
    return l2n((w[..., None] * idx[top]).sum(1))


def fit_lw(index_emb, views, view_item, items, dim=512, shrink_s=0.5):
    """Learned whitening (Radenovic et al. 2016) from synthetic views: whiten by the intra-item covariance of
    (view - clean shot) differences (eigenvalue shrinkage shrink_s x mean), then rotate onto the PCA of the
    whitened clean index embeddings of `items` and keep `dim` dims. y = l2n((x - mean) @ P)."""
    keep = np.isin(view_item, items)
    D = views[keep] - index_emb[view_item[keep]]
    ev, U = np.linalg.eigh(np.cov(D.T))
    ev = np.maximum(ev, 0) + shrink_s * ev.mean()
    P1 = U / np.sqrt(ev)
    mu = index_emb[items].mean(0)
    ev2, U2 = np.linalg.eigh(np.cov(((index_emb[items] - mu) @ P1).T))
    P = P1 @ U2[:, ::-1][:, :dim]
    return mu.astype(np.float32), P.astype(np.float32)
