import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from kaggle_kit.vision.clean import clean_images, inspect_image


def _png_with_huge_header(path):
    """A tiny valid PNG whose IHDR claims 40000 x 40000 pixels (CRC fixed): a decompression bomb's header."""
    Image.new("RGB", (4, 4)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 40000, 40000)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "train"
    (folder / "sub").mkdir(parents=True)
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    rgb.save(folder / "good.jpg", quality=90)
    rgb.save(folder / "sub/good.png")
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes((folder / "good.jpg").read_bytes()[:300])
    for fmt, name in (
        ("PNG", "png_inside.jpg"),
        ("GIF", "gif_inside.jpg"),
        ("BMP", "bmp_inside.jpg"),
        ("TIFF", "tiff_inside.jpg"),
    ):
        rgb.save(folder / name, format=fmt)
    rgb.convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    rgb.convert("P").save(folder / "palette.png")
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).save(folder / "sixteen.png")
    rgb.convert("RGBA").save(folder / "sub/alpha.png")
    _png_with_huge_header(folder / "bomb.png")
    (folder / "notes.txt").write_text("not an image: ignored")
    return folder


EXPECTED = {
    "zero.jpg": "zero bytes", "truncated.jpg": "undecodable", "png_inside.jpg": "wrong format",
    "gif_inside.jpg": "wrong format", "bmp_inside.jpg": "wrong format", "tiff_inside.jpg": "wrong format",
    "cmyk.jpg": "cmyk", "palette.png": "palette", "sixteen.png": "16-bit", "sub/alpha.png": "alpha",
    "bomb.png": "too large",
}  # fmt: skip


def test_every_kind_of_problem_is_found(corpus):
    report = clean_images(corpus, dry_run=True, workers=2, progress=False)

    assert {f["path"]: f["problem"] for f in report.files} == EXPECTED
    assert report.checked == 13
    assert report.counts["wrong format"] == 4


def test_convertible_images_become_rgb_in_place_and_the_rest_is_quarantined(corpus, tmp_path):
    report = clean_images(corpus, workers=2, progress=False)

    for name in ("png_inside.jpg", "gif_inside.jpg", "bmp_inside.jpg", "tiff_inside.jpg", "cmyk.jpg"):
        with Image.open(corpus / name) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB"), name
    for name in ("palette.png", "sixteen.png", "sub/alpha.png"):
        with Image.open(corpus / name) as image:
            assert (image.format, image.mode) == ("PNG", "RGB"), name
    quarantine = tmp_path / "train-quarantine"
    assert sorted(p.name for p in quarantine.rglob("*") if p.is_file()) == ["bomb.png", "truncated.jpg", "zero.jpg"]
    assert not (corpus / "zero.jpg").exists()
    saved = json.loads((tmp_path / "train-clean-report.json").read_text())
    assert saved["counts"] == report.counts
    assert clean_images(corpus, dry_run=True, progress=False).files == []  # clean now


def test_a_dry_run_changes_nothing(corpus):
    before = {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file()}

    clean_images(corpus, dry_run=True, progress=False)

    assert {p: p.read_bytes() for p in corpus.rglob("*") if p.is_file()} == before


def test_nothing_is_deleted_without_delete(corpus, tmp_path):
    clean_images(corpus, progress=False)
    kept = sum(1 for p in (tmp_path / "train-quarantine").rglob("*") if p.is_file())

    assert kept == 3


def test_delete_removes_unusable_files(corpus, tmp_path):
    clean_images(corpus, delete=True, progress=False)

    assert not (tmp_path / "train-quarantine").exists()
    assert not (corpus / "truncated.jpg").exists()


def test_transparent_pixels_become_white_not_black(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(path)

    clean_images(tmp_path, progress=False)

    with Image.open(path) as image:
        assert image.getpixel((0, 0)) == (255, 255, 255)


def test_inspect_image_passes_a_good_image(corpus):
    assert inspect_image(corpus / "good.jpg") == (None, "RGB")


def test_the_cli_dry_run_says_what_it_would_do_and_a_palette_gif_is_left_alone_run_after_run(corpus, tmp_path):
    import subprocess
    import sys

    Image.open(corpus / "good.jpg").convert("P").save(corpus / "anim.gif")  # a GIF is a palette by its format
    clean = [sys.executable, "-m", "kaggle_kit.cli", "clean", str(corpus)]

    dry = subprocess.run([*clean, "--dry-run"], capture_output=True, text=True)  # stdout is a pipe, not a terminal

    assert dry.returncode == 0, dry.stderr
    assert "palette.png: palette (P) -> would convert to RGB .png" in dry.stdout
    assert (
        f"zero.jpg: zero bytes (empty file) -> would move to {tmp_path / 'train-quarantine' / 'zero.jpg'}" in dry.stdout
    )
    assert "anim.gif" not in dry.stdout
    assert "█" not in dry.stdout + dry.stderr  # no progress bar in a log
    assert (corpus / "zero.jpg").exists()
    for _ in range(2):  # fixed, then nothing left to fix: the GIF is never "converted" again
        done = subprocess.run(clean, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert "anim.gif" not in done.stdout
    assert "converted" not in done.stdout
    with Image.open(corpus / "anim.gif") as gif:
        assert (gif.format, gif.mode) == ("GIF", "P")
