"""Welcome emails: render a list's welcome step (Jinja2 → MJML → premailer, like the digest), fill
each reader's merge tags, and send what is due through the welcome ledger — the worker runs
``send_due_welcomes`` once per pass.

At most once, like the campaign ledger: a step's row (unique per reader, list and step) is
written as ``sending`` in its own transaction *before* the message is handed to the server, and
becomes ``sent`` after. A worker that dies in between leaves the row ``sending``, and a
``sending`` row is never sent again — a crash can lose one welcome, never send it twice. When
the server plainly did not take the message (no connection, a 4xx or 5xx reply) the row
becomes ``failed`` and a later pass tries again after a pause (``store.welcome.RETRY_AFTER``), up to
``store.welcome.MAX_ATTEMPTS`` tries; a
connection dropped after the message was handed over counts as not taken (as the campaign
ledger's deferred copies do), the one case where a reader might see it twice.
"""

from __future__ import annotations

import html as _html
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import NewsletterError, RenderError
from ..store import welcome as store
from email.utils import parseaddr

from .personalize import CampaignContent, MessageFactory, Recipient

_TITLE = re.compile(r"<mj-title>(.*?)</mj-title>", re.IGNORECASE | re.DOTALL)
_WEB_VERSION = re.compile(r"\*\|WEB_VERSION_URL\|\*|%2A%7CWEB_VERSION_URL%7C%2A", re.IGNORECASE)
_LINK = re.compile(r"<a\b[^>]*?\bhref=\"([^\"]+)\"[^>]*>(.*?)</a>", re.IGNORECASE | re.DOTALL)


@dataclass
class WelcomeMessage:
    """One rendered welcome step, merge tags still in it (filled per reader by ``for_reader``)."""

    subject: str
    html: str
    text: str


def render_step(mjml_file: Path, text_file: Path | None, config: Config, *, list_name: str, step: int,
                language: str | None = None) -> WelcomeMessage:
    """Render one step's MJML template (Jinja2 with the digest's partials, MJML, CSS inlined) and its
    plain text (its ``.txt`` template, else the HTML's text). The subject is the template's
    ``<mj-title>``, else "Welcome to LIST". Reader values stay merge tags (``{{ name }}`` is ``*|NAME|*``).
    The digest's partials speak ``language`` (the list's, else config ``language``)."""
    import jinja2

    from ..articles.sanitize import html_to_text
    from ..compose.inline import inline_css
    from ..compose.render import PLACEHOLDERS, mjml_to_html
    from ..compose.templates import environment

    context: dict[str, Any] = {
        "newsletter_name": " ".join(config.newsletter_name.split()), "site_url": config.site_url or "",
        "list_name": list_name, "step": step, "preferences_url": "*|PREFERENCES_URL|*", "email_kind": "welcome",
        **PLACEHOLDERS, "web_version_url": f"{config.base_url.rstrip('/')}/archive/",
    }
    from ..i18n import direction, gettext

    lang = language or config.language
    context.update(lang=lang, dir=direction(lang))
    env = environment(mjml_file.parent.resolve())
    try:
        source = env.get_template(mjml_file.name).render(context)
        text = env.get_template(text_file.name).render(context) if text_file is not None else None
    except jinja2.TemplateError as e:
        lineno = getattr(e, "lineno", None)
        raise RenderError(f"{getattr(e, 'filename', None) or mjml_file}{':' + str(lineno) if lineno else ''}: "
                          f"{e.message or type(e).__name__}") from None
    m = _TITLE.search(source)
    subject = " ".join(_html.unescape(m.group(1)).split()) if m else ""
    html = inline_css(mjml_to_html(source, str(mjml_file)))
    if text is None:  # links keep their address in the text: "Unsubscribe (https://...)"
        body = html[html.find("<body"):] if "<body" in html else html
        text = html_to_text(_LINK.sub(lambda m: f"{m.group(2)} ({_html.unescape(m.group(1))})", body))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(ln.rstrip() for ln in text.splitlines())).strip() + "\n"
    return WelcomeMessage(subject or gettext(lang, "Welcome to %(list)s", list=list_name), html, text)


def render_list_steps(lst: store.WelcomeList, config: Config) -> dict[int, WelcomeMessage]:
    """Every step of a list's welcome, rendered once (per worker pass)."""
    files = store.step_files(lst.template, lst.steps, config.template_dir)
    return {step: render_step(mjml, txt, config, list_name=lst.name, step=step, language=lst.language)
            for step, (mjml, txt) in files.items()}


class WelcomeFactory(MessageFactory):
    """A campaign's message factory for one welcome step: the same headers (List-Unsubscribe,
    List-Id, DKIM) and merge tags as a campaign copy, with a Message-ID of its own per reader,
    list and step (stable: a retried step is recognisable downstream)."""

    def __init__(self, content: CampaignContent, *, step: int, **kw):
        self._welcome_tag = f"welcome.{next(iter(content.lists), 0)}.{step}"
        super().__init__(content, **kw)

    def message_id(self, subscriber_id: int) -> str:
        return f"<nl.{self._welcome_tag}.{subscriber_id}.{self._msgid_tag}@{self.domain}>"


def welcome_factory(engine: Engine, config: Config, lst: store.WelcomeList, step: int, msg: WelcomeMessage,
                    secret: bytes, prefs_token: Callable[[int], str]) -> WelcomeFactory:
    """The factory building every reader's copy of one rendered welcome step."""
    from ..store.tokens import unsubscribe_token
    from .campaigns import titled
    from .dkim import make_signer

    archive = f"{config.base_url.rstrip('/')}/archive/"  # a welcome is no issue: its web version is the archive
    html, text = (_WEB_VERSION.sub(archive, body) for body in (msg.html, msg.text))
    content = CampaignContent(campaign_id=0, subject=msg.subject, from_address=config.from_address,
                              html=titled(html, msg.subject), text=text,
                              reply_to=config.reply_to, lists={lst.id: lst.slug})
    bounce = parseaddr(config.bounce_address or "")[1] or None
    return WelcomeFactory(
        content, step=step, base_url=config.base_url,
        unsubscribe_token=lambda sid, lid: unsubscribe_token(secret, sid, lid), preferences_token=prefs_token,
        newsletter_name=config.newsletter_name, instance_key=secret,
        precedence_bulk=(config.precedence or "").strip().lower() == "bulk",
        unsubscribe_mailto=config.unsubscribe_mailto, envelope_from=bounce, signer=make_signer(config),
    )


@dataclass
class WelcomePass:
    """What one ``send_due_welcomes`` call did; ``failures`` keeps (address, one-line reason), at most 20."""

    sent: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def send_due_welcomes(engine: Engine, config: Config, *, now: datetime | None = None, transport=None,
                      smtp: str | None = None, tls: str | None = None, outbox: str | None = None,
                      on_event: Callable[[str], None] | None = None, limit: int = 200) -> WelcomePass:
    """Send every welcome step due at ``now`` (at most ``limit`` per list and step), each claimed in
    the welcome ledger before it is sent. A list whose templates no longer render is reported
    (``on_event``) and skipped; a reader the server refuses is counted and tried again later."""
    from ..store import preferences
    from ..store.secret import secret_key
    from .oneoff import _deliver

    now = now or datetime.now(timezone.utc)
    result = WelcomePass()
    lists = store.welcome_lists(engine)
    if not lists:
        return result
    secret = secret_key(config)
    prefs_token = preferences.token_maker(engine, secret)
    if transport is None:
        from .preflight import make_transports

        transport = make_transports(config, smtp=smtp, tls=tls, outbox=outbox)[0]
    for lst in lists:
        factories: dict[int, WelcomeFactory] | None = None
        for step in lst.steps:
            due = store.due_welcomes(engine, lst, step, now, limit=limit)
            if not due:
                continue
            if factories is None:
                try:
                    factories = {s: welcome_factory(engine, config, lst, s, m, secret, prefs_token)
                                 for s, m in render_list_steps(lst, config).items()}
                except NewsletterError as e:
                    if on_event:
                        on_event(f"welcome of list {lst.slug}: {e}")
                    break
            for d in due:
                if not store.claim(engine, d, now):
                    continue
                try:
                    built = factories[step].build(Recipient(d.subscriber_id, d.list_id, d.email, d.name, d.attributes))
                    _deliver(config, built, transport=transport, smtp=None, tls=None, outbox=None, what="welcome")
                except NewsletterError as e:  # the server did not take it: failed, tried again later
                    store.settle(engine, d, error=str(e), now=now)
                    result.failed += 1
                    if len(result.failures) < 20:
                        result.failures.append((d.email, str(e)))
                    continue
                store.settle(engine, d, error=None, now=now)
                result.sent += 1
    if on_event and (result.sent or result.failed):
        on_event(f"welcome: sent {result.sent}, failed {result.failed}"
                 + "".join(f"; {who}: {why}" for who, why in result.failures[:3]))
    return result
