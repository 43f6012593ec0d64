"""Per-recipient messages: valid MIME, correct substitution and escaping, headers, line limits."""

from __future__ import annotations

import email
import email.policy
import html

import pytest
from hypothesis import given, settings, strategies as st

from newsletter.dispatch.personalize import (
    CampaignContent, InlineImage, MessageFactory, Recipient, qp_encode, render_preview,
)
from newsletter.errors import InvalidInput

LONG_HTML = (
    "<html><body>"
    + '<p style="color:#333">Héllo *|NAME:Friend|*, = signs, ünïcode and a long line.</p>' * 200
    + '<a href="*|UNSUBSCRIBE_URL|*">unsubscribe</a> <a href="%2A%7CWEB_VERSION_URL%7C%2A">web</a>'
    + " city=*|ATTR:city:Nowhere|* mail=*|EMAIL|* keep=*|FOO|*</body></html>"
)
TEXT = "Hello *|NAME|*\n\n.a line starting with a dot\nUnsubscribe: *|UNSUBSCRIBE_URL|*\n"


def factory(**kw) -> MessageFactory:
    content = CampaignContent(
        campaign_id=7, subject=kw.pop("subject", "Weekly — news"), from_address="Wéekly <news@example.org>",
        html=kw.pop("html", LONG_HTML), text=kw.pop("text", TEXT), lists={1: "weekly"},
        images=kw.pop("images", []), reply_to=kw.pop("reply_to", None), headers=kw.pop("headers", {}),
    )
    return MessageFactory(content, base_url="https://news.example.org/", newsletter_name="The Weekly",
                          unsubscribe_token=lambda s, lst: f"T{s}-{lst}", **kw)


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_substitution_and_escaping_in_html_but_not_text():
    r = Recipient(42, 1, "ana@example.com", 'Ana <b>"&', {"city": "Paris & <Co>"})
    m = parse(factory().build(r).data)
    got_html = m.get_body(("html",)).get_content()
    expected = (LONG_HTML.replace("*|NAME:Friend|*", html.escape('Ana <b>"&'))
                .replace("*|UNSUBSCRIBE_URL|*", "https://news.example.org/unsubscribe/T42-1")
                .replace("%2A%7CWEB_VERSION_URL%7C%2A", "https://news.example.org/archive/7")
                .replace("*|ATTR:city:Nowhere|*", "Paris &amp; &lt;Co&gt;")
                .replace("*|EMAIL|*", "ana@example.com"))
    assert got_html == expected
    assert "*|FOO|*" in got_html  # unknown tags stay as written
    text = m.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text == 'Hello Ana <b>"&\n\n.a line starting with a dot\nUnsubscribe: https://news.example.org/unsubscribe/T42-1\n'


def test_fallbacks_when_name_and_attribute_missing():
    m = parse(factory().build(Recipient(1, 1, "bo@example.com")).data)
    h = m.get_body(("html",)).get_content()
    assert "Héllo Friend," in h and "city=Nowhere" in h
    assert m.get_body(("plain",)).get_content().startswith("Hello \r\n")


def test_headers_list_unsubscribe_message_id_list_id():
    f = factory()
    m = parse(f.build(Recipient(42, 1, "ana@example.com", "Ana")).data)
    assert m["To"] == "Ana <ana@example.com>"
    assert m["From"] == "Wéekly <news@example.org>"
    assert m["Subject"] == "Weekly — news"
    assert m["List-Unsubscribe"] == (
        "<https://news.example.org/unsubscribe/T42-1>, <mailto:news@example.org?subject=unsubscribe%20T42-1>")
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["List-Id"] == "The Weekly <weekly.example.org>"
    assert "Precedence" not in m
    assert m["Message-ID"] == f.build(Recipient(42, 1, "ana@example.com")).message_id  # stable
    assert m["Message-ID"] != f.build(Recipient(43, 1, "bo@example.com")).message_id
    assert m["Date"] and m["MIME-Version"] == "1.0"
    assert "Precedence: bulk" in parse(factory(precedence_bulk=True).build(
        Recipient(1, 1, "a@example.com")).data).as_string().replace("\r\n", "\n")


def test_non_ascii_display_name_is_rfc2047_encoded():
    data = factory().build(Recipient(5, 1, "zoe@example.com", "Zoë Ørsted")).data
    raw_to = [ln for ln in data.split(b"\r\n") if ln.startswith(b"To:")][0]
    assert raw_to.isascii() and b"=?utf-8?" in raw_to
    assert parse(data)["To"].addresses[0].display_name == "Zoë Ørsted"


def test_structure_text_then_html_with_cid_images_related():
    img = InlineImage("logo@news", "logo.png", "image/png", b"\x89PNG\r\n" + bytes(range(256)) * 20)
    m = parse(factory(images=[img]).build(Recipient(1, 1, "a@example.com")).data)
    assert [p.get_content_type() for p in m.walk()] == [
        "multipart/alternative", "text/plain", "multipart/related", "text/html", "image/png"]
    png = [p for p in m.walk() if p.get_content_type() == "image/png"][0]
    assert png["Content-ID"] == "<logo@news>" and png.get_content() == img.data


def test_every_line_within_limits_and_no_bare_dot_lines():
    data = factory().build(Recipient(1, 1, "a@example.com", "x" * 300, {"city": "y" * 500})).data
    lines = data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 76
    assert not any(line.startswith(b".") for line in lines)
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_subject_merge_tags_personalized():
    m = parse(factory(subject="Hi *|NAME:reader|*, your digest").build(Recipient(1, 1, "a@example.com", "Ana")).data)
    assert m["Subject"] == "Hi Ana, your digest"


@pytest.mark.parametrize("field", ["subject", "reply_to", "headers"])
def test_header_injection_refused(field):
    bad = {"subject": "Hi\r\nBcc: victim@example.net", "reply_to": "a@example.org\nBcc: x@example.net",
           "headers": {"X-Campaign": "1\r\nBcc: x@example.net"}}[field]
    with pytest.raises(InvalidInput):
        factory(**{field: bad}).build(Recipient(1, 1, "a@example.com"))


def test_recipient_name_with_newline_cannot_inject():
    data = factory().build(Recipient(1, 1, "a@example.com", "Ana\r\nBcc: x@example.net")).data
    m = parse(data)
    assert m["Bcc"] is None and m["To"].addresses[0].addr_spec == "a@example.com"


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=400))
def test_qp_roundtrip_any_text(s):
    import quopri

    raw = s.replace("\r", "").encode("utf-8")
    enc = qp_encode(raw)
    assert all(len(line) <= 76 for line in enc.split(b"\r\n"))
    assert quopri.decodestring(enc).replace(b"\r\n", b"\n") == raw


@settings(max_examples=40, deadline=None)
@given(name=st.text(max_size=60), city=st.text(max_size=60))
def test_any_values_survive_the_html_part(name, city):
    r = Recipient(9, 1, "a@example.com", name, {"city": city})
    h = parse(factory(html="<p>*|NAME|*|*|ATTR:city|*</p>", text="x").build(r).data).get_body(("html",)).get_content()
    clean = lambda v: html.escape(" ".join(v.split()) if ("\r" in v or "\n" in v) else v)  # noqa: E731
    assert h == f"<p>{clean(name)}|{clean(city)}</p>"


def test_render_preview():
    r = Recipient(1, 1, "a@example.com", "<Ana>")
    out = render_preview("Hi *|NAME|* *|UNSUBSCRIBE_URL|*", r, unsubscribe_url="U", web_version_url="W", html=True)
    assert out == "Hi &lt;Ana&gt; U"


def test_mailchimp_tags_are_filled_and_unknown_ones_are_found():
    from newsletter.dispatch.personalize import unknown_tags

    html = ('<html><body>Hi *|FNAME|* *|LNAME:Reader|*! <a href="*|UNSUB|*">leave</a> '
            '<a href="*|ARCHIVE|*">web</a> *|FNAME:friend|*</body></html>')
    f = factory(html=html, text="Hi *|FNAME|*\n")
    body = parse(f.build(Recipient(5, 1, "ana@example.com", "Ana Maria Lima")).data)
    got = body.get_body(("html",)).get_content()
    assert "Hi Ana Maria Lima!" in got and "/unsubscribe/T5-1" in got and "*|" not in got
    imported = parse(f.build(Recipient(6, 1, "bo@example.com", "", {"first_name": "Bo", "last_name": "Ek"})).data)
    assert "Hi Bo Ek!" in imported.get_body(("html",)).get_content()
    nameless = parse(f.build(Recipient(7, 1, "cy@example.com", "")).data).get_body(("html",)).get_content()
    assert "Hi  Reader!" in nameless and "friend" in nameless
    assert unknown_tags(html) == []
    assert unknown_tags("*|FOO|* and *|MC:SUBJECT|*", "*|FOO|* %2A%7CBAR%7C%2A") == ["%2A%7CBAR%7C%2A", "*|FOO|*", "*|MC:SUBJECT|*"]


def test_a_campaign_with_an_unknown_tag_is_refused_in_one_line(sqlite_url, tmp_path):
    from dispatch_helpers import FakeDigest, add_people, make_campaign, make_config, setup_db

    engine = setup_db(sqlite_url)
    config = make_config(sqlite_url, tmp_path)
    add_people(engine, "weekly", 1)
    with pytest.raises(InvalidInput, match=r"^unknown merge tag \*\|MC_PREVIEW_TEXT\|\*: it would be sent as written"):
        make_campaign(engine, config, digest=FakeDigest(text=FakeDigest.text + "*|MC_PREVIEW_TEXT|*"))
    with pytest.raises(InvalidInput, match=r"unknown merge tag \*\|COMPANY\|\*"):
        make_campaign(engine, config, subject="News for *|COMPANY|*")
    assert make_campaign(engine, config, subject="Hi *|FNAME|*").subject == "Hi *|FNAME|*"


def test_the_preview_warns_about_an_unknown_tag():
    from newsletter.web import preview as pv

    doc = pv.PreviewDoc(label="x", subject="Hi *|FIRSTNAME|*", preheader="", html='<a href="*|UNSUBSCRIBE_URL|*">u</a>',
                        text="*|UNSUBSCRIBE_URL|*")
    assert any("unknown merge tag *|FIRSTNAME|*" in w for w in pv.check_html(doc))
