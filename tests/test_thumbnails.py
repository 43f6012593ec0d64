"""Card images: local files are cropped to 16:9 at 2x, re-encoded and named by content hash;
remote ones keep their URL; broken ones cost the card its picture, never the digest."""

from __future__ import annotations

import io
import re
import shutil
from datetime import datetime, timezone

import lxml.html
import pytest
from PIL import Image as PILImage

from newsletter.articles.model import Article, Image
from newsletter.compose import ComposeOptions, render
from newsletter.compose.thumbnails import card_image, make_thumbnail
from newsletter.config import Config

NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)


def article_with(path, alt="A lighthouse") -> Article:
    return Article(title="Lighthouse", url="https://example.org/lighthouse", published=NOW, image=Image(url=str(path), alt=alt), source="/tmp/x.md")


def test_large_photo_is_cropped_to_16_9_at_2x_as_compact_jpeg(fixtures_dir):
    src = fixtures_dir / "compose/images/sea.jpg"  # 1600x1200 (4:3)
    t = make_thumbnail(src)
    im = PILImage.open(io.BytesIO(t.data))
    assert (im.format, im.size) == ("JPEG", (1152, 648))
    assert t.content_type == "image/jpeg"
    assert re.fullmatch(r"sea-[0-9a-f]{12}\.jpg", t.filename)
    # centred crop: the white tower in the middle of the source stays in the middle
    assert im.getpixel((576, 324))[0] > 230


def test_transparent_image_stays_png(fixtures_dir):
    t = make_thumbnail(fixtures_dir / "compose/images/dot.png")
    im = PILImage.open(io.BytesIO(t.data))
    assert im.format == "PNG" and im.mode == "RGBA"
    assert t.filename.endswith(".png")


def test_small_image_is_cropped_but_never_upscaled(fixtures_dir):
    t = make_thumbnail(fixtures_dir / "compose/images/small-wide.jpg")  # 300x100
    assert (t.width, t.height) == (178, 100)


def test_names_follow_content_so_a_changed_file_gets_a_new_name(tmp_path, fixtures_dir):
    p = tmp_path / "pic.jpg"
    shutil.copy(fixtures_dir / "compose/images/sea.jpg", p)
    first = make_thumbnail(p).filename
    assert make_thumbnail(p).filename == first
    PILImage.new("RGB", (800, 450), (200, 10, 10)).save(p)
    assert make_thumbnail(p).filename != first


def test_local_image_becomes_an_asset_under_assets_or_the_asset_base_url(fixtures_dir):
    a = article_with(fixtures_dir / "compose/images/sea.jpg")
    ref, asset, warning = card_image(a, a.image, alt="A lighthouse", embed=False, asset_base_url=None)
    assert warning is None and ref.src == f"assets/{asset.filename}" and (ref.width, ref.height) == (576, 324)
    ref, asset, _ = card_image(a, a.image, alt="A lighthouse", embed=False, asset_base_url="https://cdn.example.net/nl/")
    assert ref.src == f"https://cdn.example.net/nl/{asset.filename}" == asset.url


def test_embedded_image_is_referenced_by_cid(fixtures_dir):
    a = article_with(fixtures_dir / "compose/images/sea.jpg")
    ref, part, _ = card_image(a, a.image, alt="x", embed=True, asset_base_url=None)
    assert ref.src == f"cid:{part.cid}" and part.cid.endswith("@newsletter") and part.data[:2] == b"\xff\xd8"


def test_missing_and_broken_images_give_a_card_without_image_and_a_warning(fixtures_dir):
    missing = article_with(fixtures_dir / "compose/images/nope.jpg")
    broken = Article(title="Broken", url="https://example.org/b", published=NOW, image=Image(url=str(fixtures_dir / "compose/broken.jpg"), alt="b"))
    d = render([missing, broken], Config(), ComposeOptions(now=NOW))
    assert not lxml.html.fromstring(d.html).xpath("//img")
    assert len(d.warnings) == 2
    assert "nope.jpg not found; card shown without it" in d.warnings[0]
    assert "broken.jpg cannot be read" in d.warnings[1]
    assert "Lighthouse" in d.text and "Broken" in d.text


def test_shared_image_is_shipped_once(fixtures_dir):
    a = article_with(fixtures_dir / "compose/images/sea.jpg")
    b = Article(title="Again", url="https://example.org/again", published=NOW, image=Image(url=str(fixtures_dir / "compose/images/sea.jpg"), alt="x"))
    d = render([a, b], Config(), ComposeOptions(now=NOW))
    assert len(d.assets) == 1


def test_big_jpeg_is_decoded_at_reduced_scale_but_still_covers_the_card(tmp_path):
    p = tmp_path / "big.jpg"
    PILImage.new("RGB", (4800, 3600), (90, 120, 200)).save(p, quality=70)
    t = make_thumbnail(p)
    assert (t.width, t.height) == (1152, 648)


def test_oversized_image_is_refused_with_a_warning_not_decoded(tmp_path, monkeypatch):
    from newsletter.compose import thumbnails

    p = tmp_path / "huge.png"
    PILImage.new("RGB", (2000, 2000)).save(p)
    monkeypatch.setattr(thumbnails, "MAX_PIXELS", 1_000_000)
    a = article_with(p)
    ref, part, warning = card_image(a, a.image, alt="x", embed=False, asset_base_url=None)
    assert ref is None and part is None and "too large for a card image" in warning


@pytest.mark.parametrize(
    "name, mode, save, expected_type",
    [
        ("grey.jpg", "L", {}, "image/jpeg"),
        ("print.jpg", "CMYK", {}, "image/jpeg"),
        ("palette.png", "P", {"transparency": 0}, "image/png"),
        ("deep.png", "I;16", {}, "image/png"),  # flat images from PNG/GIF: PNG is the smaller encoding
        ("photo.webp", "RGB", {}, "image/jpeg"),
        ("frame.gif", "P", {}, "image/png"),
    ],
)
def test_any_common_image_mode_becomes_a_mail_safe_jpeg_or_png(tmp_path, name, mode, save, expected_type):
    p = tmp_path / name
    PILImage.new(mode, (800, 600)).save(p, **save)
    t = make_thumbnail(p)
    assert t.content_type == expected_type and (t.width, t.height) == (800, 450)
    assert PILImage.open(io.BytesIO(t.data)).format == expected_type.split("/")[1].upper()


def test_thumbnail_cache_is_bounded_and_drops_the_least_recently_used(tmp_path):
    from newsletter.compose.thumbnails import ThumbnailCache

    cache = ThumbnailCache(max_entries=3)
    paths, made = [], []
    for i in range(5):
        p = tmp_path / f"p{i}.png"
        PILImage.new("RGB", (64, 36), (i, i, i)).save(p)
        paths.append(p)
        made.append(make_thumbnail(p, cache=cache))
    assert len(cache) == 3
    assert make_thumbnail(paths[2], cache=cache) is made[2]  # kept: served from the cache, now the most recent
    assert make_thumbnail(paths[0], cache=cache) is not made[0]  # dropped: made again (p3 goes, p2 was used)
    assert make_thumbnail(paths[2], cache=cache) is made[2] and make_thumbnail(paths[4], cache=cache) is made[4]
    assert make_thumbnail(paths[3], cache=cache) is not made[3]
    assert len(cache) == 3


def test_a_small_png_drawing_stays_a_small_png_not_a_bigger_jpeg():
    from conftest import REPO

    src = REPO / "articles/images/garden-beds.png"  # 960x640 flat-colour drawing, 8.6 KB
    t = make_thumbnail(src)
    assert (t.width, t.height) == (960, 540)
    assert len(t.data) < src.stat().st_size  # the JPEG encoding was about 25 KB
    assert t.content_type == "image/png" and t.filename.endswith(".png")


def test_a_source_already_the_cards_size_and_shape_keeps_its_smaller_encoding(tmp_path):
    src = tmp_path / "exact.jpg"
    im = PILImage.new("RGB", (1152, 648))
    for x in range(0, 1152, 8):  # detail a re-encode at quality 78 cannot shrink much
        for y in range(0, 648, 8):
            im.putpixel((x, y), ((x * 7) % 256, (y * 13) % 256, (x + y) % 256))
    im.save(src, "JPEG", quality=40)
    t = make_thumbnail(src)
    assert (t.width, t.height) == (1152, 648)
    assert t.data == src.read_bytes()
    assert t.content_type == "image/jpeg"


def test_an_opaque_photo_png_still_becomes_a_jpeg_when_that_is_smaller(tmp_path):
    import os

    src = tmp_path / "photo.png"
    PILImage.frombytes("RGB", (1600, 900), os.urandom(1600 * 900 * 3)).save(src, "PNG")  # grain PNG cannot compress
    t = make_thumbnail(src)
    assert t.content_type == "image/jpeg" and (t.width, t.height) == (1152, 648)
