"""How ``campaigns show`` and ``campaigns report`` print an A/B campaign's test: its settings and
phase, then one line per variant (subject, test copies delivered, people who clicked and opened,
the deciding rate) and the decision with its reason."""

from __future__ import annotations


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def ab_lines(ab: dict) -> list[str]:
    """The A/B section as plain lines (``ABStatus.as_dict``)."""
    metric = "human clicks" if ab["winner_by"] == "clicks" else "people's opens"
    hours = ab["wait_seconds"] / 3600
    head = (f"A/B test: {ab['test_share']:g}% of readers, winner by {metric} after {hours:g}h "
            f"(at least {ab['min_sample']} delivered copies per variant); {ab['phase']}")
    if ab["phase"] == "waiting" and ab.get("decide_after"):
        head += f", the winner is chosen at {ab['decide_after'][:16].replace('T', ' ')} UTC"
    if ab["held"]:
        head += f"; {ab['held']} reader(s) wait for the winner"
    lines = [head, f"  {'variant':7} {'delivered':>9} {'clicked':>7} {'opened':>6} {'rate':>6}  subject"]
    for v in ab["variants"]:
        mark = " *" if ab.get("winner") == v["variant"] else ""
        lines.append(f"  {v['letter'] + mark:7} {v['test_delivered']:>9} {v['test_clickers']:>7} "
                     f"{v['test_openers']:>6} {_pct(v.get('rate')):>6}  {v['subject']}")
    d = ab.get("decision")
    if d:
        rest = next((v["rest_copies"] for v in ab["variants"] if v["variant"] == ab.get("winner")), 0)
        lines.append(f"  decided {d['at'][:16].replace('T', ' ')} UTC: {d['reason']}; {rest} reader(s) got {d['winner']}")
    return lines
