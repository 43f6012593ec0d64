"""Refresh the email-client support snapshot that `compose` and the preview check templates against.

Fetches the npm package `caniemail` (MIT; data from caniemail.com) with `npm pack`, keeps the
features and the four client families we report on (Gmail, Outlook, Apple Mail, Yahoo), and
writes src/newsletter/compose/caniemail.json with the data's date and the package version.
Run by hand: `.venv/bin/python scripts/refresh_caniemail.py [VERSION]`; commit the result.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "newsletter" / "compose" / "caniemail.json"
FAMILIES = ("gmail", "outlook", "apple-mail", "yahoo")


def latest(versions: dict[str, str]) -> str:
    """The support letter of the newest tested version (the data lists versions oldest first)."""
    return list(versions.values())[-1].split()[0] if versions else "u"


def reduce(data: dict, version: str) -> dict:
    features = {}
    for f in data["data"]:
        support = {fam: {plat: latest(v) for plat, v in f["stats"].get(fam, {}).items()} for fam in FAMILIES}
        features[f["slug"]] = {"title": f["title"], "category": f["category"], "url": f["url"], "support": support}
    return {
        "source": f"npm caniemail {version} (data from caniemail.com, MIT)",
        "last_update_date": data["last_update_date"],
        "platforms": {fam: data["nicenames"]["family"][fam] for fam in FAMILIES},
        "platform_names": data["nicenames"]["platform"],
        "features": features,
    }


def main(argv: list[str]) -> int:
    spec = f"caniemail@{argv[0]}" if argv else "caniemail"
    with tempfile.TemporaryDirectory() as tmp:
        name = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, check=True,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
        with tarfile.open(Path(tmp) / name) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("caniemail.json"))
            data = json.load(tar.extractfile(member))  # type: ignore[arg-type]
            version = json.load(tar.extractfile("package/package.json"))["version"]  # type: ignore[arg-type]
    OUT.write_text(json.dumps(reduce(data, version), indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB, data of {data['last_update_date']}, caniemail {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
