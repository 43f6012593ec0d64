"""Run the ``newsletter`` console script in this process, as a user would (argv in, exit status,
stdout and stderr out), for the CLI tests: faster than a subprocess, and the same ``main``."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_main(monkeypatch, capsys, argv: list[str]) -> Result:
    """``newsletter ARGV…`` through ``newsletter.cli.main``; SystemExit becomes the return code."""
    from newsletter.cli import main

    monkeypatch.setattr(sys, "argv", ["newsletter", *argv])
    capsys.readouterr()
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return Result(code, out, err)
