"""Checks that a manual page documents a command's options where the command is shown, by whole name.

A plain substring test passes for ``--format`` written for another command or inside ``--format-x``;
these look for the option on a usage line of that very command, as a whole option name.
"""

from __future__ import annotations

import re


def usage_lines(text: str, command: str) -> list[str]:
    """The lines of ``text`` that run ``command`` (e.g. ``newsletter bounces parse``), in code or prose."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(command)}(?![\w-])")
    return [line for line in text.splitlines() if pattern.search(line)]


def mentions_option(line: str, option: str) -> bool:
    """True when ``option`` appears in ``line`` as a whole option name (not ``--limit-x`` for ``--limit``)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", line) is not None


def undocumented_options(text: str, command: str, options: list[str]) -> list[str]:
    """The options of ``command`` that no usage line of it in ``text`` mentions."""
    lines = usage_lines(text, command)
    return [o for o in options if not any(mentions_option(line, o) for line in lines)]


def option_cells(text: str, command: str) -> list[str]:
    """The first cells of the options table (a Markdown table headed ``| option |``) that follows the
    first line of ``text`` running ``command``: the rows where that command's options are documented."""
    lines = text.splitlines()
    pattern = re.compile(rf"(?<![\w-]){re.escape(command)}(?![\w-])")
    start = next((i for i, line in enumerate(lines) if pattern.search(line)), None)
    if start is None:
        return []
    head = next((i for i in range(start, len(lines)) if re.match(r"\|\s*option\s*\|", lines[i])), None)
    if head is None:
        return []
    cells = []
    for line in lines[head + 2:]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        cells.append(line.split("|")[1])
    return cells


def options_missing_from_table(text: str, command: str, options: list[str]) -> list[str]:
    """The options of ``command`` that no row of its options table in ``text`` names, by whole name."""
    cells = option_cells(text, command)
    return [o for o in options if not any(mentions_option(cell, o) for cell in cells)]
