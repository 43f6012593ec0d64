"""Generate the manual's reference pages from the code, so they cannot drift.

``docs/reference/cli.md`` comes from the commands' own ``--help`` (every command, argument and
option), ``docs/reference/config.md`` from the ``Config`` object and the comment beside each field.
Run ``.venv/bin/python docs/gen_reference.py`` after changing a command or a config key;
``--check`` exits 1 when a committed page differs from what the code says (the test suite runs it).
"""

from __future__ import annotations

import ast
import dataclasses
import io
import sys
import tokenize
from pathlib import Path

import typer

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "reference"
CONFIG_SOURCE = REPO / "src" / "newsletter" / "config.py"


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _walk(cmd, path: list[str]):
    yield path, cmd
    if hasattr(cmd, "commands"):
        for name in sorted(cmd.commands):
            sub = cmd.commands[name]
            if not sub.hidden:
                yield from _walk(sub, path + [name])


def _kind(p) -> str:
    """What a parameter takes, read from its annotation (Typer keeps click's types to itself)."""
    import enum
    import typing

    if p.metavar:
        return p.metavar
    ann = p.type_descriptor.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if args:  # Optional[X], list[X]
        ann = args[0]
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return "|".join(str(m.value) for m in ann)
    names = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH"}
    return names.get(ann, getattr(ann, "__name__", str(ann)).upper())


def _param_row(p) -> str:
    if p.param_type_name == "argument":
        name = f"`{p.metavar or p.name.upper()}`"
        kind = "argument" + ("" if p.required else ", optional") + (", repeatable" if p.nargs == -1 else "")
        return f"| {name} | {kind} | {_cell(getattr(p, 'help', None) or '')} |"
    names = ", ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
    if p.is_flag:
        kind = "flag"
    else:
        kind = _cell(_kind(p))
    if p.multiple:
        kind += ", repeatable"
    default = p.default
    if default not in (None, False, (), [], "") and not callable(default) and not p.is_flag:
        kind += f", default `{_cell(getattr(default, 'value', default))}`"
    return f"| {names} | {kind} | {_cell(p.help or '')} |"


def cli_reference() -> str:
    """The CLI reference page: one section per command, with its help text and every parameter."""
    from newsletter.cli import app

    root = typer.main.get_command(app)
    lines = [
        "# CLI reference",
        "",
        "Generated from the commands' `--help` by `docs/gen_reference.py`; do not edit by hand.",
        "",
    ]
    for path, cmd in _walk(root, ["newsletter"]):
        if hasattr(cmd, "commands") and len(path) > 1 and not cmd.params:
            lines += [f"## {' '.join(path)}", "", _cell(cmd.help or ""), ""]
            continue
        lines += [f"## {' '.join(path)}", ""]
        if cmd.help:
            lines += [cmd.help.strip().replace("\b\n", ""), ""]
        params = [p for p in cmd.params if "--help" not in p.opts]
        if params:
            lines += ["| parameter | kind | meaning |", "|---|---|---|"]
            lines += [_param_row(p) for p in params]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _field_comments() -> dict[str, str]:
    """The comment beside (or on the lines just above) each field of ``Config`` in config.py."""
    source = CONFIG_SOURCE.read_text(encoding="utf-8")
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: dict[str, str] = {}
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = comments.get(node.end_lineno or node.lineno, "")
            if not text:  # a comment block right above the field
                above, n = [], node.lineno - 1
                while n >= 1 and lines[n - 1].strip().startswith("#") and not lines[n - 1].strip().startswith("# ---"):
                    above.insert(0, comments.get(n, ""))
                    n -= 1
                text = " ".join(above)
            out[node.target.id] = text
    return out


def undocumented_config_keys() -> list[str]:
    """Config fields with no comment to document them (the test suite fails on any)."""
    from newsletter.config import Config

    notes = _field_comments()
    return [f.name for f in dataclasses.fields(Config) if not notes.get(f.name) and f.name != "origins"]


def config_reference() -> str:
    """The configuration reference page: every key, its default, its variable and what it is for."""
    from newsletter.config import _SECRET_KEYS, Config

    notes = _field_comments()
    lines = [
        "# Configuration reference",
        "",
        "Generated from `newsletter.config.Config` by `docs/gen_reference.py`; do not edit by hand.",
        "Each key can be set in the TOML file or as `NEWSLETTER_<KEY>` in the environment; flags win",
        "over both. Secrets are read from the environment only. See [Configuration](../configuration.md).",
        "",
        "| key | default | environment | what it is for |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(Config):
        if f.name == "origins":  # bookkeeping of load_config, not a setting
            continue
        if f.default is not dataclasses.MISSING:
            default = "—" if f.default is None else f"`{_cell(repr(f.default))}`"
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f"`{_cell(repr(f.default_factory()))}`"  # type: ignore[misc]
        else:
            default = "—"
        env = f"`NEWSLETTER_{f.name.upper()}`"
        if f.name in _SECRET_KEYS:
            default, env = "— (secret)", env + " only"
        if f.name == "smtp":
            env = "— (TOML tables; passwords `NEWSLETTER_SMTP_<NAME>_PASSWORD`)"
        if f.name == "config_path":
            env = "`NEWSLETTER_CONFIG` or `--config`"
        lines.append(f"| `{f.name}` | {default} | {env} | {_cell(notes.get(f.name, ''))} |")
    return "\n".join(lines) + "\n"


PAGES = {"cli.md": cli_reference, "config.md": config_reference}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in PAGES.items():
        text = build()
        path = OUT / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}; run .venv/bin/python docs/gen_reference.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
