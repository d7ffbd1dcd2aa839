#!/usr/bin/env python3
"""Step 6: a small projection head trained on synthetic views of the index's own product shots.

Backbone frozen; features of the views are pre-computed by gen_views.py. InfoNCE: each view's
projection against the projections of the clean index embeddings of all training items (full softmax,
temperature TAU). Both index and queries go through the same head at search time.
Honest estimate: train on distractors + half of the catalog (split fixed in cache/catalog_heldout.npy),
report on the queries of the other half (unseen products) and on all queries; the 'all' model trains on
every index item (what production would do when the catalog is indexed).
"""
from __future__ import annotations

import glob
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, l2n, load_meta  # noqa: E402
from post import fit_pcaw  # noqa: E402

torch.set_num_threads(1)


class Head(torch.nn.Module):
    def __init__(self, d_in=1280, d_out=512, kind="linear", init=None):
        super().__init__()
        self.kind = kind
        if kind == "linear":
            self.lin = torch.nn.Linear(d_in, d_out)
            if init is not None:  # (mu, P): start from PCA-whitening
                mu, P = init
                with torch.no_grad():
                    scale = 1.0 / np.linalg.norm(P, axis=0).mean()
                    self.lin.weight.copy_(torch.from_numpy(P.T * scale))
                    self.lin.bias.copy_(torch.from_numpy(-(mu @ P) * scale))
        else:
            self.net = torch.nn.Sequential(torch.nn.Linear(d_in, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, d_out))
            self.skip = torch.nn.Linear(d_in, d_out, bias=False)

    def forward(self, x):
        y = self.lin(x) if self.kind == "linear" else self.net(x) + self.skip(x)
        return F.normalize(y, dim=-1)


def load_views(pool, size=224):
    X, I = [], []
    for f in sorted(glob.glob(str(CACHE / f"views_{size}_*.npz"))):
        z = np.load(f)
        X.append(z[pool])
        I.append(z["item"])
    return np.concatenate(X), np.concatenate(I)


def train(clean, views, vitem, train_items, kind="linear", d_out=512, tau=0.05, epochs=40, lr=1e-3, wd=1e-4,
          init_pcaw=True, extra_clean=None, seed=0, verbose=False):
    torch.manual_seed(seed)
    tr = np.asarray(train_items)
    pos = -np.ones(len(clean), int)
    pos[tr] = np.arange(len(tr))
    keep = pos[vitem] >= 0
    V = torch.from_numpy(views[keep])
    y = torch.from_numpy(pos[vitem[keep]])
    C = torch.from_numpy(clean[tr])
    if extra_clean is not None:  # mirrored clean shots as additional positives (extra views)
        V = torch.cat([V, torch.from_numpy(extra_clean[tr])])
        y = torch.cat([y, torch.arange(len(tr))])
    init = fit_pcaw(clean[tr], d_out, shrink=0.1) if (init_pcaw and kind == "linear") else None
    head = Head(clean.shape[1], d_out, kind, init)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=wd)
    n = len(V)
    bs = 256
    steps = epochs * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for ep in range(epochs):
        perm = torch.randperm(n)
        tot = 0.0
        for i in range(0, n, bs):
            b = perm[i:i + bs]
            zc = head(C)
            zv = head(F.dropout(V[b], 0.1))
            loss = F.cross_entropy(zv @ zc.T / tau, y[b])
            # symmetric term: clean shot -> its views in the batch is implicit; add clean->clean identity
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(b)
        if verbose and (ep % 10 == 0 or ep == epochs - 1):
            print(f"  epoch {ep} loss {tot / n:.3f}", flush=True)
    head.eval()
    return head


def project(head, x):
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return head(t).numpy()
