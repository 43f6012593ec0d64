"""The web app's calls into the library (store, compose, dispatch, schedule), in one place.

Each function calls library functions and returns plain data for a page or a JSON answer;
none of them decides anything the library should decide.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..errors import DispatchError, InvalidInput, NewsletterError, NotFound, StateError  # noqa: F401  (re-exported for the routers)
from ..i18n import N_
from ..store.models import SUBSCRIPTION_STATUSES
from . import preview as pv

log = logging.getLogger("newsletter.web")


def _secret(st) -> bytes:
    from ..store.secret import secret_key

    return secret_key(st.config)


# --- public ------------------------------------------------------------------------------------


def public_list(st, slug: str):
    """The list a signup form is for; NotFound (404) for an unknown or malformed slug (naming no
    other list: the store's message lists the known ones, which is for the admin, not the public)."""
    from ..store.lists import get_list

    try:
        lst = get_list(st.engine, slug)
    except (InvalidInput, NotFound):
        lst = None
    if lst is None or not lst.public:  # a private list has no signup page: the same 404 as no list at all
        raise NotFound(N_("there is no list %(slug)s here", slug=repr(slug[:64])))
    return lst


def normalize_address(email: str) -> str:
    from ..store.addresses import normalize_email

    return normalize_email(email)[0]


def check_name(name: str) -> str:
    """The name from the signup form, or InvalidInput when it holds a control character."""
    from ..store.textrules import check_reader_name

    return check_reader_name(name)


def check_signup_timezone(name: str) -> str:
    """The signup form's hidden time zone when zoneinfo knows it ("" when the browser sent none);
    InvalidInput naming it otherwise (store/preferences.py holds the check)."""
    from ..store.preferences import check_timezone

    try:
        return check_timezone(name[:200])
    except InvalidInput:
        raise InvalidInput(f"time zone {name[:64]!r}: unknown (expected an IANA name such as Europe/Paris)") from None


def subscribe(st, lst, address: str, name: str, timezone: str = "") -> bool:
    """Queue a signup from the public form; the visitor sees the same answer whatever happens.

    Everything that depends on who the address belongs to — the database work and the email —
    runs later on the app's mailer thread (``signup_job``), so the answer takes the same time for
    every address. The rule itself is the store's (store/signup.py). False if the queue is full."""
    return st.mailer.submit(lambda: signup_job(st, lst, address, name, timezone), f"signup for list {lst.slug}")


def signup_job(st, lst, address: str, name: str, timezone: str = "") -> bool:
    """Apply the signup rule and send the confirmation email it asks for (on the mailer thread);
    True when an email went out."""
    from ..store.optin import Invitation, mail_confirmation
    from ..store.signup import request_signup, signup_url

    try:
        plan = request_signup(st.engine, lst.slug, address, name, timezone=timezone)
    except (StateError, NotFound, InvalidInput) as e:
        log.info("signup for %s not changed: %s", lst.slug, e)
        return False
    if plan.mail == "none":
        return False
    url = signup_url(st.config, plan, secret=_secret(st))
    try:
        mail_confirmation(st.engine, st.config, _confirmation_sender(st),
                          Invitation(plan.subscriber_id, plan.list_id, plan.email, plan.name, lst.name, url))
    except NewsletterError as e:  # the mail server refused it, or the confirm template is broken
        # The visitor got the usual answer (a refusal must not tell whether an address exists);
        # sending the form again sends a fresh confirmation.
        log.error("confirmation email for list %s not sent: %s", lst.slug, e)
        return False
    return True


def _confirmation_sender(st):
    """Confirmation emails go through the dispatcher's one-off path (the configured SMTP server,
    or the outbox), marked as automatic so that auto-responders stay quiet."""
    from ..dispatch.oneoff import send_one

    return lambda to, subject, html, text: send_one(st.config, to, subject, html, text, headers={"Auto-Submitted": "auto-generated"})


def peek_confirm(st, token: str):
    from ..store.signup import peek_link

    return peek_link(st.engine, _secret(st), token)


def confirm(st, token: str, ip_class: str = ""):
    """Use a /confirm/ link; ``ip_class`` (the class of the visitor's network) goes with the consent."""
    from ..store.signup import confirm_link

    return confirm_link(st.engine, _secret(st), token, ip_class=ip_class or None)


def peek_unsubscribe(st, token: str):
    """The subscription a link is for, and the person's other lists they could leave too."""
    from ..store.leaving import unsubscribe_choices

    return unsubscribe_choices(st.engine, _secret(st), token)


def unsubscribe_one_click(st, token: str):
    from ..store.leaving import unsubscribe_by_token

    return unsubscribe_by_token(st.engine, _secret(st), token)


def unsubscribe_chosen(st, token: str, chosen_ids: list[str]):
    """Leave the token's list and/or the chosen other lists of the same person."""
    from ..store.leaving import unsubscribe_chosen as store_unsubscribe_chosen

    return store_unsubscribe_chosen(st.engine, _secret(st), token, chosen_ids)


# --- admin: subscribers and lists -------------------------------------------------------------

STATUSES = SUBSCRIPTION_STATUSES  # for the admin pages' status filter


def all_lists(st):
    from ..store.lists import list_lists

    return list_lists(st.engine)


def create_list(st, slug: str, name: str | None, description: str, opt_in: str, archive: bool | None = None):
    from ..store.lists import create_list as store_create_list

    return store_create_list(st.engine, slug, name, description=description, opt_in=opt_in, archive=archive)


def search_subscribers(st, *, q: str = "", list_slug: str = "", status: str = "", offset: int = 0, limit: int = 50):
    from ..store.subscribers import list_subscribers

    return list_subscribers(st.engine, list_slug=list_slug or None, status=status or None, search=q or None,
                            offset=offset, limit=limit)


def admin_add_subscriber(st, email: str, name: str, list_slug: str, resubscribe: bool, attributes: dict | None = None):
    from ..store.subscribers import add_subscriber

    return add_subscriber(st.engine, email, list_slug=list_slug or None, name=name or None, attributes=attributes,
                          source="admin", resubscribe=resubscribe)


def stats(st) -> dict:
    """Counts for the dashboard and /api/stats."""
    from ..store.subscribers import list_subscribers

    lists = all_lists(st)
    subscriptions = {s: sum(l.counts.get(s, 0) for l in lists) for s in STATUSES}
    return {
        "subscribers": list_subscribers(st.engine, limit=1).total,
        "lists": len(lists),
        "subscriptions": subscriptions,
        "campaigns": campaign_counts(st),
    }


def admin_unsubscribe(st, email: str, list_slug: str | None) -> list[str]:
    from ..store.leaving import unsubscribe

    return unsubscribe(st.engine, email, list_slug)


def get_subscriber(st, email: str):
    from ..store.subscribers import get_subscriber as store_get_subscriber

    return store_get_subscriber(st.engine, email)


def subscriber_detail(st, email: str):
    """One person for their admin page: their row (lists and status, attributes, consent) and
    their bounce and complaint history, newest first."""
    from ..feedback.record import list_bounces

    row = get_subscriber(st, email)
    return row, list_bounces(st.engine, email=row.email, limit=100)


def admin_erase(st, email: str, suppress: bool):
    from ..store.leaving import erase_subscriber

    return erase_subscriber(st.engine, email, suppress_address=suppress)


def admin_import(st, fileobj, filename: str, list_slug: str, resubscribe: bool):
    """Run the CLI's importer on an uploaded file (copied to a private temporary folder first)."""
    import shutil
    import tempfile
    from pathlib import Path

    from ..store.importer import ImportOptions, import_file

    suffix = Path(filename).suffix.lower()
    if suffix not in (".csv", ".jsonl", ".txt"):
        raise InvalidInput(f"{filename}: import takes a .csv or .jsonl file")
    with tempfile.TemporaryDirectory(prefix="newsletter-import-") as tmp:
        path = Path(tmp) / ("upload" + (suffix if suffix != ".txt" else ".csv"))
        with open(path, "wb") as out:
            shutil.copyfileobj(fileobj, out, 1 << 20)
        opts = ImportOptions(list_slug=list_slug, resubscribe=resubscribe, source=f"import:{Path(filename).name}",
                             rejects_path=Path(tmp) / "rejects.csv")
        report = import_file(st.engine, path, opts)
    report.path = Path(filename).name
    report.rejects_path = None  # the temporary file is gone; the page lists the rejects
    return report


# --- admin: campaigns -------------------------------------------------------------------------


def campaign_counts(st) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in recent_campaigns(st, limit=10**9):
        out[c.status] = out.get(c.status, 0) + 1
    return out


def recent_campaigns(st, limit: int = 50) -> list[Any]:
    """Campaigns, newest first, with their ledger counts."""
    from ..dispatch.campaigns import list_campaigns

    return list_campaigns(st.engine, limit=limit)


def campaign(st, campaign_id: int):
    from ..dispatch.campaigns import campaign_info

    return campaign_info(st.engine, campaign_id)


def progress(info) -> dict:
    """The numbers a campaign page shows (``dispatch.progress.ledger_progress``)."""
    from ..dispatch.progress import ledger_progress

    return ledger_progress(info.counts, audience=info.audience).as_dict()


def campaign_action(st, campaign_id: int, action: str):
    from ..dispatch import campaigns

    fn = {"pause": campaigns.pause_campaign, "resume": campaigns.resume_campaign, "cancel": campaigns.cancel_campaign}.get(action)
    if fn is None:
        raise NotFound(f"unknown campaign action {action!r} (pause, resume or cancel)")
    return fn(st.engine, campaign_id)


def schedule_campaign(st, campaign_id: int, when: str):
    """Schedule a draft for ``when`` (local time in the configured time zone, or ISO 8601 with an
    offset) through the scheduler, which applies the DST rules and refuses times in the past."""
    from ..schedule.oneoff import schedule_campaign_at

    return schedule_campaign_at(st.engine, campaign_id, when, st.config.timezone)


def recurring_digests(st) -> list[Any]:
    """The scheduled recurring digests, for the campaigns page."""
    from ..schedule.digests import list_digests

    return list_digests(st.engine)


def digest_action(st, name: str, action: str):
    from ..schedule import digests

    fn = {"pause": digests.pause_digest, "resume": digests.resume_digest}.get(action)
    if fn is None:
        raise NotFound(f"unknown digest action {action!r} (pause or resume)")
    return fn(st.engine, name)


def set_campaign_archive(st, campaign_id: int, archive: bool | None):
    """Set a campaign's own archive flag (None: its lists decide); the new verdict."""
    from ..dispatch.archive import set_archive

    return set_archive(st.engine, campaign_id, archive)


def archive_page(st, page: int) -> tuple[list[Any], int]:
    """One page of the public archive index (dispatch/archive.py decides what is published)."""
    from ..dispatch.archive import archive_index

    return archive_index(st.engine, page=page, timezone=st.config.timezone)


def archive_lists(st, campaign_id: int | None = None) -> list[Any]:
    """The public lists the archive's subscribe form offers (an issue's own, or every archived one)."""
    from ..dispatch.archive import archive_lists as lists_of

    return lists_of(st.engine, campaign_id)


def _archived(st, campaign_id: int):
    from ..dispatch.archive import published_campaign

    return published_campaign(st.engine, campaign_id)


def archive_issue(st, campaign_id: int) -> dict:
    """A published issue's subject and day (in the configured zone) for its archive page; NotFound otherwise."""
    from ..dispatch.archive import local_day

    c = _archived(st, campaign_id)
    return {"id": c.id, "subject": c.subject, "date": local_day(c.started_at, st.config.timezone)}


def archive_html(st, campaign_id: int, page_url: str) -> str:
    """A sent issue's HTML with neutral values in the merge tags: no name, no address, and the
    unsubscribe link pointing at this page instead of carrying anyone's token. Links open in the
    whole window (the archive page shows it in a frame)."""
    c = _archived(st, campaign_id)
    html = pv.fill_merge_tags(c.html, html=True, email="you", name="", unsubscribe_url=page_url, web_version_url=page_url)
    return links_to_top(html).replace('src="cid:', f'src="/archive/{c.id}/cid/')


def links_to_top(html: str) -> str:
    """``html`` with ``<base target="_top">`` in its head: after the doctype, never before it (a
    page with anything before its doctype is parsed in quirks mode)."""
    html, n = re.subn(r"(<head\b[^>]*>)", r'\1<base target="_top">', html, count=1, flags=re.IGNORECASE)
    if n:
        return html
    return re.sub(r"^(\s*<!doctype[^>]*>)?", lambda m: m.group(0) + '<base target="_top">', html, count=1,
                  flags=re.IGNORECASE)


def archive_image(st, campaign_id: int, cid: str) -> tuple[str, bytes]:
    c = _archived(st, campaign_id)
    for image in campaign_images(st, c.id):
        if image.cid == cid:
            return image.content_type, image.data
    raise NotFound(f"issue {campaign_id} has no image {cid!r}")


def campaign_images(st, campaign_id: int) -> list[Any]:
    from ..dispatch.campaigns import campaign_images as dispatch_campaign_images

    return dispatch_campaign_images(st.engine, campaign_id)


def campaign_preview(st, campaign_id: int) -> pv.PreviewDoc:
    """A campaign's frozen snapshot, shown like a freshly composed digest."""
    from ..dispatch.campaigns import get_campaign, stored_id

    c = get_campaign(st.engine, campaign_id)
    cid = stored_id(c)
    doc = pv.PreviewDoc(
        label=f"campaign {c.id} ({c.status})", subject=c.subject, preheader=c.preheader or "", html=c.html, text=c.text,
        from_address=c.from_address, html_size=len(c.html.encode("utf-8")), campaign_id=c.id,
        images={i.cid: (i.content_type, i.data) for i in campaign_images(st, cid)},
    )
    doc.warnings = pv.check_html(doc)
    return doc


def find_digest(st, *, name: str | None = None, digest_id: int | None = None):
    """A stored recurring digest (schedule.digests.DigestInfo) by name or id; NotFound otherwise."""
    for info in recurring_digests(st):
        if info.digest.name == name or (digest_id is not None and info.digest.id == digest_id):
            return info
    raise NotFound(f"there is no recurring digest {name if name is not None else digest_id!r}")


def digest_preview(st, info, *, refresh: bool = False) -> pv.PreviewDoc:
    """A stored digest's next occurrence as the worker would compose it (its own sources, template,
    subject and selection, only articles not sent before), cached until a local source or the
    template changes, the digest runs or changes, or ``refresh`` (which fetches feeds again)."""
    from ..schedule.cron import get_zone
    from ..schedule.occurrences import preview_digest

    d = info.digest
    local = [s for s in d.sources if "://" not in s] + ([d.template_dir] if d.template_dir else [])
    key = (pv.fingerprint(local), d.updated_at, d.last_run_at, d.articles_sent, d.next_run_at)
    cache = st.preview_cache.setdefault("digests", {})
    hit = cache.get(d.id)
    if hit is not None and hit[0] == key and not refresh:
        return hit[1]
    label = f"recurring digest {d.name}"
    try:
        p = preview_digest(st.engine, st.config, d.name)
    except NewsletterError as e:
        doc = pv.PreviewDoc(label=label, subject="", preheader="", html="", text="", error=str(e))
    else:
        when = p.when.astimezone(get_zone(p.timezone))
        label = f"recurring digest {d.name}, occurrence {when:%Y-%m-%d %H:%M %Z}"
        if p.digest is None:
            doc = pv.PreviewDoc(label=label, subject="", preheader="", html="", text="",
                                error=p.problem or "nothing to show", warnings=p.warnings)
        else:
            p.digest.warnings = ([p.problem] if p.problem else []) + p.warnings
            from ..compose.templates import resolve_template_dir

            doc = pv.from_digest(p.digest, label, campaign_id=None,
                                 template_dir=resolve_template_dir(d.template_dir or st.config.template_dir))
    cache[d.id] = (key, doc)
    return doc


def test_send(st, doc: pv.PreviewDoc, to: str, campaign_id: int | None) -> str:
    """Send the previewed digest to one address: a campaign through the dispatcher's test send,
    a digest composed from the sources through its one-off send (sample merge values)."""
    from ..dispatch.oneoff import send_one

    if campaign_id is not None:
        return test_send_campaign(st, campaign_id, to)[0]
    address = normalize_address(to)
    from ..compose import embed_relative_assets

    digest = embed_relative_assets(doc.digest)  # thumbnails travel as CID parts, as in a campaign
    values: pv.MergeValues = {**pv.SAMPLE, "email": address}
    html = pv.fill_merge_tags(digest.html, html=True, **values)
    text = pv.fill_merge_tags(digest.text, html=False, **values)
    send_one(st.config, address, f"[TEST] {doc.subject}", html, text, images=digest.images)
    return address


def test_send_campaign(st, campaign_id: int, to: str) -> tuple[str, list[str]]:
    """Send a campaign's test to one address through the dispatcher (one copy per variant of an
    A/B test); returns the address and the variants' letters sent ([] for an ordinary campaign)."""
    from ..dispatch.oneoff import send_test_copies

    address = normalize_address(to)
    sent = send_test_copies(st.engine, campaign_id, st.config, address)
    return address, [r.variant for r in sent if r.variant]


def suppressions(st) -> list:
    """Every suppression entry, newest first, with the reason it was added (bounce, complaint, by hand)."""
    from ..store.suppressions import list_suppressions

    return list_suppressions(st.engine)
