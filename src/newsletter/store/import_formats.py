"""Other tools' export files, recognised by their header, and the column mapping an import uses.

Mailchimp ("Email Address", "First Name", MEMBER_RATING, LEID…), listmonk (uuid, email, name,
attributes, status…) and Substack (email, active_subscription, email_disabled…) exports are
mapped without ``--map``; any other header falls back to the plain aliases (email, name, status,
everything else an attribute). The admin's import page shows this mapping and lets the publisher
change it; the CLI's ``subscribers import`` uses it as the default under its ``--map`` flags.

A mapping sends each column to one TARGET: ``email``, ``name``, ``first_name`` and ``last_name``
(joined with a space into the name), ``status``, ``attributes`` (a JSON object spread into
attributes), ``attr:NAME``, ``unsubscribed-if-set`` / ``bounced-if-set`` (a non-empty cell other
than false/0/no marks the row as having left, e.g. Mailchimp's UNSUB_TIME), or ``-`` (ignore).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidInput

# Targets a column may have; "attr:NAME" is the open-ended one.
SINGLE_TARGETS = ("email", "name", "first_name", "last_name", "status", "attributes")
FLAG_TARGETS = {"unsubscribed-if-set": "unsubscribed", "bounced-if-set": "bounced"}
IGNORE = ("-", "ignore", "skip")
# Cells that do not set a flag column.
FALSE_CELLS = {"", "false", "0", "no", "n", "f"}
# Header names understood without a mapping (compared lowercased, spaces and '-' folded to '_').
ALIASES = {"email": "email", "e_mail": "email", "email_address": "email", "mail": "email",
           "name": "name", "full_name": "name", "status": "status",
           "first_name": "first_name", "firstname": "first_name", "given_name": "first_name",
           "last_name": "last_name", "lastname": "last_name", "surname": "last_name", "family_name": "last_name"}


@dataclass(frozen=True)
class KnownFormat:
    """An export format we recognise: its name as shown to people and its column mapping
    (lowercased header name -> target; a header not named here keeps the plain default)."""

    key: str
    label: str
    mapping: dict[str, str] = field(default_factory=dict)


MAILCHIMP = KnownFormat("mailchimp", "Mailchimp audience export", {
    "email address": "email", "first name": "first_name", "last name": "last_name",
    # Mailchimp exports its audiences as separate files; the unsubscribed and cleaned ones have these.
    "unsub_time": "unsubscribed-if-set", "clean_time": "bounced-if-set",
    # Bookkeeping and location guesses of Mailchimp's own, and the sign-up IP address: not kept.
    **{c: "-" for c in ("member_rating", "optin_ip", "confirm_ip", "latitude", "longitude", "gmtoff", "dstoff",
                        "cc", "region", "last_changed", "leid", "euid", "unsub_campaign_id", "clean_campaign_id",
                        "unsub_campaign_title", "clean_campaign_title")},
    "optin_time": "attr:optin_time", "confirm_time": "attr:confirm_time", "timezone": "attr:timezone",
    "tags": "attr:tags", "notes": "attr:notes",
})
LISTMONK = KnownFormat("listmonk", "listmonk subscribers export", {
    "uuid": "-", "email": "email", "name": "name", "attributes": "attributes", "status": "status",
    "created_at": "-", "updated_at": "-",
})
SUBSTACK = KnownFormat("substack", "Substack subscribers export", {
    "email": "email", "email_disabled": "unsubscribed-if-set", "active_subscription": "attr:active_subscription",
    "plan": "attr:plan", "expiry": "attr:expiry", "created_at": "-", "name": "name",
})
FORMATS = (MAILCHIMP, LISTMONK, SUBSTACK)


def detect_format(header: list[str]) -> KnownFormat | None:
    """The export format this header comes from, or None for any other file."""
    cols = {h.strip().lower() for h in header}
    if "email address" in cols and cols & {"member_rating", "leid", "euid", "optin_time", "last_changed"}:
        return MAILCHIMP
    if {"uuid", "email", "attributes"} <= cols or ({"email", "name", "attributes"} == cols and "status" not in cols):
        return LISTMONK
    if "email" in cols and cols & {"email_disabled", "active_subscription"}:
        return SUBSTACK
    return None


def norm_header(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", "_").split())


def check_target(column: str, target: str) -> str:
    """``target`` when it is a mapping target; InvalidInput naming the column otherwise."""
    t = target.strip()
    if t in SINGLE_TARGETS or t in FLAG_TARGETS or t in IGNORE or (t.startswith("attr:") and t[5:].strip()):
        return t
    raise InvalidInput(f"--map {column.strip()}={target}: the field must be email, name, first_name, last_name, status, "
                       "attributes, attr:NAME, unsubscribed-if-set, bounced-if-set or - (ignore)")


def default_target(header_name: str, export_columns: set[str], fmt: KnownFormat | None = None) -> str:
    """Where a column goes when nobody said: the format's mapping, else an alias, else an attribute."""
    h = header_name.strip()
    if fmt is not None and h.lower() in fmt.mapping:
        return fmt.mapping[h.lower()]
    alias = ALIASES.get(norm_header(h))
    if alias is not None:
        return alias
    if not h or norm_header(h) in export_columns:
        return "-"
    return "attr:" + h


def suggested_mapping(header: list[str], export_columns: set[str]) -> tuple[KnownFormat | None, list[str]]:
    """The recognised format (or None) and a target for every column, in header order; a field
    (email, name…) goes to its first column only, later ones become attributes."""
    fmt = detect_format(header)
    seen: set[str] = set()
    out = []
    for h in header:
        t = default_target(h, export_columns, fmt)
        if t in SINGLE_TARGETS:
            if t in seen:
                t = "attr:" + h.strip() if h.strip() else "-"
            seen.add(t)
        out.append(t)
    return fmt, out


def joined_name(first: str, last: str) -> str:
    """First and last name as one name ("Ana" + "Silva" -> "Ana Silva")."""
    return " ".join(p for p in (first.strip(), last.strip()) if p)


def flag_set(cell: str) -> bool:
    return cell.strip().lower() not in FALSE_CELLS
