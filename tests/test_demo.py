"""The README's first command: `newsletter demo` runs the whole job on the sample content."""

import email
import email.policy
import re
import subprocess
import sys

from conftest import REPO


def test_demo_runs_the_whole_pipeline_to_an_outbox(tmp_path):
    work = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "newsletter", "demo", "--dir", str(work)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "NEWSLETTER_SECRET_KEY": "demo-test-key-0123456789abcdef"},
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    for name in ("digest.html", "digest.txt", "digest.eml"):
        assert (work / "out" / name).is_file()
    emls = sorted((work / "outbox").glob("campaign-*/*.eml"))
    assert emls, r.stdout
    recipients = []
    for path in emls:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert msg["List-Unsubscribe"] and "One-Click" in msg["List-Unsubscribe-Post"]
        assert msg.get_body(("html",)) is not None and msg.get_body(("plain",)) is not None
        recipients.append(msg["To"].addresses[0].addr_spec.lower())
    assert len(recipients) == len(set(recipients)), "someone got two copies"
    assert re.search(rf"(?<!\d){len(emls)} sent", r.stdout), r.stdout
    # the way on: the web admin, with the command that starts it
    assert re.search(r"^Next: `newsletter --db sqlite:///\S+ serve` and open http://127\.0\.0\.1:8000/admin/preview\?campaign=\d+",
                     r.stdout, re.M), r.stdout


def test_demo_outside_the_repository_says_what_is_missing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "newsletter", "demo", "--dir", str(tmp_path / "d")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "articles folder not found" in r.stderr and "Traceback" not in r.stderr
