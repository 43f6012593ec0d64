"""The preview's checks and frame preparation (no server needed)."""

from __future__ import annotations

import os

from newsletter.web import preview as pv


def doc(html: str, text: str = "Unsubscribe: *|UNSUBSCRIBE_URL|*", **kw) -> pv.PreviewDoc:
    return pv.PreviewDoc(label="t", subject="S", preheader="P", html=html, text=text,
                         html_size=len(html.encode()), **kw)


def test_warnings_name_each_problem():
    d = doc('<img src="https://example.org/a.png"><img src="cid:gone"><img src="pics/b.png" alt="">'
            '<img src="" alt="x"><a href="https://example.org">no unsubscribe here</a>', text="plain")
    w = pv.check_html(d)
    assert "image a.png has no alt text" in w
    assert "image cid:gone has no alt text" in w and "image cid:gone refers to a missing inline part" in w
    assert "image b.png is a relative path that will not load in an email client" in w
    assert "image b.png has no alt text" not in w  # alt="" is a deliberate decorative image
    assert "an image has an empty src" in w
    assert "no unsubscribe link (*|UNSUBSCRIBE_URL|*) in the HTML" in w
    assert "no unsubscribe link (*|UNSUBSCRIBE_URL|*) in the plain-text part" in w


def test_a_clean_digest_has_no_warnings_and_size_is_checked():
    html = '<img src="cid:c1" alt="Cover"><img src="assets/t.jpg" alt="Thumb"><a href="*|UNSUBSCRIBE_URL|*">Unsubscribe</a>'
    d = doc(html, images={"c1": ("image/png", b"x")}, assets={"assets/t.jpg": ("image/jpeg", b"y")})
    assert pv.check_html(d) == []
    big = doc(html + "x" * 110_000, images={"c1": ("image/png", b"x")}, assets={"assets/t.jpg": ("image/jpeg", b"y")})
    assert [w for w in pv.check_html(big) if "Gmail clips" in w]


def test_frame_fills_sample_values_points_cid_images_at_the_server_and_forces_dark():
    html = ('<html><head><style>@media (prefers-color-scheme: dark) { body { background: #111 } }'
            '@media (prefers-color-scheme: light) { body { background: #fff } }</style></head>'
            '<body>Hi *|NAME:friend|*, <img src="cid:c1" alt="x"> <a href="*|UNSUBSCRIBE_URL|*">u</a></body></html>')
    d = doc(html, images={"c1": ("image/png", b"x")})
    light = pv.for_frame(d, "html", "/admin/preview/sources")
    assert "Hi Sam Reader" in light and 'src="/admin/preview/sources/cid/c1"' in light and "*|" not in light
    assert "prefers-color-scheme: dark" in light
    dark = pv.for_frame(d, "dark", "/admin/preview/sources")
    assert "prefers-color-scheme" not in dark and "min-width: 0px" in dark and "max-width: 0px" in dark
    assert '<meta name="color-scheme" content="dark">' in dark
    assert pv.has_dark_styles(html) and not pv.has_dark_styles("<p>plain</p>")


def test_fingerprint_changes_with_any_file(tmp_path):
    a = tmp_path / "a.md"
    a.write_text("one")
    os.utime(a, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = pv.fingerprint([tmp_path])
    assert pv.fingerprint([tmp_path]) == before
    a.write_text("two")  # same size: only the modification time tells
    os.utime(a, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_001))
    edited = pv.fingerprint([tmp_path])
    assert edited != before
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("two")
    assert pv.fingerprint([tmp_path]) != edited
    assert pv.fingerprint([tmp_path / "missing"]) != pv.fingerprint([tmp_path])
