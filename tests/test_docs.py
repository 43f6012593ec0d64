"""The manual cannot drift: every command, option and config key is documented, the generated
reference pages match the code, the MkDocs site builds strictly, and the README stays short.

Modelled on sqlite-utils' test_docs.py.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest
import typer
from conftest import REPO

from newsletter.cli import app

GEN = REPO / "docs" / "gen_reference.py"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_reference", GEN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands(cmd=None, path=("newsletter",)):
    cmd = cmd or typer.main.get_command(app)
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        if not sub.hidden:
            yield from _commands(sub, path + (name,))


@pytest.mark.parametrize("path,cmd", list(_commands()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_and_option_has_help(path, cmd):
    assert (cmd.help or "").strip(), f"{' '.join(path)} has no help text"
    undocumented = [p.opts[0] for p in cmd.params if "--help" not in p.opts and not (getattr(p, "help", None) or "").strip()]
    assert not undocumented, f"{' '.join(path)}: parameters without help {undocumented}"


def _reference_sections(text: str) -> dict[str, list[list[str]]]:
    """docs/reference/cli.md as ``{command path: [names in the first cell of each parameter row]}``."""
    parts = re.split(r"^## (.+)\n", text, flags=re.M)
    return {name: [re.findall(r"`([^`]+)`", row.split(" | ")[0]) for row in body.splitlines() if row.startswith("| `")]
            for name, body in zip(parts[1::2], parts[2::2])}


def test_every_command_and_parameter_is_in_its_own_section_of_the_cli_reference():
    sections = _reference_sections((REPO / "docs" / "reference" / "cli.md").read_text(encoding="utf-8"))
    for path, cmd in _commands():
        name = " ".join(path)
        assert name in sections, f"{name} is missing from docs/reference/cli.md"
        for p in cmd.params:
            if "--help" in p.opts:
                continue
            shown = (p.metavar or p.name.upper()) if p.param_type_name == "argument" else p.opts[0]
            assert any(shown in names for names in sections[name]), f"{shown} of {name} has no row in its section"


def test_every_config_key_has_a_description():
    assert _gen().undocumented_config_keys() == [], "add a comment beside each new Config field in config.py"


def test_generated_reference_pages_match_the_code():
    r = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_mkdocs_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(REPO / ".venv" / "bin")) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.fail("mkdocs is not installed (it is in the [test] extra)")
    r = subprocess.run([mkdocs, "build", "--strict", "-q", "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()


def test_readme_is_short_and_has_the_two_quickstart_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 6000
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/newsletter demo" in readme
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q" in readme
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'" in ci and "\n.venv/bin/python -m pytest -q" in ci


def test_readme_links_resolve():
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith("http"):
            assert (REPO / target).exists(), f"README links to a missing file: {target}"
