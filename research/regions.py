"""Regional GeM over sub-rectangles of the first pass's feature map (no extra evaluation)."""
import numpy as np


def region_list(h, w, valid, min_cells=2):
    """rectangles (y0,y1,x0,x1) in cell units inside the valid cell range, aspect within 1:2."""
    (vy0, vy1), (vx0, vx1) = valid
    out = []
    for hh in range(min_cells, vy1 - vy0 + 1):
        for ww in range(min_cells, vx1 - vx0 + 1):
            if max(hh, ww) > 2 * min(hh, ww):
                continue
            for y in range(vy0, vy1 - hh + 1):
                for x in range(vx0, vx1 - ww + 1):
                    out.append((y, y + hh, x, x + ww))
    return out


def valid_cells(img_w, img_h, size, cell=32):
    s = size / max(img_w, img_h)
    cw, ch = round(img_w * s), round(img_h * s)
    ox, oy = (size - cw) // 2, (size - ch) // 2
    g = size // cell
    return (int(oy // cell), int(min(g, -(-(oy + ch) // cell)))), (int(ox // cell), int(min(g, -(-(ox + cw) // cell))))


def regional_gem(fmap, regions, p=3.0):
    f = np.clip(fmap.astype(np.float32), 1e-6, None) ** p  # [C,h,w]
    # integral image for fast box means
    ii = np.zeros((f.shape[0], f.shape[1] + 1, f.shape[2] + 1), np.float64)
    ii[:, 1:, 1:] = f.cumsum(1).cumsum(2)
    R = []
    for y0, y1, x0, x1 in regions:
        s = ii[:, y1, x1] - ii[:, y0, x1] - ii[:, y1, x0] + ii[:, y0, x0]
        R.append(np.clip(s / ((y1 - y0) * (x1 - x0)), 1e-18, None) ** (1 / p))
    R = np.array(R)
    return R / np.linalg.norm(R, axis=1, keepdims=True)


def region_to_box(reg, img_w, img_h, size, cell=32, expand=0.0):
    y0, y1, x0, x1 = reg
    s = size / max(img_w, img_h)
    cw, ch = round(img_w * s), round(img_h * s)
    ox, oy = (size - cw) // 2, (size - ch) // 2
    bx0, bx1 = (x0 * cell - ox) / s, (x1 * cell - ox) / s
    by0, by1 = (y0 * cell - oy) / s, (y1 * cell - oy) / s
    bw, bh = bx1 - bx0, by1 - by0
    return (max(0.0, bx0 - expand * bw), max(0.0, by0 - expand * bh), min(float(img_w), bx1 + expand * bw),
            min(float(img_h), by1 + expand * bh))
