"""The reader's language: gettext catalogues for the public pages, the confirmation email and the
digest's fixed words, and the rules that choose a language.

Catalogues are ``locale/<lang>/LC_MESSAGES/messages.po`` inside the package (English is the
source language and has none). They are compiled in memory on first use with Babel, so a clean
checkout needs no build step; a ``messages.mo`` next to a ``.po`` is used when it is newer.
Templates use Jinja2's i18n extension (``{% trans %}``, ``_()``, ``ngettext()``); the callables
installed here read ``lang`` from the template context, so one environment serves every language.
"""

from __future__ import annotations

import gettext as _gettext
import io
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SOURCE_LANGUAGE = "en"
SHIPPED = ("en", "fr", "de", "es", "pt", "ar")
RTL = frozenset({"ar", "he", "fa", "ur", "ps", "yi", "dv", "ckb", "ug", "sd"})


class Message(str):
    """Words for a reader, made in code: ``str()`` is the English text (what logs, the API and the CLI
    show), ``msgid`` the marked English template and ``params`` its values, so a page can show the
    same words from its language's catalogue (``in_language``). Made with ``N_``."""

    __slots__ = ("msgid", "params")
    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, params: dict[str, Any] | None = None) -> "Message":
        params = dict(params or {})
        self = super().__new__(cls, msgid % params if params else msgid)
        self.msgid, self.params = msgid, params
        return self

    def in_language(self, lang: str | None) -> str:
        """These words in ``lang`` (the English for a language without this message); a value that
        is itself a Message is translated too. In a right-to-left language each text value (an
        address, a list's name) is isolated (U+2068 … U+2069) so it keeps its own direction."""
        rtl = direction(lang) == "rtl"
        values = {k: v.in_language(lang) if isinstance(v, Message) else f"\u2068{v}\u2069" if rtl and isinstance(v, str) else v
                  for k, v in self.params.items()}
        text = translations(lang).gettext(self.msgid)
        return text % values if values else text

    def __reduce__(self):
        return (Message, (self.msgid, self.params))


def N_(message: str, **params: Any) -> Message:
    """Mark ``message`` for extraction (``pybabel extract -k N_``) without translating it: a Message,
    the English text filled with ``params`` (``%(name)s`` placeholders), translated where it is shown."""
    return Message(message, params)


def reader_text(value: Any, lang: str | None) -> str:
    """What a page shows for ``value`` in ``lang``: a Message or an error carrying one in the reader's
    language; any other text through the catalogue word for word (English when it has no entry)."""
    message = getattr(value, "reader", None) if isinstance(value, BaseException) else value
    if isinstance(message, Message):
        return message.in_language(lang)
    text = str(value)
    return translations(lang).gettext(text) if text else text


# Words the public pages show that the web layer keeps in code (a subscription's status on the
# preference centre, the error page's titles): marked here so extraction puts them in the catalogues.
CODE_MESSAGES = (
    N_("Subscribed"), N_("Waiting for your confirmation"), N_("Left"), N_("Stopped: your mail server refused it"),
    N_("Stopped: marked as spam"), N_("Not subscribed"),
    N_("That did not work"), N_("Please log in"), N_("Not allowed"), N_("Not found"), N_("Method not allowed"),
    N_("Not possible right now"), N_("Too large"), N_("Too many requests"), N_("Something went wrong"),
    N_("Sending failed"), N_("Service unavailable"), N_("Error"),
)
# The reasons a page gives for refusing something (an invalid address, a rate limit, an expired
# link) are Messages made with N_ where they are raised: see reader_text.


def normalize(lang: str | None) -> str:
    """A language tag reduced to the primary subtag we key catalogues by ("pt-BR" → "pt")."""
    return (lang or "").strip().replace("_", "-").split("-")[0].lower()


def supported(lang: str | None) -> bool:
    """Whether ``lang`` is a language with a catalogue (or the source language)."""
    return normalize(lang) in available()


@lru_cache(maxsize=1)
def available() -> tuple[str, ...]:
    """The source language and every language with a catalogue in ``locale/``."""
    found = sorted(p.parent.parent.name for p in LOCALE_DIR.glob("*/LC_MESSAGES/messages.po"))
    return (SOURCE_LANGUAGE, *[x for x in found if x != SOURCE_LANGUAGE])


def check_language(lang: str) -> str:
    """``lang`` normalized, or InvalidInput naming the shipped languages."""
    from .errors import InvalidInput

    code = normalize(lang)
    if code not in available():
        raise InvalidInput(f"language {lang!r} has no catalogue: use one of {', '.join(available())}")
    return code


def direction(lang: str | None) -> str:
    """``rtl`` for right-to-left languages, else ``ltr``."""
    return "rtl" if normalize(lang) in RTL else "ltr"


@lru_cache(maxsize=32)
def translations(lang: str | None) -> _gettext.NullTranslations:
    """The compiled catalogue for ``lang`` (NullTranslations for English or an unknown language)."""
    code = normalize(lang)
    po = LOCALE_DIR / code / "LC_MESSAGES" / "messages.po"
    if code == SOURCE_LANGUAGE or not po.is_file():
        return _gettext.NullTranslations()
    mo = po.with_suffix(".mo")
    if mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as f:
            return _gettext.GNUTranslations(f)
    return _gettext.GNUTranslations(io.BytesIO(compile_po(po)))


def compile_po(po: Path) -> bytes:
    """A ``.po`` file compiled to ``.mo`` bytes with Babel (fuzzy entries left out, as msgfmt does)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as f:
        catalog = read_po(f, locale=po.parent.parent.name)
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def gettext(lang: str | None, message: str, **variables: Any) -> str:
    """``message`` in ``lang``, with ``%(name)s`` placeholders filled from ``variables``."""
    text = translations(lang).gettext(message)
    return text % variables if variables else text


def ngettext(lang: str | None, singular: str, plural: str, n: int, **variables: Any) -> str:
    """The singular or plural form for ``n`` in ``lang``; ``%(num)d`` is ``n``."""
    text = translations(lang).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


def format_day(day, lang: str | None) -> str:
    """A date as a reader of ``lang`` writes it ("03 December 2026", "3 décembre 2026", "3. Dezember 2026")."""
    code = normalize(lang)
    if code in ("", SOURCE_LANGUAGE) or not supported(code):
        return day.strftime("%d %B %Y")
    from babel.dates import format_date

    return format_date(day, format="long", locale=code)


def from_accept_language(header: str | None, offered: Iterable[str] | None = None) -> str | None:
    """The best language of ``offered`` (default: the shipped ones) for an Accept-Language header,
    by the header's q-values; None when the reader asks for none of them."""
    offer = tuple(offered or available())
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            ranked.append((-q, i, normalize(tag)))
    for _q, _i, code in sorted(ranked):
        if code in offer:
            return code
    return None


def choose(list_language: str | None, accept_language: str | None, default: str | None) -> str:
    """The language of a public page: the list's when the page is about one list, else the
    reader's browser preference among the shipped languages, else the configured default."""
    if list_language and supported(list_language):
        return normalize(list_language)
    return from_accept_language(accept_language) or (normalize(default) if supported(default) else SOURCE_LANGUAGE)


def install(env) -> None:
    """Add Jinja2's i18n extension to ``env`` with callables that translate into the template
    context's ``lang`` (autoescaped like jinja2's own new-style gettext)."""
    from jinja2 import pass_context
    from markupsafe import Markup

    if "jinja2.ext.InternationalizationExtension" not in env.extensions:
        env.add_extension("jinja2.ext.i18n")

    def _lang(ctx) -> str | None:
        value = ctx.resolve_or_missing("lang")
        return value if isinstance(value, str) else None

    @pass_context
    def _gettext(ctx, message: str, **variables: Any) -> str:
        text = translations(_lang(ctx)).gettext(message)
        if ctx.eval_ctx.autoescape:
            text = Markup(text)
        return text % variables  # always, as jinja2 does: {% trans %} doubles a literal %

    @pass_context
    def _ngettext(ctx, singular: str, plural: str, num: int, **variables: Any) -> str:
        text = translations(_lang(ctx)).ngettext(singular, plural, num)
        if ctx.eval_ctx.autoescape:
            text = Markup(text)
        return text % {"num": num, **variables}

    @pass_context
    def _translate(ctx, text: Any) -> Any:
        """A message made in code (an error's reason, a status): in the page's language when it is a
        Message or the catalogue has it, else the text as it is; plain text either way, so the
        template escapes it."""
        return str(reader_text(text, _lang(ctx))) if isinstance(text, (str, BaseException)) else text

    @pass_context
    def _format_day(ctx, day) -> str:
        return format_day(day, _lang(ctx))

    env.globals.update(gettext=_gettext, _=_gettext, ngettext=_ngettext, format_day=_format_day, translate=_translate)
    env.newstyle_gettext = True
    env.policies["ext.i18n.trimmed"] = True
    env.globals.setdefault("lang_dir", direction)
