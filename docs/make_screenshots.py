"""Take the README's screenshots of the preview page (run by hand: `.venv/bin/python docs/make_screenshots.py`).

Serves the web app on 127.0.0.1 with the sample articles in ``articles/`` and drives Debian's
chromium through Playwright; writes docs/preview-desktop.png, docs/preview-mobile.png and
docs/preview-dark.png. Requests to other hosts are blocked, so nothing leaves this machine: the
sample's YouTube thumbnail cannot load, and the preview rightly lists it as a broken image.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from fixtures.web.harness import CHROMIUM, CHROMIUM_ARGS, LiveServer  # noqa: E402

from newsletter.config import Config  # noqa: E402
from newsletter.store.db import upgrade  # noqa: E402
from newsletter.web import create_app  # noqa: E402


def main() -> None:
    from playwright.sync_api import sync_playwright

    out = REPO / "docs"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/screens.db"
        upgrade(url)
        config = Config(database_url=url, sources=[str(REPO / "articles")], secret_key="screenshots-only-key-0000")
        with LiveServer(create_app(config)) as srv, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

            def local_only(route):
                if route.request.url.startswith(srv.url):
                    route.continue_()
                else:
                    route.abort()

            page = browser.new_page(viewport={"width": 1200, "height": 1150}, device_scale_factor=1)
            page.route("**/*", local_only)
            page.goto(srv.url + "/admin/preview")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / "preview-desktop.png"))
            page.goto(srv.url + "/admin/preview?view=dark")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / "preview-dark.png"))
            # The email alone as a 375 px phone shows it.
            frame_url = page.locator("iframe[name=dark-mobile]").get_attribute("src").replace("variant=dark", "variant=html")
            phone = browser.new_page(viewport={"width": 375, "height": 1200}, device_scale_factor=1)
            phone.route("**/*", local_only)
            phone.goto(srv.url + frame_url)
            phone.wait_for_load_state("networkidle")
            phone.screenshot(path=str(out / "preview-mobile.png"))
            browser.close()
    for name in ("preview-desktop.png", "preview-mobile.png", "preview-dark.png"):
        print(out / name)


if __name__ == "__main__":
    main()
