"""Every regular expression in src/newsletter/articles and src/newsletter/compose, run against
adversarial inputs (issue 11, item 7): long runs of the pattern's own literal fragments and of
characters that quantifiers like to fight over, each followed by a character that makes the
match fail. A regex that backtracks catastrophically shows up as a slow or timed-out line.

    python benchmarks/regex_audit.py [--size 50000] [--timeout 20]

The patterns are found in the source with ``ast`` (calls to ``re.compile/match/search/sub/...``
with a literal pattern, flags evaluated when they are ``re.X`` names), so no module is imported
and a new regex is audited without registering it. Each pattern runs in its own process with a
timeout, so an exponential one is reported rather than hanging the audit.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRS = [ROOT / "src/newsletter/articles", ROOT / "src/newsletter/compose"]
RE_FUNCS = {"compile", "match", "search", "sub", "subn", "findall", "finditer", "fullmatch", "split"}
GENERIC = [" ", "\n", "\t", "a", "A", "1", "<", ">", "-", ".", "/", ":", "=", '"', "'", "#", "*", "_", "[", "]",
           "(", ")", "!", ",", "&", ";", "|", "@", "\u00a0", "é"]
KILLERS = ["\x00", "!", "\uffff"]


def _flags(node) -> int:
    """re.I | re.S ... → the int; anything not made of re.NAME attributes counts as 0."""
    if node is None:
        return 0
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _flags(node.left) | _flags(node.right)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "re":
        return int(getattr(re, node.attr, 0))
    return 0


def find_patterns() -> list[dict]:
    """(file, line, pattern, flags) for every literal regex in the audited folders."""
    out = []
    for d in DIRS:
        for path in sorted(d.glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                        and node.func.attr in RE_FUNCS and node.args):
                    continue
                pat = node.args[0]
                if not isinstance(pat, ast.Constant) or not isinstance(pat.value, (str, bytes)):
                    continue
                flags = next((kw.value for kw in node.keywords if kw.arg == "flags"), None)
                if flags is None:
                    pos = {"compile": 1, "match": 2, "search": 2, "fullmatch": 2, "findall": 2, "finditer": 2,
                           "split": 3, "sub": 4, "subn": 4}[node.func.attr]
                    flags = node.args[pos] if len(node.args) > pos else None
                value = pat.value
                out.append({"file": str(path.relative_to(ROOT)), "line": node.lineno, "how": node.func.attr,
                            "pattern": value.decode("latin-1") if isinstance(value, bytes) else value,
                            "bytes": isinstance(value, bytes), "flags": _flags(flags)})
    return out


def fragments(pattern: str) -> list[str]:
    """Literal pieces of the pattern ("<!--", "-->", "charset", ...) an attacker would repeat."""
    pieces = re.findall(r"(?:\\.|[^\\()\[\]{}*+?|^$.])+", pattern)
    lits = set()
    for p in pieces:
        lit = re.sub(r"\\([^A-Za-z0-9])", r"\1", p)
        lit = re.sub(r"\\[A-Za-z]", "", lit)
        if 1 <= len(lit) <= 12:
            lits.add(lit)
    return sorted(lits)[:25]


def inputs(pattern: str, size: int) -> list[str]:
    """Adversarial texts of about ``size`` characters for one pattern."""
    frags = fragments(pattern)
    units = frags + GENERIC + [f + g for f in frags for g in (" ", "a")][:20] + [a + b for a in frags for b in frags if a != b][:20]
    out = []
    for u in units:
        body = u * max(1, size // max(1, len(u)))
        for k in KILLERS[:2]:
            out.append(body + k)
        out.append(frags[0] + body + KILLERS[0] if frags else body)
    return out


CHILD = r"""
import json, re, sys, time
spec = json.loads(sys.stdin.read())
pat = spec["pattern"].encode("latin-1") if spec["bytes"] else spec["pattern"]
rx = re.compile(pat, spec["flags"])
worst, worst_input = 0.0, ""
for text in spec["inputs"]:
    data = text.encode("utf-8") if spec["bytes"] else text
    t = time.perf_counter()
    # As the code calls it: an anchored match scans once; search/sub/findall try every start.
    if spec["how"] in ("match", "fullmatch"):
        getattr(rx, spec["how"])(data)
    else:
        list(rx.finditer(data))
    dt = time.perf_counter() - t
    if dt > worst:
        worst, worst_input = dt, text[:40]
print(json.dumps({"worst": worst, "input": worst_input}))
"""


def audit(size: int, timeout: float) -> list[dict]:
    results = []
    for spec in find_patterns():
        payload = json.dumps({**spec, "inputs": inputs(spec["pattern"], size)})
        start = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "-c", CHILD], input=payload, capture_output=True, text=True, timeout=timeout)
            res = json.loads(r.stdout) if r.returncode == 0 else {"worst": None, "input": r.stderr.strip()[-200:]}
        except subprocess.TimeoutExpired:
            res = {"worst": float("inf"), "input": f"(timed out after {timeout:g} s)"}
        res.update(spec, total=time.perf_counter() - start)
        results.append(res)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=50_000)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--slow", type=float, default=0.5, help="report patterns whose worst input takes longer (s)")
    args = ap.parse_args()
    results = audit(args.size, args.timeout)
    slow = [r for r in results if r["worst"] is None or r["worst"] > args.slow]
    for r in sorted(results, key=lambda r: -(r["worst"] or 0))[:15]:
        print(f"{r['worst'] if r['worst'] is not None else 'error'!s:>22}  {r['file']}:{r['line']}  {r['pattern'][:70]!r}  worst input {r['input']!r}")
    print(f"{len(results)} patterns, {len(slow)} slower than {args.slow} s on {args.size}-character inputs")
    sys.exit(1 if slow else 0)


if __name__ == "__main__":
    main()
