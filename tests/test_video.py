"""YouTube and Vimeo links in every form → Video(id, canonical URL, provider thumbnail)."""

from __future__ import annotations

import pytest

from newsletter.articles.video import find_videos, parse_video_url, split_trailing_video

ID = "r4ZMTqwdr9U"


@pytest.mark.parametrize(
    "url",
    [
        f"https://www.youtube.com/watch?v={ID}",
        f"https://youtube.com/watch?feature=share&v={ID}&list=PL123",
        f"http://m.youtube.com/watch?v={ID}",
        f"https://music.youtube.com/watch?v={ID}",
        f"https://youtu.be/{ID}",
        f"https://youtu.be/{ID}?si=abcdef",
        f"https://www.youtube.com/embed/{ID}?rel=0&autoplay=1",
        f"https://www.youtube-nocookie.com/embed/{ID}",
        f"https://www.youtube.com/shorts/{ID}",
        f"https://www.youtube.com/live/{ID}?feature=shared",
        f"https://www.youtube.com/v/{ID}?version=3",
        f"//www.youtube.com/embed/{ID}",
    ],
)
def test_every_youtube_url_form_gives_the_id_canonical_url_and_thumbnail(url):
    v = parse_video_url(url)
    assert (v.provider, v.id) == ("youtube", ID)
    assert v.url == f"https://www.youtube.com/watch?v={ID}"
    assert v.thumbnail_url == f"https://i.ytimg.com/vi/{ID}/hqdefault.jpg"


def test_youtube_start_time_is_kept():
    assert parse_video_url(f"https://youtu.be/{ID}?t=42").url == f"https://www.youtube.com/watch?v={ID}&t=42"
    assert parse_video_url(f"https://www.youtube.com/watch?v={ID}&t=1m30s").url.endswith("&t=1m30s")


@pytest.mark.parametrize(
    "url, vid",
    [
        ("https://vimeo.com/76979871", "76979871"),
        ("https://vimeo.com/channels/staff/76979871", "76979871"),
        ("https://vimeo.com/groups/shortfilms/videos/76979871", "76979871"),
        ("https://player.vimeo.com/video/76979871?h=abc&badge=0", "76979871"),
        ("https://vimeo.com/76979871/1a2b3c4d5e", "76979871"),
    ],
)
def test_vimeo_url_forms(url, vid):
    v = parse_video_url(url)
    assert (v.provider, v.id, v.url) == ("vimeo", vid, f"https://vimeo.com/{vid}")
    assert v.thumbnail_url is None  # Vimeo has no thumbnail URL derivable without its API


@pytest.mark.parametrize(
    "url",
    [
        "https://www.youtube.com/watch?v=short",
        "https://www.youtube.com/channel/UC123",
        "https://www.youtube.com/",
        "https://example.com/watch?v=r4ZMTqwdr9U",
        "https://notyoutube.com/watch?v=r4ZMTqwdr9U",
        "https://vimeo.com/about",
        "javascript:alert(1)",
        "",
        "not a url",
    ],
)
def test_other_links_are_not_videos(url):
    assert parse_video_url(url) is None


def test_find_videos_in_links_embeds_and_bare_urls_in_order_without_duplicates():
    html = (
        f'<p>Watch <a href="https://youtu.be/{ID}">this</a> or https://vimeo.com/123456.</p>'
        '<iframe src="https://www.youtube.com/embed/abcdefghijk"></iframe>'
        f'<p>Again: https://www.youtube.com/watch?v={ID}&amp;feature=x</p>'
    )
    assert [(v.provider, v.id) for v in find_videos(html)] == [("youtube", ID), ("vimeo", "123456"), ("youtube", "abcdefghijk")]


def test_seed_style_trailing_block_becomes_a_video_with_its_title():
    paragraphs = [
        "The involvement of these forces is more than a military action.",
        "BELOW IS A VIDEO FROM SKY NEWS",
        "NATO confirms North Korean troops are being sent to Russia to fight Ukraine",
        f"https://www.youtube.com/watch?v={ID}",
    ]
    rest, v = split_trailing_video(paragraphs)
    assert rest == paragraphs[:1]
    assert (v.id, v.title) == (ID, "NATO confirms North Korean troops are being sent to Russia to fight Ukraine")


def test_trailing_url_with_only_a_lead_in_uses_the_lead_in_as_title_unless_shouted():
    rest, v = split_trailing_video(["Body.", "Watch the interview:", f"https://youtu.be/{ID}"])
    assert rest == ["Body."] and v.title == "Watch the interview"
    rest, v = split_trailing_video(["Body.", "BELOW IS A VIDEO", f"https://youtu.be/{ID}"])
    assert rest == ["Body."] and v.title is None


def test_a_bare_trailing_video_url_after_a_sentence_keeps_the_sentence():
    rest, v = split_trailing_video(["The report ends here.", f"https://youtu.be/{ID}"])
    assert rest == ["The report ends here."] and v.id == ID and v.title is None


def test_no_trailing_video_leaves_paragraphs_alone():
    paragraphs = ["One.", "https://example.com/not-a-video"]
    assert split_trailing_video(paragraphs) == (paragraphs, None)
    assert split_trailing_video(["Text with https://youtu.be/r4ZMTqwdr9U inside."])[1] is None
