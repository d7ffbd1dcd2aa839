"""Every object of a photo: the main one as localisation finds it, and the others beside it."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from imagesearch.imaging.detect import MAX_OBJECTS, find_objects
from imagesearch.imaging.localize import subject_box


def _saliency_at(boxes: list[tuple[float, float, float, float]], size: int = 14) -> np.ndarray:
    """A square map, as of a photo letterboxed into the model's input, hot inside `boxes`."""
    grid = np.zeros((size, size), np.float32)
    for x0, y0, x1, y1 in boxes:
        grid[int(y0 * size) : int(np.ceil(y1 * size)), int(x0 * size) : int(np.ceil(x1 * size))] += 1.0
    return grid


def _laid_out(count: int, size: tuple[int, int] = (640, 320)) -> Image.Image:
    """`count` coloured shapes side by side on white, like products on a table photographed from above."""
    photo = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(photo)
    w, h = size
    for i in range(count):
        left = i * w // count + w // (4 * count)
        draw.ellipse((left, h // 4, left + w // (2 * count), 3 * h // 4), fill=(200 - 60 * i, 40, 60 + 60 * i))
    return photo


def test_products_side_by_side_on_a_plain_backdrop_are_each_found() -> None:
    photo = _laid_out(2)
    found = find_objects(photo, _saliency_at([(0.0, 0.3, 1.0, 0.7)]))  # a coarse map joins them
    assert len(found) == 2
    left, right = sorted(found, key=lambda o: o.box[0])
    assert left.box[2] <= 0.5 <= right.box[0]  # one box each, neither spanning both
    assert all(0 < o.salience <= 1 for o in found)


def test_never_more_than_the_limit_and_the_most_salient_first() -> None:
    photo = _laid_out(5)
    found = find_objects(photo, _saliency_at([(0.55, 0.3, 0.7, 0.7)]))
    assert len(found) == MAX_OBJECTS
    assert found[0].salience == max(o.salience for o in found)


def test_in_a_busy_scene_the_main_object_is_what_localisation_crops_to() -> None:
    rng = np.random.default_rng(0)
    scene = Image.fromarray(rng.integers(0, 255, (320, 480, 3), dtype=np.uint8))  # no plain border
    saliency = _saliency_at([(0.3, 0.4, 0.6, 0.6)])
    found = find_objects(scene, saliency)
    assert found[0].box == subject_box(saliency, *scene.size)


def test_a_second_salient_peak_apart_from_the_first_is_a_second_object() -> None:
    rng = np.random.default_rng(1)
    scene = Image.fromarray(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8))
    saliency = _saliency_at([(0.1, 0.1, 0.4, 0.4)]) + 0.8 * _saliency_at([(0.6, 0.6, 0.9, 0.9)])
    found = find_objects(scene, saliency)
    assert len(found) == 2 and found[1].box[0] >= 0.5 and found[1].box[1] >= 0.5


def test_a_photo_where_nothing_stands_out_is_one_object_the_whole_photo() -> None:
    found = find_objects(Image.new("RGB", (300, 200), (90, 90, 90)), np.zeros((14, 14), np.float32))
    assert [o.box for o in found] == [(0.0, 0.0, 1.0, 1.0)]
