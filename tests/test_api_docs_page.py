"""The API's documentation page works offline: Swagger UI from the app's own static files, under
the app's Content-Security-Policy, in Debian's chromium with every other host blocked; and the
favicon is served."""

from __future__ import annotations

import pytest

from fixtures.web.harness import LiveServer, browser  # noqa: F401  (fixtures)

from newsletter.config import Config
from newsletter.web import create_app

pytestmark = pytest.mark.browser


def test_the_api_docs_page_renders_from_our_own_files_with_no_other_host(tmp_path, browser):  # noqa: F811
    from newsletter.store.db import get_engine, upgrade

    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    config = Config(database_url=url, secret_key="test-secret-key-0123456789")
    context = browser.new_context()
    context.set_default_timeout(20_000)
    page = context.new_page()
    elsewhere: list[str] = []
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        with LiveServer(create_app(config, engine)) as live:
            def local_only(route):
                if route.request.url.startswith(live.url) or route.request.url.startswith("data:"):
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            page.route("**/*", local_only)
            response = page.goto(live.url + "/api/docs")
            assert response is not None and response.status == 200
            assert "script-src 'self'" in response.headers["content-security-policy"]
            page.get_by_text("/api/stats").first.wait_for()  # the operations, read from /api/openapi.json
            assert page.locator(".swagger-ui .info .title").inner_text().startswith(config.newsletter_name)
            assert elsewhere == [] and refused == []
            icon = page.request.get(live.url + "/favicon.ico")
            assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
            page.goto(live.url + "/admin/")
            assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
            assert page.request.get(live.url + "/static/favicon.svg").status == 200
    finally:
        context.close()
        engine.dispose()
