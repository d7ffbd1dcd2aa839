"""The embedder's core with a fake model (no Triton): order, limits, framing flags, one model per request."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageDraw

from embedder.fakes import MeanColourModel
from imagesearch.common.errors import InvalidArgument, ResourceExhausted
from imagesearch.common.types import ImageErrorReason, Region
from imagesearch.imaging.errors import ImageRejected
from imagesearch_embedder.core import EmbedderCore, EmbedOptions, ImageItem


def jpeg(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def shot_png(box: tuple[int, int, int, int] = (180, 130, 220, 170)) -> bytes:
    """A small red ellipse on white, 400 x 300."""
    im = Image.new("RGB", (400, 300), (255, 255, 255))
    ImageDraw.Draw(im).ellipse((box[0], box[1], box[2] - 1, box[3] - 1), fill=(200, 40, 40))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def core_with(fake: MeanColourModel, pool: ThreadPoolExecutor, **options: int) -> EmbedderCore:
    return EmbedderCore(fake, EmbedOptions(**options), pool)  # type: ignore[arg-type]


async def test_core_keeps_order_and_sends_one_batch(pool: ThreadPoolExecutor) -> None:
    fake = MeanColourModel()
    core = core_with(fake, pool, max_batch_images=5)
    items = [
        (jpeg((250, 0, 0)), None),
        (b"", None),
        (jpeg((0, 0, 250)), None),
        ImageRejected(ImageErrorReason.BAD_REGION, "bad"),
        (jpeg((0, 250, 0)), None),
    ]
    results = (await core.embed(items)).results
    assert fake.batches == [3]
    assert [type(r).__name__ for r in results] == ["ndarray", "ImageRejected", "ndarray", "ImageRejected", "ndarray"]
    assert [int(np.argmax(results[i][:3])) for i in (0, 2, 4)] == [0, 2, 1]  # red, blue, green in their slots
    assert results[3] is items[3]


async def test_core_request_limits(pool: ThreadPoolExecutor) -> None:
    core = core_with(MeanColourModel(), pool, max_batch_images=2)
    with pytest.raises(InvalidArgument, match="no images"):
        await core.embed([])
    with pytest.raises(InvalidArgument, match="3 images; the limit is 2"):
        await core.embed([(jpeg(), None)] * 3)


async def test_core_with_only_bad_images_never_calls_the_model(pool: ThreadPoolExecutor) -> None:
    fake = MeanColourModel()
    results = (await core_with(fake, pool).embed([(b"junk", None)])).results
    assert fake.batches == [] and isinstance(results[0], ImageRejected)


async def test_a_request_keeps_the_model_it_started_with(pool: ThreadPoolExecutor) -> None:
    """A rollout mid-request never mixes versions: every call of one request infers with the version it read first,
    and its vectors carry that version's label; the next request uses the new version."""
    fake = MeanColourModel()
    core = core_with(fake, pool)
    fake.roll_to("2", after_reads=1)  # the adapter adopts version 2 right after this request reads version 1
    first = await core.embed([ImageItem(shot_png(), localize=True), (jpeg(), None)])
    assert first.model.version == "1" and set(fake.versions_used) == {"1"} and len(fake.versions_used) == 3
    fake.versions_used.clear()
    second = await core.embed([(jpeg(), None)])
    assert second.model.version == "2" and fake.versions_used == ["2"]


async def test_a_localised_photo_returns_its_crop_and_its_whole_photo(pool: ThreadPoolExecutor) -> None:
    fake = MeanColourModel()
    embedded = await core_with(fake, pool).embed([ImageItem(shot_png(), localize=True)])
    [crop] = embedded.results
    assert isinstance(crop, np.ndarray) and 0 in embedded.wholes
    assert redness(crop) > redness(embedded.wholes[0])  # the crop is tighter on the red object than the photo


async def test_a_region_can_be_localised_inside_as_a_zoomed_look(pool: ThreadPoolExecutor) -> None:
    """`localize_in_region`: the two passes over the region alone; the box comes back in the photo's coordinates."""
    core = core_with(MeanColourModel(), pool)
    data = shot_png((300, 210, 340, 250))  # the object in the lower right quarter
    quarter = Region(0.5, 0.5, 1.0, 1.0)
    embedded = await core.embed([ImageItem(data, quarter), ImageItem(data, quarter, localize_in_region=True)])
    plain, zoomed = embedded.results
    assert isinstance(zoomed, np.ndarray) and 0 not in embedded.wholes
    assert redness(zoomed) > redness(embedded.wholes[1]) and np.allclose(embedded.wholes[1], plain, atol=0.05)
    x0, y0, x1, y1 = embedded.boxes[1]
    assert 0.5 <= x0 < 300 / 400 < 340 / 400 < x1 <= 1.0 and 0.5 <= y0 < 210 / 300 < 250 / 300 < y1 <= 1.0
    # Objects are listed for whole photos only; a model without a map embeds the region as given.
    framed = ImageItem(data, quarter, localize_in_region=True, detect_objects=True).framing(True)
    assert framed.localize and not framed.detect_objects
    assert not ImageItem(data, quarter, localize_in_region=True).framing(False).localize
    assert not ImageItem(data, localize_in_region=True).framing(True).localize


async def test_a_localised_photo_also_says_where_it_is_most_conspicuous(pool: ThreadPoolExecutor) -> None:
    """A second guess at the product from the pixels alone, for whole photos only (a region is a look
    already), and none where nothing stands out."""
    data = shot_png((300, 210, 340, 250))
    flat = jpeg((120, 140, 160), size=(320, 240))
    embedded = await core_with(MeanColourModel(), pool).embed(
        [
            ImageItem(data, localize=True),
            ImageItem(data, Region(0.5, 0.5, 1.0, 1.0), localize_in_region=True),
            ImageItem(flat, localize=True),
        ]
    )
    assert set(embedded.popouts) == {0}
    x0, y0, x1, y1 = embedded.popouts[0]
    assert x0 <= 320 / 400 <= x1 and y0 <= 230 / 300 <= y1


def redness(vector: np.ndarray) -> float:
    return float(vector[0] / max(vector[1], vector[2]))


async def test_the_core_trims_only_images_that_ask(pool: ThreadPoolExecutor) -> None:
    core = core_with(MeanColourModel(), pool)
    data = shot_png()  # a small red object on white
    whole, trimmed, tupled = (
        await core.embed(
            [
                ImageItem(data),
                ImageItem(data, trim_to_object=True),
                (data, None),
            ]
        )
    ).results
    assert redness(trimmed) > 2 > 1.2 > redness(whole)  # type: ignore[arg-type]
    assert np.array_equal(whole, tupled)  # a plain (bytes, region) tuple is still an item


async def test_a_region_wins_over_trimming(pool: ThreadPoolExecutor) -> None:
    core = core_with(MeanColourModel(), pool)
    data = shot_png()
    corner = Region(0.0, 0.0, 0.25, 0.25)  # all white
    plain, asked = (await core.embed([ImageItem(data, corner), ImageItem(data, corner, trim_to_object=True)])).results
    assert np.array_equal(plain, asked)
    assert ImageItem(data, corner, localize=True, trim_to_object=True).framing(True) == ImageItem(data, corner)
    assert ImageItem(data, localize=True, trim_to_object=True).framing(True) == ImageItem(data, trim_to_object=True)
    assert ImageItem(data, localize=True).framing(False) == ImageItem(data)


async def test_a_bad_image_asked_to_be_trimmed_is_rejected_alone(pool: ThreadPoolExecutor) -> None:
    core = core_with(MeanColourModel(), pool)
    good = shot_png()
    results = (
        await core.embed([ImageItem(b"junk", trim_to_object=True), ImageItem(good, trim_to_object=True)])
    ).results
    assert type(results[0]).__name__ == "ImageRejected" and isinstance(results[1], np.ndarray)


def flat_png(mode: str, side: int) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (side, side)).save(buf, "PNG")
    return buf.getvalue()


async def test_a_request_whose_images_the_decode_budget_cannot_hold_fails_whole_and_holds_nothing(
    pool: ThreadPoolExecutor,
) -> None:
    fake = MeanColourModel()
    core = core_with(fake, pool, decode_memory_bytes=3 * 2**20)  # 3 MiB
    big = flat_png("RGB", 600)  # reserves ~3.4 MB: alone it is admitted (nothing else in flight) ...
    assert len((await core.embed([(big, None)])).results) == 1
    with pytest.raises(ResourceExhausted, match="embedder: decode memory is exhausted"):
        await core.embed([(big, None), (big, None)])  # ... but not beside another one
    assert core.decode_memory.used == 0
    assert fake.batches == [1]  # the refused request never reached the model


def decode_memory_at_first_pass(fake: MeanColourModel, core: EmbedderCore) -> list[int]:
    """The decode memory the core holds each time the first pass runs (filled in as it runs)."""
    held: list[int] = []
    original = fake.embed_with_saliency

    async def spy(batch: np.ndarray, served: object) -> tuple[np.ndarray, np.ndarray]:
        held.append(core.decode_memory.used)
        return await original(batch, served)  # type: ignore[arg-type]

    fake.embed_with_saliency = spy  # type: ignore[method-assign]
    return held


async def test_decoded_photos_stay_reserved_until_their_request_ends(pool: ThreadPoolExecutor) -> None:
    fake = MeanColourModel()
    core = core_with(fake, pool)
    seen = decode_memory_at_first_pass(fake, core)  # the first pass ran; the decoded photo is still held
    await core.embed([ImageItem(shot_png(), localize=True)])
    assert seen and seen[0] > 400 * 300
    assert core.decode_memory.used == 0


async def test_the_conspicuous_part_fits_the_decode_budget_or_is_left_out(pool: ThreadPoolExecutor) -> None:
    """Its grey copy of the whole photo is reserved like a decode; where the budget cannot hold it, the
    photo is still embedded, without the second guess."""
    data = shot_png((300, 210, 340, 250))
    probe = MeanColourModel()
    roomy = core_with(probe, pool)
    seen = decode_memory_at_first_pass(probe, roomy)
    assert 0 in (await roomy.embed([ImageItem(data, localize=True)])).popouts
    tight = core_with(MeanColourModel(), pool, decode_memory_bytes=seen[0] + 1000)  # not the 400 x 300 grey copy
    embedded = await tight.embed([ImageItem(data, localize=True)])
    assert isinstance(embedded.results[0], np.ndarray) and not embedded.popouts
    assert roomy.decode_memory.used == tight.decode_memory.used == 0


async def test_regions_of_one_photo_localised_together_decode_it_once(pool: ThreadPoolExecutor) -> None:
    """The gateway's zoom tiles: four regions of one photo cost one decode and one reservation, not four."""
    fake = MeanColourModel()
    core = core_with(fake, pool)
    held = decode_memory_at_first_pass(fake, core)
    data = shot_png()
    await core.embed([ImageItem(data, localize=True)])
    one_photo = held.pop()
    corners = [Region(0, 0, 0.6, 0.6), Region(0.4, 0, 1, 0.6), Region(0, 0.4, 0.6, 1), Region(0.4, 0.4, 1, 1)]
    embedded = await core.embed([ImageItem(data, corner, localize_in_region=True) for corner in corners])
    assert held == [one_photo] and fake.batches[-2:] == [4, 4]  # one first pass and one crop per tile
    assert len(embedded.boxes) == 4 and all(isinstance(r, np.ndarray) for r in embedded.results)
    # A photo that cannot be decoded rejects every region of it, each in its own slot.
    rejected = (await core.embed([ImageItem(b"junk", corner, localize_in_region=True) for corner in corners])).results
    assert all(isinstance(r, ImageRejected) and r.reason == ImageErrorReason.UNSUPPORTED_FORMAT for r in rejected)


class CountingPool(ThreadPoolExecutor):
    """Counts the tasks that actually ran (a cancelled one never starts)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.ran = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        def counted(*a, **k):  # type: ignore[no-untyped-def]
            self.ran += 1
            return fn(*a, **k)

        return super().submit(counted, *args, **kwargs)


async def test_a_cancelled_request_drops_the_decodes_it_had_not_started_and_frees_its_memory() -> None:
    pool = CountingPool()
    try:
        core = core_with(MeanColourModel(), pool)
        request = asyncio.create_task(core.embed([(flat_png("RGB", 1500), None)] * 16))
        while core.decode_memory.used == 0:  # the first decode has started
            await asyncio.sleep(0.001)
        request.cancel()  # the caller went away
        with pytest.raises(asyncio.CancelledError):
            await request
        await asyncio.to_thread(pool.shutdown, wait=True)
        assert pool.ran <= 2, f"{pool.ran} of 16 decodes ran for a request nobody waited for"
        assert core.decode_memory.used == 0
    finally:
        pool.shutdown(wait=False)
