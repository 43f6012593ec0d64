"""Issue 11, items 4 and 8: which local files article data may make us read, and one bad
article (a NUL byte in an image path) never aborting a whole compose.

Real files, a real HTTP server on 127.0.0.1 (allowed explicitly), the real compose and CLI.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from newsletter.articles import load_sources
from newsletter.articles.localfiles import local_image_path
from newsletter.compose import ComposeOptions, compose
from newsletter.config import Config
from newsletter.errors import SourceError

FIXTURES = Path(__file__).parent / "fixtures"
SEA = FIXTURES / "compose" / "images" / "sea.jpg"
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def md(title: str, image: str | None = None, body: str = "Words.") -> str:
    front = f'---\ntitle: {title}\ndate: 2026-11-20\nurl: https://example.org/{title.lower().replace(" ", "-")}\n'
    if image is not None:
        front += f"image: {image}\n"
    return front + f"---\n\n{body}\n"


@pytest.fixture
def private_png(tmp_path) -> Path:
    """A secret picture outside every source folder."""
    secret = tmp_path / "private" / "private.png"
    secret.parent.mkdir()
    shutil.copy(FIXTURES / "compose" / "images" / "dot.png", secret)
    return secret


@pytest.fixture
def md_server():
    files: dict[str, bytes] = {}

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/markdown; charset=utf-8")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    httpd.files = files
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


LOOPBACK = Config(site_url="https://news.example.org", allow_private_fetch=True)


# -- item 4: a remote source never names a local file ---------------------------------------------

@pytest.mark.parametrize("make_ref", [
    lambda p: "x:/" + "../" * 40 + str(p).lstrip("/"),  # the one-letter "scheme" read as a Windows drive
    lambda p: "C:/" + "../" * 40 + str(p).lstrip("/"),
    lambda p: "file://" + str(p),
    lambda p: str(p),
], ids=["x-drive", "C-drive", "file-url", "absolute"])
def test_a_remote_markdown_file_cannot_copy_a_local_file_into_the_digest(md_server, private_png, tmp_path, make_ref):
    md_server.files["/post.md"] = md("Remote post", f'"{make_ref(private_png)}"').encode()
    md_server.files["/ok.md"] = md("Fine post").encode()
    sources = [md_server.url + "/post.md", md_server.url + "/ok.md"]
    d = compose(sources, LOOPBACK, ComposeOptions(now=NOW))
    assert not d.assets and not d.images  # nothing local was read
    assert all(a.image is None or a.image.url.startswith(md_server.url) for a in d.articles)
    d2 = compose(sources, LOOPBACK, ComposeOptions(now=NOW, embed_images=True))
    assert not d2.images and not d2.assets
    if "Remote post" not in [a.title for a in d.articles]:  # a path with a scheme: the article is refused
        assert any("post.md" in w and "cannot name a local file" in w for w in d.warnings)
        with pytest.raises(SourceError, match="cannot name a local file"):
            compose([md_server.url + "/post.md"], LOOPBACK, ComposeOptions(now=NOW))
    else:  # "/tmp/..." is a path on the Markdown file's own server
        assert make_ref(private_png).startswith("/")


def test_the_x_drive_attack_through_the_cli_writes_no_asset(md_server, private_png, tmp_path):
    md_server.files["/post.md"] = md("Remote post", '"x:/' + "../" * 40 + str(private_png).lstrip("/") + '"').encode()
    md_server.files["/ok.md"] = md("Fine post").encode()
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "newsletter", "compose", md_server.url + "/post.md", md_server.url + "/ok.md",
                        "--out", str(out)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "NEWSLETTER_ALLOW_PRIVATE_FETCH": "true"}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (out / "assets").exists() or not any((out / "assets").iterdir())
    assert "cannot name a local file" in r.stderr


def test_relative_images_of_a_remote_markdown_file_stay_on_its_server(md_server):
    md_server.files["/posts/a.md"] = md("Relative", "../img/a.jpg").encode()
    [a] = load_sources([md_server.url + "/posts/a.md"], LOOPBACK).articles
    assert a.image.url == md_server.url + "/img/a.jpg"


def test_a_remote_feed_naming_a_local_image_gets_no_image(md_server, private_png):
    feed = f"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>https://example.org/</link>
    <item><title>One</title><link>https://example.org/1</link><enclosure url="file://{private_png}" type="image/png" length="1"/></item>
    <item><title>Two</title><link>https://example.org/2</link></item></channel></rss>"""
    md_server.files["/feed.xml"] = feed.encode()
    d = compose([md_server.url + "/feed.xml"], LOOPBACK, ComposeOptions(now=NOW))
    assert not d.assets and not d.images


# -- item 4: a local source stays inside its own folder tree ---------------------------------------

def test_a_local_markdown_file_may_use_images_inside_its_folder_tree(tmp_path):
    src = tmp_path / "content"
    (src / "posts").mkdir(parents=True)
    (src / "images").mkdir()
    shutil.copy(SEA, src / "images" / "sea.jpg")
    (src / "posts" / "a.md").write_text(md("Inside", "../images/sea.jpg"))
    [a] = load_sources([str(src)], Config()).articles
    assert a.image.url == str((src / "images" / "sea.jpg").resolve())
    d = compose([str(src)], Config(), ComposeOptions(now=NOW))
    assert len(d.assets) == 1


@pytest.mark.parametrize("ref", ["../../private/private.png", "{secret}", "~/../../../../../../{secret_rel}"])
def test_a_local_markdown_file_cannot_reach_outside_its_source(tmp_path, private_png, ref):
    src = tmp_path / "content"
    src.mkdir()
    (src / "a.md").write_text(md("Outside", ref.format(secret=private_png, secret_rel=str(private_png).lstrip("/"))))
    result = load_sources([str(src)], Config())
    [a] = result.articles
    assert a.image is None
    assert any("outside the source's folder" in w and "local_image_dirs" in w for w in result.warnings)
    d = compose([str(src)], Config(), ComposeOptions(now=NOW))
    assert not d.assets


def test_a_symlink_out_of_the_source_is_followed_and_refused(tmp_path, private_png):
    src = tmp_path / "content"
    src.mkdir()
    (src / "pic.png").symlink_to(private_png)
    (src / "a.md").write_text(md("Link", "pic.png"))
    [a] = load_sources([str(src)], Config()).articles
    assert a.image is None


def test_local_image_dirs_allows_a_named_folder(tmp_path, private_png):
    src = tmp_path / "content"
    src.mkdir()
    (src / "a.md").write_text(md("Shared", str(private_png)))
    [a] = load_sources([str(src)], Config(local_image_dirs=[str(private_png.parent)])).articles
    assert a.image.url == str(private_png.resolve())


def test_a_local_feed_naming_an_outside_file_gets_no_image(tmp_path, private_png):
    src = tmp_path / "feeds"
    src.mkdir()
    (src / "feed.xml").write_text(f"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <link>https://example.org/</link><item><title>One</title><link>https://example.org/1</link>
    <enclosure url="file://{private_png}" type="image/png" length="1"/></item>
    <item><title>Two</title><link>https://example.org/2</link></item></channel></rss>""")
    result = load_sources([str(src / "feed.xml")], Config())
    assert all(a.image is None for a in result.articles)
    assert not compose([str(src / "feed.xml")], Config(), ComposeOptions(now=NOW)).assets


def test_unresolvable_image_paths_are_one_line_problems(tmp_path):
    src = tmp_path / "content"
    src.mkdir()
    (src / "loop1").symlink_to(src / "loop2")
    (src / "loop2").symlink_to(src / "loop1")
    (src / "user.md").write_text(md("User", "~nosuchuser-i11/x.png"))
    (src / "loop.md").write_text(md("Loop", "loop1/x.png"))
    (src / "ok.md").write_text(md("Fine"))
    result = load_sources([str(src)], Config())
    assert [a.title for a in result.articles] == ["Fine"]
    assert not [w for w in result.warnings if "unexpected failure" in w], result.warnings
    assert any("user.md" in w and "cannot be resolved" in w for w in result.warnings)
    assert any("loop.md" in w and "cannot be resolved" in w for w in result.warnings)


def test_local_image_path_rules(tmp_path):
    root = tmp_path.resolve()
    art = str(root / "a.md")
    assert local_image_path("pic.png", art, [root]) == root / "pic.png"
    with pytest.raises(ValueError, match="remote source"):
        local_image_path("pic.png", "https://example.org/a.md", [root])
    with pytest.raises(ValueError, match="remote source"):
        local_image_path("pic.png", art, [])
    with pytest.raises(ValueError, match="x: URL"):
        local_image_path("x:/../pic.png", art, [root])
    with pytest.raises(ValueError, match="another host"):
        local_image_path("file://server/share/pic.png", art, [root])
    with pytest.raises(ValueError, match="control character"):
        local_image_path("pic\x00.png", art, [root])
    with pytest.raises(ValueError, match="outside"):
        local_image_path("../pic.png", art, [root])


# -- item 8: a NUL byte in an image path skips one article, not the compose -------------------------

@pytest.mark.parametrize("bad", [
    "---\ntitle: Nul\ndate: 2026-11-20\nurl: https://example.org/nul\n---\n\n![pic](photo%00.png)\n",
    '---\ntitle: Nul\ndate: 2026-11-20\nurl: https://example.org/nul\nimage: "a\\0b"\n---\n\nText.\n',
    '---\ntitle: Nul\ndate: 2026-11-20\nurl: https://example.org/nul\nimage: "a\\nb.png"\n---\n\nText.\n',
], ids=["markdown-image-%00", "yaml-\\0", "yaml-newline"])
def test_a_nul_byte_in_an_image_path_skips_that_article_with_a_warning(tmp_path, bad):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.md").write_text(bad)
    (src / "good.md").write_text(md("Good"))
    d = compose([str(src)], Config(), ComposeOptions(now=NOW))
    assert [a.title for a in d.articles] == ["Good"]
    assert any("bad.md" in w and "control character" in w for w in d.warnings)
    with pytest.raises(SourceError, match=r"bad\.md: image .*control character"):
        compose([str(src)], Config(), ComposeOptions(now=NOW, strict=True))


def test_the_cli_writes_the_digest_despite_a_nul_article_and_strict_makes_it_an_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.md").write_text('---\ntitle: Nul\ndate: 2026-11-20\nurl: https://example.org/nul\nimage: "a\\0b"\n---\n\nx\n')
    (src / "good.md").write_text(md("Good"))
    r = subprocess.run([sys.executable, "-m", "newsletter", "compose", str(src), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "digest.html").exists() and "unexpected" not in r.stderr and "bad.md" in r.stderr
    s = subprocess.run([sys.executable, "-m", "newsletter", "compose", str(src), "--out", str(tmp_path / "s"), "--strict"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert s.returncode == 1 and "Traceback" not in s.stderr and "unexpected" not in s.stderr
    assert len(s.stderr.strip().splitlines()) == 1 and "bad.md" in s.stderr


def test_compose_survives_an_article_built_with_a_nul_image_path():
    """An Article that did not come through load_sources (a plugin, the web preview) is still safe."""
    from newsletter.articles.model import Article, Image
    from newsletter.compose import render

    a = Article(title="Nul", url="https://example.org/n", published=NOW, image=Image(url="photo\x00.png"), source="/tmp/x.md")
    d = render([a], Config(), ComposeOptions(now=NOW))
    assert any("photo" in w and "card shown without it" in w for w in d.warnings) and not d.assets
    remote = Article(title="R", url="https://example.org/r", published=NOW, image=Image(url="/etc/hostname"),
                     source="https://example.org/feed.xml")
    d = render([remote], Config(), ComposeOptions(now=NOW))
    assert any("local path in a remote article" in w for w in d.warnings) and not d.assets
