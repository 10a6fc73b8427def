"""JPEG draft decoding: reduced-scale decodes for big JPEGs, everything else as before, fastai pipelines unchanged."""

import pickle

import numpy as np
import pytest
from PIL import Image

from kaggle_kit.vision.images import DraftImage, draft_image_block, open_for_size


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    coarse = (rng.random((200, 250, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(coarse).resize((2000, 1600), Image.BILINEAR)
    image.save(tmp_path / "big.jpg", quality=90)
    image.save(tmp_path / "big.png")
    image.resize((300, 240)).save(tmp_path / "small.jpg", quality=90)
    return tmp_path


def test_a_big_jpeg_is_decoded_at_the_smallest_scale_that_covers_the_target(photo):
    image = open_for_size(photo / "big.jpg", 256)

    assert image.size == (500, 400)  # 1/4 scale: the next one (1/8, 250x200) would be under 256 px high
    assert image.mode == "RGB"


def test_pngs_and_jpegs_under_twice_the_target_decode_in_full(photo):
    assert open_for_size(photo / "big.png", 256).size == (2000, 1600)
    assert open_for_size(photo / "small.jpg", 256).size == (300, 240)
    assert open_for_size(photo / "big.jpg", None).size == (2000, 1600)


def test_after_the_resize_the_pixels_stay_close_to_a_full_decode(photo):
    with Image.open(photo / "big.jpg") as full_image:
        full = np.asarray(full_image.convert("RGB").resize((256, 256), Image.BILINEAR), dtype=float)
    draft = np.asarray(open_for_size(photo / "big.jpg", 256).resize((256, 256), Image.BILINEAR), dtype=float)

    assert np.abs(full - draft).mean() < 3.0  # of 255: measured about 1 (benchmarks/decode.py)


def test_the_block_works_in_a_datablock_and_its_test_dataloader(photo):
    from fastai.vision.all import CategoryBlock, DataBlock, Resize

    items = [photo / "big.jpg", photo / "small.jpg", photo / "big.png"] * 2
    block = DataBlock((draft_image_block(64), CategoryBlock), get_y=lambda p: p.suffix, item_tfms=Resize(64),
                      splitter=lambda items: (list(range(4)), [4, 5]))  # fmt: skip
    dls = block.dataloaders(items, bs=2, num_workers=0)

    xb = dls.test_dl(items[:3]).one_batch()[0]

    assert tuple(xb.shape) == (2, 3, 64, 64)
    assert pickle.loads(pickle.dumps(DraftImage(64))).size == 64


def test_photo_crops_in_draft_mode_stay_close_to_full_crops_and_at_least_the_crop_size(photo):
    from kaggle_kit.imaterialist.stage2 import photo_crops

    boxes = [(100, 200, 900, 1400), (1500, 100, 1900, 500)]  # a big garment and a small one, PIL order

    full = photo_crops(photo / "big.jpg", boxes, None)
    draft = photo_crops(photo / "big.jpg", boxes, 64)

    assert [c.size for c in full] == [(800, 1200), (400, 400)]
    assert all(min(c.size) >= 64 for c in draft)
    assert draft[0].size[0] < 800  # decoded at a reduced scale
    for a, b in zip(full, draft, strict=True):
        diff = np.abs(np.asarray(a.resize((64, 64), Image.BILINEAR), dtype=float)
                      - np.asarray(b.resize((64, 64), Image.BILINEAR), dtype=float))  # fmt: skip
        assert diff.mean() < 4.0
