"""The double-opt-in confirmation email as templates (templates/confirm.mjml and confirm.txt):
rendered in the newsletter's style and language, replaced by a publisher's own template folder
(config template_dir, --template), refused in one line when broken (nobody mailed, nothing
recorded), safe for a hostile name; and `send-confirmations` refusing dead links as `send` does."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import astuple
from pathlib import Path

import pytest
from cli_runner import Result, run_main
from sqlalchemy import select

from newsletter.config import Config, SMTPServer
from newsletter.errors import RenderError
from newsletter.store import lists as store_lists
from newsletter.store import optin
from newsletter.store import subscribers as subs
from newsletter.store.db import get_engine, upgrade
from newsletter.store.lookups import subs_t

SECRET = "cli-test-secret-key-0123456789"
URL = "https://news.example.org/confirm/tok123"
HARBOUR = Config(newsletter_name="Harbour Notes", site_url="https://harbour.example.org", secret_key=SECRET,
                 from_address="Harbour Notes <news@harbour.example.org>")

OWN_MJML = """<mjml lang="{{ lang }}">
  <mj-head><mj-title>{{ subject }}</mj-title>{% include "styles.mjml" %}</mj-head>
  <mj-body>{% include "header.mjml" %}
    <mj-section><mj-column><mj-text>OWN-CONFIRM {{ name }} / {{ list_name }}</mj-text>
    <mj-button href="{{ confirm_url }}">{{ _("Confirm my subscription") }}</mj-button></mj-column></mj-section>
  </mj-body>
</mjml>
"""
OWN_HEADER = """<mj-section background-color="#0a6e4f"><mj-column><mj-text css-class="nl-masthead">OWN-HEADER {{ newsletter_name }}</mj-text></mj-column></mj-section>
"""


def message(**kw) -> optin.ConfirmationMessage:
    args = {"email": "ana@example.net", "list_name": "Weekly", "confirm_url": URL, "name": "Ana", **kw}
    return optin.confirmation_message(args.pop("config", HARBOUR), **args)


# --- rendering ----------------------------------------------------------------------------------


def test_the_shipped_confirmation_is_the_newsletters_style_with_a_text_part():
    m = message()
    assert m.subject == "Please confirm your subscription to Weekly"
    html = m.html
    # the digest's masthead (header.mjml) and palette, CSS inlined by premailer, a real button
    assert re.search(r'class="nl-masthead".*?Harbour Notes', html, re.S)
    assert 'href="https://harbour.example.org"' in html and "#14213d" in html and "#b4452c" in html
    assert re.search(rf'<a href="{re.escape(URL)}"[^>]*>\s*Confirm my subscription\s*</a>', html)
    assert "<b>ana@example.net</b>" in html and "<b>Weekly</b>" in html and "(the link works for 7 days)" in html
    assert "ignore this email: you will not be subscribed" in html
    # a confirmation has no date line, no story count, no unsubscribe merge tags
    assert "stories" not in html and "*|" not in html and "%(" not in html
    text = m.text
    assert text.startswith("Hello Ana,\n") and f"\n{URL}\n" in text and "within 7 days:" in text
    assert "ignore this email" in text and "Harbour Notes" in text and "<" not in text


def test_the_confirmation_speaks_the_lists_language_and_direction():
    fr = message(language="fr")
    assert fr.subject == "Merci de confirmer votre abonnement à Weekly"
    assert '<html lang="fr" dir="ltr"' in fr.html and "Confirmer mon abonnement" in fr.html
    assert "Bonjour Ana," in fr.text and "Confirmez en ouvrant ce lien dans les 7 jours\u00a0:" in fr.text
    ar = message(language="ar")
    assert '<html lang="ar" dir="rtl"' in ar.html and '<div dir="rtl">' in ar.html
    assert "تأكيد اشتراكي" in ar.html and "مرحبًا Ana" in ar.text and URL in ar.text


def test_a_hostile_name_is_text_never_markup_template_or_header(tmp_path):
    from newsletter.dispatch.oneoff import send_one

    name = '<script>alert(1)</script>{{ 7*7 }}{% include "x" %}*|EMAIL|*\r\nBcc: evil@example.com'
    m = message(name=name, list_name="{{ config }} <i>L</i>")
    assert "<script>" not in m.html and "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}" in m.html
    assert "49" not in m.html and "{% include" in m.html and "&lt;i&gt;L&lt;/i&gt;" in m.html
    assert "Bcc" in m.text and "\r" not in m.text  # the name on one line, as typed
    assert "{{ 7*7 }}" in m.text and "*|EMAIL|*" in m.text  # never evaluated; no merge tag is filled in a one-off send
    send_one(HARBOUR, "ana@example.net", m.subject, m.html, m.text, outbox=str(tmp_path / "box"))
    [eml] = list((tmp_path / "box").rglob("*.eml"))
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["To"] == "ana@example.net"
    assert "evil@example.com" not in str(parsed["To"]) + str(parsed["Subject"])


# --- a publisher's own templates ----------------------------------------------------------------


def test_a_template_folder_replaces_the_shipped_files_it_holds(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "confirm.txt").write_text("OWN-TEXT {{ name }}: {{ confirm_url }}\n")
    only_text = message(config=HARBOUR.replace(template_dir=str(own)))
    assert only_text.text == f"OWN-TEXT Ana: {URL}\n"
    assert "Confirm my subscription" in only_text.html and "Harbour Notes" in only_text.html  # the shipped HTML
    own = tmp_path / "own2"  # (a running process picks up changed files, a file added beside is seen after a restart)
    own.mkdir()
    (own / "confirm.mjml").write_text(OWN_MJML)
    (own / "header.mjml").write_text(OWN_HEADER)  # the publisher's style reaches the confirmation
    m = message(config=HARBOUR.replace(template_dir=str(own)), name="<b>Ana</b>")
    assert "OWN-CONFIRM &lt;b&gt;Ana&lt;/b&gt; / Weekly" in m.html and "OWN-HEADER Harbour Notes" in m.html
    assert "#0a6e4f" in m.html and URL in m.html
    # --template (the argument) wins over the config's folder
    assert "OWN-CONFIRM" not in message(config=HARBOUR.replace(template_dir=str(own)), template_dir=tmp_path).html


@pytest.mark.parametrize("file, source, says", [
    ("confirm.mjml", "<mjml><mj-body>{% if %}</mj-body></mjml>", r"confirm\.mjml:1: .*"),
    ("confirm.mjml", '<mjml><mj-body>{% include "nowhere.mjml" %}</mj-body></mjml>', r"confirm\.mjml: template 'nowhere.mjml' not found"),
    ("confirm.mjml", "<mjml><mj-body><mj-text>{{ name }}</mj-body></mjml>", r"confirm\.mjml: not valid MJML once rendered"),
    ("confirm.txt", "{{ unknown_variable }}", r"confirm\.txt.*'unknown_variable' is undefined"),
])
def test_a_broken_template_is_one_line_naming_the_file(tmp_path, file, source, says):
    own = tmp_path / "own"
    own.mkdir()
    (own / file).write_text(source)
    with pytest.raises(RenderError) as e:
        message(config=HARBOUR.replace(template_dir=str(own)))
    assert "\n" not in str(e.value) and str(own / file) in str(e.value) and re.search(says, str(e.value)), str(e.value)
    with pytest.raises(RenderError, match="not a directory"):
        message(template_dir=tmp_path / "missing")


# --- the commands: --template, a broken template records nothing --------------------------------


@pytest.fixture
def run(monkeypatch, capsys):
    """The real ``newsletter`` entry point in this process (as tests/test_store_cli.py)."""

    def invoke(cwd, *args, check=True):
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.delenv("NEWSLETTER_DATABASE_URL", raising=False)
        monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
        r = Result(*astuple(run_main(monkeypatch, capsys, [*args])))
        if check:
            assert r.returncode == 0, r.stderr
        return r

    return invoke


@pytest.fixture
def site(tmp_path, run):
    """A database with a double-opt-in list in Arabic, two unconfirmed readers, and no SMTP (the outbox)."""
    (tmp_path / "newsletter.toml").write_text('newsletter_name = "Harbour Notes"\nbase_url = "https://news.example.org"\n')
    run(tmp_path, "db", "upgrade")
    run(tmp_path, "lists", "create", "news", "--double-opt-in", "--language", "ar")
    engine = get_engine(f"sqlite:///{tmp_path / 'newsletter.db'}")
    for who in ("ana@example.net", "bo@example.net"):
        subs.add_subscriber(engine, who, list_slug="news", name=who[:2])
    yield tmp_path, engine
    engine.dispose()


def mailed(engine) -> list:
    with engine.connect() as conn:
        return sorted(v for (v,) in conn.execute(select(subs_t.c.confirmation_sent_at)) if v is not None)


def emls(where: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in sorted(where.rglob("*.eml"))]


def test_send_confirmations_with_template_and_a_broken_one_records_nothing(site, run):
    tmp_path, engine = site
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "confirm.mjml").write_text("<mjml><mj-body>\n{{ name | nosuchfilter }}\n</mj-body></mjml>")
    r = run(tmp_path, "subscribers", "send-confirmations", "--list", "news", "--template", str(broken), check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(broken / "confirm.mjml") in r.stderr and "nosuchfilter" in r.stderr
    assert mailed(engine) == [] and emls(tmp_path) == []
    # a broken template given by the config (template_dir) is refused the same way
    (tmp_path / "newsletter.toml").write_text(f'base_url = "https://news.example.org"\ntemplate_dir = "{broken}"\n')
    r = run(tmp_path, "subscribers", "send-confirmations", "--list", "news", check=False)
    assert r.returncode != 0 and str(broken / "confirm.mjml") in r.stderr and mailed(engine) == []

    own = tmp_path / "own"
    own.mkdir()
    (own / "confirm.mjml").write_text(OWN_MJML)
    r = run(tmp_path, "subscribers", "send-confirmations", "--list", "news", "--template", str(own))
    assert "confirmation emails sent: 2; failed: 0" in r.stdout and len(mailed(engine)) == 2
    for msg in emls(tmp_path / "outbox"):
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        assert "OWN-CONFIRM" in html and '<html lang="ar"' in html  # the list's language reaches the template
        assert re.search(r"https://news\.example\.org/confirm/\S+", text) and "مرحبًا" in text  # the shipped Arabic text part


def test_subscribers_add_with_a_broken_template_stores_nobody(site, run):
    tmp_path, engine = site
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "confirm.txt").write_text("{% for %}")
    r = run(tmp_path, "subscribers", "add", "cy@example.net", "--list", "news", "--template", str(broken), check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and str(broken / "confirm.txt") in r.stderr
    with pytest.raises(Exception, match="cy@example.net"):
        subs.get_subscriber(engine, "cy@example.net")
    r = run(tmp_path, "subscribers", "add", "cy@example.net", "--list", "news", "--name", "Cy")
    assert "confirmation email sent to cy@example.net" in r.stdout
    [msg] = [m for m in emls(tmp_path / "outbox") if m["To"] == "cy@example.net"]
    assert msg["Subject"].startswith("يرجى تأكيد اشتراكك") and 'dir="rtl"' in msg.get_body(("html",)).get_content()


# --- send-confirmations applies `send`'s base_url check -----------------------------------------


def test_send_confirmations_refuses_a_loopback_base_url_over_smtp_as_send_does(tmp_path, run, smtp_server):
    (tmp_path / "newsletter.toml").write_text(f'base_url = "http://127.0.0.1:8000"\n\n[smtp.t]\nurl = "{smtp_server.url}"\n')
    run(tmp_path, "db", "upgrade")
    run(tmp_path, "lists", "create", "news", "--double-opt-in")
    engine = get_engine(f"sqlite:///{tmp_path / 'newsletter.db'}")
    subs.add_subscriber(engine, "p@example.com", list_slug="news")
    r = run(tmp_path, "subscribers", "send-confirmations", "--list", "news", check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "base_url is http://127.0.0.1:8000: confirmation links would not work for readers" in r.stderr
    assert "--allow-local-links" in r.stderr
    assert smtp_server.received() == [] and mailed(engine) == []
    # as `send --allow-local-links`: a local test goes through, to the real SMTP server
    r = run(tmp_path, "subscribers", "send-confirmations", "--list", "news", "--allow-local-links")
    assert "sent: 1; failed: 0" in r.stdout and len(mailed(engine)) == 1
    [got] = smtp_server.received()
    assert "http://127.0.0.1:8000/confirm/" in got.message().get_body(("plain",)).get_content()
    engine.dispose()


def test_the_admins_bulk_confirm_action_refuses_a_loopback_base_url(tmp_path):
    import re as _re

    from fastapi.testclient import TestClient

    from newsletter.web import create_app

    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    config = Config(database_url=url, secret_key=SECRET, base_url="http://127.0.0.1:8000",
                    smtp={"main": SMTPServer(name="main", url="smtp://127.0.0.1:9")})
    engine = get_engine(url)
    store_lists.create_list(engine, "news", "News", opt_in="double")
    sid = subs.add_subscriber(engine, "p@example.com", list_slug="news").subscriber_id
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000),
                    follow_redirects=False) as client:
        t = _re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/subscribers").text).group(1)
        r = client.post("/admin/subscribers/bulk", data={"csrf_token": t, "action": "confirm", "target": "news",
                                                         "scope": "selected", "id": [str(sid)], "confirm": "1"})
        assert r.status_code == 503  # a configuration problem, as the single send-confirmations action says
        assert "Nothing changed: base_url is http://127.0.0.1:8000: confirmation links would not work" in r.text
    assert mailed(engine) == []
    engine.dispose()


# --- the default welcome: a shipped MJML template too --------------------------------------------


def test_the_default_welcome_is_shipped_in_the_newsletters_style_and_replaceable(site, run):
    from newsletter.dispatch.welcome import render_list_steps
    from newsletter.store import welcome as wstore

    tmp_path, engine = site
    r = run(tmp_path, "lists", "welcome", "news", "--default")
    assert "welcome on, steps 0" in r.stdout
    assert "the default welcome" in run(tmp_path, "lists", "welcome", "news", "--status").stdout
    for args in (("--default", "--series", "0,3"), ("--default", "--template", str(tmp_path)), ("--default", "--off")):
        bad = run(tmp_path, "lists", "welcome", "news", *args, check=False)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, args
    [lst] = wstore.welcome_lists(engine)
    assert lst.template == "default" and lst.language == "ar"
    assert wstore.set_welcome(engine, "news", template="default")["template"] == "default"  # as --default, not ./default
    step = render_list_steps(lst, HARBOUR)[0]
    assert step.subject == "مرحبًا بك في news"  # translated, in the list's language
    assert re.search(r'class="nl-masthead".*?Harbour Notes', step.html, re.S) and '<html lang="ar" dir="rtl"' in step.html
    assert "*|UNSUBSCRIBE_URL|*" in step.html and "*|PREFERENCES_URL|*" in step.html  # the digest's footer, filled per reader
    assert "stories" not in step.html and "*|UNSUBSCRIBE_URL|*" in step.text and "/archive/" in step.text
    own = tmp_path / "own-welcome"
    own.mkdir()
    (own / "welcome.mjml").write_text('<mjml><mj-head><mj-title>Hi from {{ newsletter_name }}</mj-title></mj-head><mj-body>'
                                      '{% include "header.mjml" %}<mj-section><mj-column><mj-text>OWN-WELCOME {{ list_name }} '
                                      '<a href="{{ unsubscribe_url }}">x</a></mj-text></mj-column></mj-section></mj-body></mjml>')
    mine = render_list_steps(lst, HARBOUR.replace(template_dir=str(own)))[0]
    assert mine.subject == "Hi from Harbour Notes" and "OWN-WELCOME news" in mine.html and "Harbour Notes" in mine.html
    assert "OWN-WELCOME news" in mine.text  # no welcome.txt beside it: the text is made from the HTML


def test_the_signup_form_with_a_broken_template_logs_one_line_and_records_nothing(tmp_path, caplog):
    import logging

    from fastapi.testclient import TestClient

    from newsletter.web import create_app

    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "confirm.mjml").write_text("<mjml><mj-body>{% endif %}</mj-body></mjml>")
    config = Config(database_url=url, secret_key=SECRET, outbox=str(tmp_path / "outbox"), template_dir=str(broken))
    engine = get_engine(url)
    store_lists.create_list(engine, "news", "News", opt_in="double")
    caplog.set_level(logging.ERROR, logger="newsletter.web")
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000") as client:
        t = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/subscribe/news").text).group(1)
        assert client.post("/subscribe/news", data={"email": "ana@example.net", "csrf_token": t}).status_code == 200
        assert client.app.state.web.mailer.wait_idle(15), "the signup queue did not empty"
    [record] = [r for r in caplog.records if "confirmation email" in r.getMessage()]
    assert str(broken / "confirm.mjml") in record.getMessage() and "\n" not in record.getMessage()
    assert record.exc_info is None  # one line, no traceback
    assert mailed(engine) == [] and emls(tmp_path) == []
    engine.dispose()
