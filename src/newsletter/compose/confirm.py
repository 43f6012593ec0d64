"""The double-opt-in confirmation email, rendered from templates like the digest: ``confirm.mjml``
(Jinja2 → MJML → CSS inlined) and ``confirm.txt`` (the plain-text part), with the digest's header
and styles so it looks like the newsletter.

The shipped templates are the defaults; a template folder of the publisher's own (config
``template_dir``, or ``--template``) that holds a ``confirm.mjml`` or ``confirm.txt`` replaces that
file, and its ``header.mjml``/``styles.mjml`` restyle the confirmation as they restyle the digest.
Only the values below reach a template, as values (never as template source), autoescaped in HTML.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import Config
from .cards import one_line, safe_url
from .templates import default_template_dir, render_file, resolve_template_dir

TEMPLATES = ("confirm.mjml", "confirm.txt")


@dataclass
class ConfirmationMessage:
    """The double-opt-in email: what dispatch's ``send_one`` needs."""

    subject: str
    text: str
    html: str


def confirmation_dir(config: Config, template_dir: str | Path | None = None) -> Path:
    """The folder the confirmation's templates are looked up in first (``template_dir``, else the
    config's, else the shipped one); what it lacks comes from the shipped templates."""
    chosen = template_dir if template_dir is not None else config.template_dir
    return default_template_dir() if chosen is None else resolve_template_dir(chosen, required=())


def confirmation_context(config: Config, *, email: str, list_name: str, confirm_url: str, name: str = "",
                         language: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The variables of confirm.mjml and confirm.txt (and what the digest's header reads, so a
    publisher's own header.mjml renders here too)."""
    from ..i18n import direction, format_day, gettext, normalize

    lang = normalize(language or config.language) or "en"

    def _(message: str, **variables: str) -> str:  # the name pybabel extracts (babel.cfg)
        return gettext(lang, message, **variables)

    subject = _("Please confirm your subscription to %(list)s", list=list_name)
    today = (now or datetime.now(timezone.utc))
    return {
        "email_kind": "confirmation",
        "lang": lang,
        "dir": direction(lang),
        "subject": subject,
        "newsletter_name": one_line(config.newsletter_name),
        "site_url": safe_url(config.site_url),
        "list_name": one_line(list_name),
        "email": email,
        "name": one_line(name),
        "confirm_url": confirm_url,
        # the digest header's own variables: a confirmation has no date line, stories or note
        "preheader": subject,
        "issue_date_text": today.strftime("%d %B %Y") if lang == "en" else format_day(today, lang),
        "article_count": 0,
        "articles": [],
        "intro": [],
    }


def render_confirmation(config: Config, *, email: str, list_name: str, confirm_url: str, name: str = "",
                        language: str | None = None, template_dir: str | Path | None = None) -> ConfirmationMessage:
    """Subject and bodies asking someone to confirm their subscription, in ``language`` (the list's;
    default config ``language``). A broken template is a one-line RenderError naming its file."""
    from .inline import inline_css
    from .render import mjml_to_html

    folder = confirmation_dir(config, template_dir)
    context = confirmation_context(config, email=email, list_name=list_name, confirm_url=confirm_url, name=name,
                                   language=language)
    source, where = render_file(folder, TEMPLATES[0], context)
    html = inline_css(mjml_to_html(source, where))
    text, _ = render_file(folder, TEMPLATES[1], context)
    return ConfirmationMessage(context["subject"], text, html)


def check_confirmation(config: Config, template_dir: str | Path | None = None, language: str | None = None) -> None:
    """Render a sample confirmation: a broken template is refused before anyone is mailed (RenderError)."""
    render_confirmation(config, email="reader@example.org", list_name="List", name="Reader",
                        confirm_url="https://example.org/confirm/sample", language=language, template_dir=template_dir)
