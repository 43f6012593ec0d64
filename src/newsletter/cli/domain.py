"""CLI commands ``newsletter domain check`` and ``newsletter dkim keygen`` (registered on import).

They only format what :mod:`newsletter.dispatch.domain` and :mod:`newsletter.dispatch.dkimkeys`
return; the rules live there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from . import app, get_config
from ..errors import InvalidInput

domain_app = typer.Typer(help="Check that the sending domain's DNS (SPF, DKIM, DMARC) is ready for bulk mail.",
                         no_args_is_help=True)
dkim_app = typer.Typer(help="DKIM keys: generate one and print the DNS record to publish.", no_args_is_help=True)
app.add_typer(domain_app, name="domain")
app.add_typer(dkim_app, name="dkim")

LABELS = {"spf": "SPF", "spf_relay": "SPF relay", "dkim": "DKIM", "dkim_ed25519": "DKIM Ed25519", "dmarc": "DMARC",
          "align_dkim": "DKIM alignment", "align_spf": "SPF alignment", "bounce_mx": "Bounce MX", "base_url": "base_url"}


@domain_app.command("check")
def check(
    ctx: typer.Context,
    domain: Optional[str] = typer.Argument(None, help="The From domain to check (default: the domain of from_address)."),
    fmt: str = typer.Option("text", "--format", help="text or json."),
) -> None:
    """Check SPF, DKIM, DMARC, alignment, the bounce domain's MX and https links; exit 1 when a check
    that Gmail, Yahoo or Microsoft require of bulk senders fails."""
    from ..dispatch.domain import check_domain

    if fmt not in ("text", "json"):
        raise InvalidInput(f"--format {fmt!r}: expected text or json")
    report = check_domain(get_config(ctx), domain)
    if fmt == "json":
        typer.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        dkim = f", DKIM d={report.dkim_domain}" if report.dkim_domain else ""
        typer.echo(f"{report.domain} (envelope {report.envelope_domain}{dkim}; asking {report.resolver})")
        for c in report.checks:
            mark = "✓" if c.ok else "✗"
            note = "" if c.ok or c.required else " (recommended)"
            typer.echo(f"{mark} {LABELS.get(c.name, c.name)}: {c.summary}{note}")
            if not c.ok and c.fix:
                typer.echo(f"    publish/set: {c.fix}")
        failed = report.failed_required
        typer.echo("ready for bulk sending" if not failed else
                   f"not ready: {len(failed)} required check(s) failed: {', '.join(failed)}")
    if not report.ok:
        sys.exit(1)


@dkim_app.command("keygen")
def keygen(
    domain: str = typer.Option(..., "--domain", help="The signing domain (d=), normally the From domain."),
    selector: str = typer.Option(..., "--selector", help="The selector (s=): the record goes at SELECTOR._domainkey.DOMAIN."),
    out: Path = typer.Option(..., "--out", help="Where to write the private key (mode 0600; never overwritten)."),
    ed25519: bool = typer.Option(False, "--ed25519", help="An Ed25519 key (RFC 8463) instead of 2048-bit RSA."),
) -> None:
    """Write a new DKIM private key and print the one-line TXT record to publish."""
    from ..dispatch.dkimkeys import generate, txt_line
    from ..dispatch.domain import valid_domain

    domain = valid_domain(domain)
    if not selector or not all(part and part.replace("-", "").replace("_", "").isalnum() for part in selector.split(".")):
        raise InvalidInput(f"--selector {selector!r}: letters, digits, '-' and '_' (dot-separated)")
    key = generate(out, ed25519_key=ed25519)
    typer.echo(txt_line(selector, domain, key))
    typer.echo(f"wrote {out} (mode 0600); set dkim_key_file = \"{out}\", dkim_selector = \"{selector}\", "
               f"dkim_domain = \"{domain}\" once the record is published", err=True)
