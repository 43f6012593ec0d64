"""A reader's whole journey in French, in Debian's chromium against uvicorn on 127.0.0.1 and a
real SMTP server: subscribe, confirm from the emailed link, get the list's welcome, open the
preference centre from a campaign's footer, leave one list, pause mail, be skipped by the next
campaign; the Arabic subscribe page lays out right to left. Every public page visited is checked
with axe-core (WCAG 2 A/AA: no serious or critical violation)."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from fixtures.web.harness import ARTICLES, LiveServer, axe_problems, browser, free_port  # noqa: F401  (fixtures; axe_problems re-exported)
from smtp_server import SMTPTestServer

from newsletter.config import Config, SMTPServer
from newsletter.web import create_app

pytestmark = pytest.mark.browser
WELCOME = """<mjml>
  <mj-head><mj-title>Bienvenue dans {{ list_name }}</mj-title></mj-head>
  <mj-body><mj-section><mj-column>
    <mj-text>Bonjour *|NAME:ami|*, merci de nous lire. <a href="{{ unsubscribe_url }}">Se désabonner</a></mj-text>
  </mj-column></mj-section>
  {% include "footer.mjml" %}
  </mj-body>
</mjml>
"""


def test_a_french_reader_from_signup_to_a_paused_subscription(tmp_path, browser):  # noqa: F811
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.dispatch.sender import send_campaign
    from newsletter.dispatch.welcome import send_due_welcomes
    from newsletter.store import lists, subscribers
    from newsletter.store import welcome as welcome_store
    from newsletter.store.campaign_models import Delivery
    from newsletter.store.db import get_engine, upgrade
    from dispatch_helpers import FakeDigest
    from newsletter.compose import ComposeOptions, compose

    shots = tmp_path / "screenshots"
    shots.mkdir()
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    port = free_port()
    with SMTPTestServer() as smtp:
        config = Config(database_url=url, secret_key="test-secret-key-0123456789", base_url=f"http://127.0.0.1:{port}",
                        from_address="L'Hebdo <news@example.org>", smtp={"test": SMTPServer(name="test", url=smtp.url)},
                        allow_local_links=True)
        lists.create_list(engine, "hebdo", "L’Hebdo", opt_in="double", language="fr")
        lists.create_list(engine, "breves", "Brèves", opt_in="single", language="fr")
        lists.create_list(engine, "nashra", "النشرة", opt_in="single", language="ar")
        (tmp_path / "welcome.mjml").write_text(WELCOME, encoding="utf-8")
        welcome_store.set_welcome(engine, "hebdo", template=str(tmp_path / "welcome.mjml"),
                                  now=datetime.now(timezone.utc) - timedelta(days=1))
        # bypass_csp: the page's script-src 'self' would refuse the injected axe-core, not the app's own scripts
        context = browser.new_context(locale="fr-FR", viewport={"width": 390, "height": 844}, bypass_csp=True)
        context.set_default_timeout(20_000)
        page = context.new_page()
        try:
            with LiveServer(create_app(config, engine), port=port) as live:
                mailer = live.server.config.app.state.web.mailer
                # 1. Subscribe (double opt-in) in French.
                page.goto(live.url + "/subscribe/hebdo")
                assert page.locator("html").get_attribute("lang") == "fr"
                assert axe_problems(page) == []
                page.locator("input[name=email]").fill("lea@example.fr")
                page.locator("input[name=name]").fill("Léa")
                page.locator("form button[type=submit]").click()
                assert page.locator("h1").inner_text() == "Consultez votre boîte de réception"
                assert mailer.wait_ran(1, 15)
                assert smtp.wait_for(1, timeout=15), "the confirmation email did not arrive"
                confirm = smtp.received()[0].message()
                assert "Merci de confirmer" in str(confirm["Subject"]) or "confirm" in str(confirm["Subject"]).lower()
                text = confirm.get_body(("plain",)).get_content()
                link = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", text).group(0)
                # 2. Confirm from the link.
                page.goto(link)
                assert axe_problems(page) == []
                page.locator("form button[type=submit]").click()
                assert subscribers.get_subscriber(engine, "lea@example.fr").lists == {"hebdo": "active"}
                page.screenshot(path=str(shots / "confirmed-fr-390.png"), full_page=True)
                # ... and join a second list: she is known, so nothing changes until she confirms.
                page.goto(live.url + "/subscribe/breves")
                page.locator("input[name=email]").fill("lea@example.fr")
                page.locator("form button[type=submit]").click()
                assert mailer.wait_ran(2, 15)
                assert subscribers.get_subscriber(engine, "lea@example.fr").lists == {"hebdo": "active"}
                assert smtp.wait_for(2, timeout=15), "the second confirmation did not arrive"
                text = smtp.received()[1].message().get_body(("plain",)).get_content()
                page.goto(re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", text).group(0))
                page.locator("form button[type=submit]").click()
                assert subscribers.get_subscriber(engine, "lea@example.fr").lists == {"hebdo": "active", "breves": "active"}
                # 3. The worker sends the welcome (once).
                send_due_welcomes(engine, config)
                send_due_welcomes(engine, config)
                assert smtp.wait_for(3, timeout=15)
                welcomes = [m for m in smtp.received() if "Bienvenue" in str(m.message()["Subject"])]
                welcome_html = welcomes[0].message().get_body(("html",)).get_content()
                assert len(welcomes) == 1 and "Bonjour Léa" in welcome_html
                assert "Gérer votre abonnement" in welcome_html  # the digest's footer, in the list's language
                # 4. A campaign; its footer leads to the preference centre.
                digest = compose([str(ARTICLES)], config, ComposeOptions(language="fr"))
                first = create_campaign(engine, digest, ["hebdo", "breves"], config)
                send_campaign(engine, first.id, config)
                copy = [m for m in smtp.received() if m.rcpt_tos == ["lea@example.fr"]][-1].message()
                prefs = re.search(r'href="(http://127\.0\.0\.1:\d+/preferences/[^"]+)"[^>]*>\s*Gérer votre abonnement',
                                  copy.get_body(("html",)).get_content()).group(1)
                page.goto(prefs)
                assert page.locator("html").get_attribute("lang") in ("fr", "en")
                assert axe_problems(page) == []
                breves = lists.get_list(engine, "breves").id
                page.locator(f"form:has(input[name=list][value='{breves}']) button[value=leave]").click()
                page.locator("input[name=months][value='1']").check()
                page.locator("button[value=pause]").click()
                assert page.locator("button[value=resume]").is_visible()
                assert axe_problems(page) == []
                page.screenshot(path=str(shots / "preferences-390.png"), full_page=True)
                assert subscribers.get_subscriber(engine, "lea@example.fr").lists == {"hebdo": "active", "breves": "unsubscribed"}
                # 5. Paused: the next campaign's ledger skips her.
                subscribers.add_subscriber(engine, "autre@example.fr", list_slug="breves")
                second = create_campaign(engine, FakeDigest(), ["hebdo", "breves"], config)
                send_campaign(engine, second.id, config)
                with engine.connect() as conn:
                    to = conn.execute(select(Delivery.__table__.c.email).where(
                        Delivery.__table__.c.campaign_id == second.id)).scalars().all()
                assert to == ["autre@example.fr"]
                # The other public pages she can reach, each accessible: her web version, the
                # unsubscribe page, the archive and the privacy note.
                html_copy = copy.get_body(("html",)).get_content()
                for pattern in (r'href="(http://127\.0\.0\.1:\d+/view/[^"]+)"',
                                r'href="(http://127\.0\.0\.1:\d+/unsubscribe/[^"]+)"'):
                    page.goto(re.search(pattern, html_copy).group(1))
                    assert axe_problems(page) == [], pattern
                for path in ("/archive/", "/privacy"):
                    page.goto(live.url + path)
                    assert axe_problems(page) == [], path
                # 6. An Arabic list's page: right to left, and accessible.
                page.goto(live.url + "/subscribe/nashra")
                assert page.locator("html").get_attribute("dir") == "rtl"
                assert page.evaluate("getComputedStyle(document.querySelector('h1')).direction") == "rtl"
                assert page.evaluate("document.documentElement.scrollWidth") <= 390
                assert axe_problems(page) == []
                page.screenshot(path=str(shots / "subscribe-ar-390.png"), full_page=True)
        finally:
            context.close()
    engine.dispose()
    assert os.listdir(shots)


def test_the_accessibility_check_can_fail(browser):  # noqa: F811
    """The checker itself: an image without alt text and an unlabelled field are reported."""
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.set_content('<html lang="en"><title>t</title><main><img src="data:,"><input type="text"></main></html>')
        found = axe_problems(page)
    finally:
        context.close()
    assert any(p.startswith("image-alt") for p in found) and any(p.startswith("label") for p in found), found
