"""The ``newsletter`` command: a thin shell over the library.

Each subcommand group lives in its own module and registers itself on ``app``;
this module only loads the config, and turns the library's errors into one-line
messages and exit codes (never a traceback).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ..config import Config, load_config
from ..errors import NewsletterError

app = typer.Typer(
    name="newsletter",
    help="Compose newsletter digests, keep subscribers, and send campaigns over SMTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file (default: ./newsletter.toml if present, or $NEWSLETTER_CONFIG)."),
    db: Optional[str] = typer.Option(None, "--db", help="Database URL (default sqlite:///newsletter.db; env NEWSLETTER_DATABASE_URL)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more detail to stderr."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )
    # The driver's own notes while cleaning up a lost connection ("error ignored terminating
    # <psycopg.Pipeline>…"): the command reports the failure itself, in one line.
    logging.getLogger("psycopg").setLevel(logging.DEBUG if verbose else logging.ERROR)
    ctx.obj = {"config_path": config, "overrides": {"database_url": db}, "config": None}


def get_config(ctx: typer.Context, **overrides) -> Config:
    """The Config for this invocation: file → env → global flags → this command's flags."""
    root = ctx.find_root()
    obj = root.obj or {"config_path": None, "overrides": {}, "config": None}
    if obj.get("config") is None:
        obj["config"] = load_config(obj.get("config_path"), obj.get("overrides"))
        root.obj = obj
    return obj["config"].replace(**overrides)


def _register() -> None:
    # Each module adds its commands to ``app`` on import.
    # One import a line, so that a new command group is a one-line change.
    from . import articles  # noqa: F401
    from . import compose  # noqa: F401
    from . import store  # noqa: F401
    from . import subscribers  # noqa: F401
    from . import dispatch  # noqa: F401
    from . import schedule  # noqa: F401
    from . import web  # noqa: F401
    from . import demo  # noqa: F401
    from . import bounces  # noqa: F401
    from . import domain  # noqa: F401
    from . import segments  # noqa: F401
    from . import engagement  # noqa: F401
    from . import archive  # noqa: F401


_register()


def main() -> None:
    """Console-script entry point: run the app, print library errors on one line."""
    try:
        app()
    except NewsletterError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        sys.exit(130)
    except Exception as e:  # the last line of defence: no traceback for users
        if os.environ.get("NEWSLETTER_DEBUG"):
            raise
        typer.secho(f"error: unexpected {type(e).__name__}: {e} (set NEWSLETTER_DEBUG=1 for a traceback)", fg=typer.colors.RED, err=True)
        sys.exit(2)
