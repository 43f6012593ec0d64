"""The plain-text part, written from the same context as the HTML through its own template."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import RenderError
from .templates import environment


def render_text(template_dir: Path, context: dict[str, Any]) -> str:
    """Jinja2 stage for the plain-text part, from the same context as the HTML."""
    import jinja2

    try:
        text = environment(template_dir).get_template("digest.txt").render(context)
    except jinja2.TemplateError as e:
        lineno = getattr(e, "lineno", None)  # TemplateSyntaxError and some runtime errors carry one
        line = f":{lineno}" if lineno else ""
        raise RenderError(f"{template_dir / 'digest.txt'}{line}: {e.message or type(e).__name__}") from None
    # Tidy template whitespace: no trailing spaces, at most one blank line in a row.
    lines = [ln.rstrip() for ln in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
