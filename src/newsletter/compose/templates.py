"""Finding the digest templates and the Jinja2 environment that renders them.

A template directory holds ``digest.mjml`` (the email, MJML with Jinja2) and ``digest.txt``
(the plain-text part). The default one ships inside the wheel as ``newsletter/_templates``; in a
source checkout it is the repository's top-level ``templates/``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import RenderError
from .textwrap_cjk import wrap

REQUIRED = ("digest.mjml", "digest.txt")


def default_template_dir() -> Path:
    """The shipped templates: package data first (installed wheel), then the source checkout."""
    try:
        packaged = Path(str(resources.files("newsletter") / "_templates"))
        if (packaged / REQUIRED[0]).is_file():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    repo = Path(__file__).resolve().parents[3] / "templates"
    if (repo / REQUIRED[0]).is_file():
        return repo
    raise RenderError("default templates not found (neither newsletter/_templates nor templates/ in the checkout)")


def resolve_template_dir(template_dir: str | Path | None, required: tuple[str, ...] = REQUIRED) -> Path:
    """The template directory to use, checked to hold every ``required`` file (the digest's by
    default; the confirmation email requires none: what a folder lacks comes from the shipped one)."""
    if template_dir is None:
        return default_template_dir()
    d = Path(template_dir).expanduser()
    if not d.is_dir():
        raise RenderError(f"--template {d}: not a directory")
    missing = [name for name in required if not (d / name).is_file()]
    if missing:
        raise RenderError(f"--template {d}: missing {', '.join(missing)} (a template directory needs {' and '.join(REQUIRED)})")
    return d


@lru_cache(maxsize=16)
def environment(template_dir: Path):
    """A Jinja2 environment for one template directory (cached: compiled templates are reused).

    Autoescaping is on for .mjml/.html files (article text is untrusted) and off for .txt.
    A custom directory can include the default partials, which are searched second.
    """
    import jinja2

    search = [str(template_dir)]
    try:
        default = default_template_dir()
        if default != template_dir:
            search.append(str(default))
    except RenderError:
        pass
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml", "html", "xml"), default_for_string=True, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["caps"] = caps
    env.filters["wrap"] = wrap
    from ..i18n import install

    install(env)  # the fixed words ("Read more", the footer) in the digest's language: context `lang`
    return env


def render_file(template_dir: Path, name: str, context: dict[str, Any]) -> tuple[str, str]:
    """Render template ``name`` (``template_dir``'s own, else the shipped one) with ``context``:
    the output and the file it came from. A broken template — a syntax error, an include that is
    not there, an error while rendering — is a one-line RenderError naming the file (and line)."""
    import jinja2

    where = str(template_dir / name)
    try:
        template = environment(template_dir).get_template(name)
        where = template.filename or where
        return template.render(context), where
    except jinja2.TemplateNotFound as e:
        missing = e.name if e.name != name else name
        raise RenderError(f"{where}: template {missing!r} not found in {template_dir} nor in the shipped templates") from None
    except jinja2.TemplateError as e:
        lineno = getattr(e, "lineno", None)
        raise RenderError(f"{getattr(e, 'filename', None) or where}{f':{lineno}' if lineno else ''}: "
                          f"{one_line_message(e.message or type(e).__name__)}") from None
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as e:  # a filter or % format in the template
        raise RenderError(f"{where}: {type(e).__name__}: {one_line_message(str(e))}") from None


def one_line_message(text: str) -> str:
    """An error message on one line (Jinja2's can span several)."""
    return " ".join(str(text).split())


def caps(text: str) -> str:
    """Upper-case for labels, the way typographers do it: Greek capitals lose their accents
    ("Πολιτισμός" → "ΠΟΛΙΤΙΣΜΟΣ"), which ``str.upper`` keeps."""
    import re
    import unicodedata

    decomposed = unicodedata.normalize("NFD", str(text).upper())
    return unicodedata.normalize("NFC", re.sub(r"(?<=[\u0391-\u03a9])[\u0301\u0342]", "", decomposed))
