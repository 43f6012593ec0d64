"""The public archive (issue 15): a campaign is published when its flag (its own, else its lists')
says so and at least one copy was delivered; the index lists published issues newest first with
their day (in the configured zone) and summary, page by page; an unpublished campaign is a 404 by
id and absent from the index, while its readers' web version links keep working; the archive's
subscribe form posts to the one signup handler. Real campaigns sent to an outbox or a real SMTP
server (aiosmtpd), the real web app and CLI, SQLite and PostgreSQL; no mocks."""

from __future__ import annotations

import email
import json
import re
from datetime import datetime, timezone
from email import policy

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cli_runner import Result, run_main
from dispatch_helpers import SECRET, FakeDigest, add_people, make_campaign, make_config, setup_db
from smtp_server import SMTPTestServer

from newsletter.dispatch.archive import archive_index, archive_status, is_published, set_archive
from newsletter.dispatch.campaigns import cancel_campaign, get_campaign, transition
from newsletter.dispatch.sender import send_campaign
from newsletter.store import lists as store_lists
from newsletter.store import queries as q
from newsletter.store import tokens
from newsletter.store.db import transaction
from newsletter.store.secret import secret_key
from newsletter.web import create_app

BASE = "https://news.example.org"
_VIEW = re.compile(r"https://news\.example\.org/view/([A-Za-z0-9_-]+)")


@pytest.fixture
def site(db_url, tmp_path):
    """A public list 'weekly' (2 readers) and a private list 'staff' (1 reader)."""
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    add_people(engine, "weekly", 2)
    store_lists.create_list(engine, "staff", "Staff notes", public=False)
    add_people(engine, "staff", 1, start=10)
    yield engine, config
    engine.dispose()


def sent_campaign(engine, config, slugs=("weekly",), **kw):
    """A campaign sent whole to the outbox (every copy ``sent``)."""
    c = make_campaign(engine, config, slugs, **kw)
    assert send_campaign(engine, c.id, config).counts == {"sent": sum(1 for _ in _readers(engine, c.id))}
    return c


def _readers(engine, cid):
    with transaction(engine) as conn:
        return conn.execute(select(q.deliveries.c.id).where(q.deliveries.c.campaign_id == cid)).all()


def published(engine, cid) -> bool:
    with transaction(engine) as conn:
        return is_published(conn, cid)


def status(engine, cid):
    with transaction(engine) as conn:
        return archive_status(conn, cid)


def client_for(engine, config):
    return TestClient(create_app(config, engine), base_url=BASE, client=("198.51.100.7", 40000))


# --- the rule ------------------------------------------------------------------------------------


def test_the_flag_defaults_from_the_lists_and_a_campaign_overrides_it(site):
    engine, config = site
    public = sent_campaign(engine, config, subject="Public issue")
    private = sent_campaign(engine, config, ("staff",), subject="Staff issue")
    both = sent_campaign(engine, config, ("weekly", "staff"), subject="Both lists")
    assert store_lists.get_list(engine, "staff").archive is False  # a private list's default: not archived
    assert published(engine, public.id) and status(engine, public.id).reason == "published (its lists' default)"
    assert not published(engine, private.id) and "one of its lists" in status(engine, private.id).reason
    assert not published(engine, both.id)  # every list must agree; one keeps it out

    assert set_archive(engine, both.id, True).published  # the campaign's own choice wins...
    assert set_archive(engine, public.id, False).reason == "not published: set off for this campaign"
    assert not published(engine, public.id)
    assert set_archive(engine, public.id, None).published  # ...and None goes back to the lists' default
    store_lists.update_list(engine, "staff", archive=True)  # a list's default applies at once
    assert published(engine, private.id)
    issues, pages = archive_index(engine)
    assert [i.subject for i in issues] == ["Both lists", "Staff issue", "Public issue"] and pages == 1


def test_a_campaign_that_delivered_no_copy_is_never_published_even_when_flagged(site):
    engine, config = site
    started = make_campaign(engine, config, archive=True)
    with transaction(engine) as conn:
        transition(conn, started.id, "running")
    assert not published(engine, started.id)
    assert "no copy has been delivered" in status(engine, started.id).reason

    add_people(engine, "refused", 2, start=20)  # each case its own readers: a refusal or bounce takes them off
    refused = make_campaign(engine, config, ("refused",), archive=True, subject="Refused everywhere")
    with SMTPTestServer(reject=lambda addr: True) as srv:
        summary = send_campaign(engine, refused.id, config, smtp=srv.url, allow_local_links=True)
    assert summary.counts == {"failed": 2} and get_campaign(engine, refused.id).status == "finished"
    assert not published(engine, refused.id)

    add_people(engine, "bounced", 2, start=30)
    bounced = sent_campaign(engine, config, ("bounced",), archive=True, subject="Bounced everywhere")
    from newsletter.feedback.model import Bounce, BounceKind, BounceSource
    from newsletter.feedback.record import record_bounces

    with transaction(engine) as conn:
        rows = conn.execute(select(q.deliveries.c.subscriber_id, q.deliveries.c.email)
                            .where(q.deliveries.c.campaign_id == bounced.id)).all()
    assert published(engine, bounced.id)
    record_bounces(engine, [Bounce(BounceKind.HARD, BounceSource.DSN, r.email, "5.1.1", campaign_id=bounced.id,
                                   subscriber_id=r.subscriber_id, report_id=f"r{r.subscriber_id}") for r in rows[:1]])
    assert published(engine, bounced.id)  # one copy still delivered
    record_bounces(engine, [Bounce(BounceKind.HARD, BounceSource.DSN, r.email, "5.1.1", campaign_id=bounced.id,
                                   subscriber_id=r.subscriber_id, report_id=f"r{r.subscriber_id}") for r in rows[1:]])
    assert not published(engine, bounced.id)  # every copy bounced
    assert archive_index(engine)[0] == []


def test_a_cancelled_campaign_is_not_published_unless_it_says_so_and_delivered_a_copy(site):
    engine, config = site
    before = make_campaign(engine, config, archive=True)
    cancel_campaign(engine, before.id)
    assert not published(engine, before.id)  # cancelled before any send: never, whatever its flag

    partly = make_campaign(engine, config, subject="Cancelled halfway")
    # reader1 is told "try later" on every attempt: one copy sent, one deferred, then cancelled
    with SMTPTestServer(reject={"reader1@example.com"}, reject_code="451 4.7.1 try later") as srv:
        send_campaign(engine, partly.id, config, smtp=srv.url, allow_local_links=True, wait_deferred=False)
    cancel_campaign(engine, partly.id)
    c = get_campaign(engine, partly.id)
    assert c.status == "cancelled" and q_counts(engine, partly.id)["sent"] == 1
    assert not published(engine, partly.id) and "cancelled" in status(engine, partly.id).reason
    assert set_archive(engine, partly.id, True).published  # an explicit choice publishes what it sent
    from newsletter.dispatch.drafts import duplicate_campaign

    copy = duplicate_campaign(engine, partly.id)  # a copy keeps the choice, and is unpublished until it delivers
    assert get_campaign(engine, copy.id).archive is True and not published(engine, copy.id)


def q_counts(engine, cid):
    with transaction(engine) as conn:
        return q.counts_by_state(conn, cid)


# --- the pages -------------------------------------------------------------------------------------


def test_an_unpublished_campaign_is_a_404_and_not_on_the_index_but_its_web_version_works(site):
    engine, config = site
    shown = sent_campaign(engine, config, subject="Shown issue")
    c = make_campaign(engine, config, archive=False, subject="Hidden issue")
    with SMTPTestServer() as srv:
        send_campaign(engine, c.id, config, smtp=srv.url, allow_local_links=True)
        msgs = [email.message_from_bytes(m.data, policy=policy.default) for m in srv.received()]
    links = {m["To"].addresses[0].addr_spec: _VIEW.findall(m.get_body(("html",)).get_content())[0] for m in msgs}
    assert not published(engine, c.id)
    with client_for(engine, config) as client:
        index = client.get("/archive/")
        assert "Shown issue" in index.text and "Hidden issue" not in index.text
        missing = client.get("/archive/987654")
        for path in (f"/archive/{c.id}", f"/archive/{c.id}/issue", f"/archive/{c.id}/cid/x"):
            r = client.get(path)
            assert r.status_code == 404 and "Hidden issue" not in r.text
        assert client.get(f"/archive/{c.id}").text == missing.text.replace("987654", str(c.id))  # nothing to tell apart
        page = client.get(f"/view/{links['reader0@example.com']}")  # the reader's own web version
        assert page.status_code == 200 and "Hello Reader 0," in page.text
        good = links["reader1@example.com"]
        forged = [good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
                  tokens.view_token(tokens.view_key(b"another-secret-0123456789abcdef"), c.id, 2),
                  tokens.view_token(tokens.view_key(secret_key(config)), c.id, 2)[:-1],
                  tokens.open_token(secret_key(config), c.id, 2)]
        for bad in forged:
            r = client.get(f"/view/{bad}")
            assert r.status_code == 404 and "Hello" not in r.text
        assert client.get(f"/archive/{shown.id}").status_code == 200


def test_a_test_send_of_an_unpublished_draft_links_to_a_signed_anonymous_copy(site):
    engine, config = site
    from newsletter.dispatch.oneoff import send_test

    c = make_campaign(engine, config, archive=False, subject="Draft for review")
    with SMTPTestServer() as srv:
        send_test(engine, c.id, config, "editor@example.net", smtp=srv.url)
        (msg,) = [email.message_from_bytes(m.data, policy=policy.default) for m in srv.received()]
    html = msg.get_body(("html",)).get_content()
    (token,) = set(_VIEW.findall(html))
    assert "/archive/" not in html and tokens.verify_view_token(secret_key(config), token) == (c.id, 0)
    with client_for(engine, config) as client:
        page = client.get(f"/view/{token}")
        assert page.status_code == 200 and "A story about soil" in page.text and "*|" not in page.text
        assert "editor@example.net" not in page.text and "Reader" not in page.text
        assert client.get(f"/archive/{c.id}").status_code == 404


def test_the_index_is_newest_first_with_the_local_day_a_summary_and_pages(site):
    engine, config = site
    config = config.replace(timezone="Pacific/Auckland")
    ids = [sent_campaign(engine, config, subject=f"Issue {n} <b>bold</b>",
                         digest=FakeDigest(preheader=f"Hello *|FNAME|*: {n} stories about soil")).id for n in range(3)]
    with transaction(engine) as conn:  # when each started: the last one on 3 March, 23:30 UTC
        for n, cid in enumerate(ids):
            conn.execute(q.campaigns.update().where(q.campaigns.c.id == cid)
                         .values(started_at=datetime(2026, 3, 1 + n, 23, 30, tzinfo=timezone.utc)))
    issues, pages = archive_index(engine, timezone="Pacific/Auckland", per_page=2)
    assert [i.id for i in issues] == [ids[2], ids[1]] and pages == 2
    assert str(issues[0].date) == "2026-03-04"  # already the 4th in Auckland
    assert issues[0].summary == "Hello : 2 stories about soil"  # no merge tag reaches the archive
    assert [i.id for i in archive_index(engine, page=2, per_page=2)[0]] == [ids[0]]
    with client_for(engine, config) as client:
        index = client.get("/archive/")
        assert index.status_code == 200
        assert index.text.index("Issue 2") < index.text.index("Issue 1") < index.text.index("Issue 0")
        assert "<b>bold</b>" not in index.text and "Issue 2 &lt;b&gt;bold&lt;/b&gt;" in index.text
        assert 'datetime="2026-03-04"' in index.text and "2 stories about soil" in index.text
        for bad in ("0", "2", "abc", "-1"):  # one page of 3 issues: page 2 does not exist
            assert client.get(f"/archive/?page={bad}").status_code == 404
        issue = client.get(f"/archive/{ids[2]}")
        assert 'datetime="2026-03-04"' in issue.text and f'src="/archive/{ids[2]}/issue"' in issue.text
        framed = client.get(f"/archive/{ids[2]}/issue")
        assert "frame-ancestors 'self'" in framed.headers["content-security-policy"]
        assert "sandbox" in framed.headers["content-security-policy"]
        assert '<base target="_top">' in framed.text  # its links open in the whole window


def test_the_frames_base_goes_into_the_head_after_the_doctype():
    from newsletter.web.library import links_to_top

    base = '<base target="_top">'
    assert links_to_top('<!doctype html><html><head><meta charset="utf-8"></head><body>x</body></html>') == \
        f'<!doctype html><html><head>{base}<meta charset="utf-8"></head><body>x</body></html>'
    assert links_to_top("<!DOCTYPE html>\n<p>no head</p>") == f"<!DOCTYPE html>{base}\n<p>no head</p>"
    assert links_to_top("<p>neither</p>") == f"{base}<p>neither</p>"


def test_a_campaign_whose_lists_are_gone_or_went_private_leaves_the_archive(site):
    engine, config = site
    store_lists.update_list(engine, "staff", archive=True)
    staff = sent_campaign(engine, config, ("staff",), subject="Staff issue")
    weekly = sent_campaign(engine, config, subject="Public issue")
    assert published(engine, staff.id) and published(engine, weekly.id)
    store_lists.delete_list(engine, "staff")  # its campaign keeps no target list
    assert not published(engine, staff.id) and "its lists were deleted" in status(engine, staff.id).reason
    store_lists.update_list(engine, "weekly", public=False)  # going private stops publishing...
    assert not published(engine, weekly.id) and store_lists.get_list(engine, "weekly").archive is False
    store_lists.update_list(engine, "weekly", public=True)
    store_lists.update_list(engine, "weekly", public=False, archive=True)  # ...unless said in the same breath
    assert published(engine, weekly.id)


def test_the_archive_subscribe_form_posts_to_the_signup_handler(site):
    engine, config = site
    c = sent_campaign(engine, config)
    with client_for(engine, config) as client:
        for path in ("/archive/", f"/archive/{c.id}"):
            page = client.get(path).text
            forms = re.findall(r'<form method="post" action="([^"]+)"', page)
            assert forms == ["/subscribe/weekly"], path  # the public list; never the private one
            assert "staff" not in page.lower()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = client.post("/subscribe/weekly", data={"email": "new.reader@example.org", "csrf_token": token,
                                                   "website": "", "name": "", "timezone": ""})
        assert r.status_code == 200
        bad = client.post("/subscribe/weekly", data={"email": "x@example.org"})  # no token, no origin: refused
        assert bad.status_code == 403
    from newsletter.errors import NotFound
    from newsletter.store.subscribers import get_subscriber

    assert "weekly" in str(get_subscriber(engine, "new.reader@example.org").lists)
    with pytest.raises(NotFound):
        get_subscriber(engine, "x@example.org")


# --- the CLI and the API -------------------------------------------------------------------------


@pytest.fixture
def cli(db_url, tmp_path, capsys, monkeypatch):
    engine = setup_db(db_url)
    add_people(engine, "weekly", 2)
    digest_dir = tmp_path / "digest"
    from pathlib import Path

    from newsletter.compose import compose, write_digest
    from newsletter.config import Config

    write_digest(compose([str(Path(__file__).resolve().parent.parent / "articles")], Config(secret_key=SECRET)), digest_dir)

    def invoke(*args) -> Result:
        monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
        for k, v in {"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BASE_URL": BASE, "NEWSLETTER_FROM": "news@example.org",
                     "NEWSLETTER_OUTBOX": str(tmp_path / "outbox")}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)
        return run_main(monkeypatch, capsys, ["--db", db_url, *args])

    yield invoke, engine, digest_dir
    engine.dispose()


def _one_line_error(r: Result, *words: str) -> None:
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r
    for w in words:
        assert w in r.stderr, r.stderr


def test_cli_sets_the_flag_at_creation_and_after_and_refuses_bad_input(cli):
    invoke, engine, digest = cli
    r = invoke("campaigns", "create", "--from", str(digest), "--list", "weekly", "--no-archive")
    assert r.returncode == 0, r
    cid = int(r.stdout.strip().splitlines()[-1])
    assert get_campaign(engine, cid).archive is False
    r = invoke("campaigns", "show", str(cid))
    assert "archive    not published: set off for this campaign" in r.stdout
    assert invoke("send", str(cid)).returncode == 0
    assert json.loads(invoke("campaigns", "show", str(cid), "--format", "json").stdout)["archive"]["published"] is False

    r = invoke("campaigns", "update", str(cid), "--archive")
    assert r.returncode == 0 and r.stdout.strip() == f"campaign {cid}: published (set for this campaign)"
    r = invoke("campaigns", "update", str(cid), "--archive-default")
    assert r.returncode == 0 and "published (its lists' default)" in r.stdout
    assert get_campaign(engine, cid).archive is None

    before = [(c.id, c.archive) for c in map(lambda i: get_campaign(engine, i), [cid])]
    _one_line_error(invoke("campaigns", "update", "999", "--archive"), "campaign 999 does not exist")
    _one_line_error(invoke("campaigns", "update", "abc", "--archive"), "'abc'")
    _one_line_error(invoke("campaigns", "update", str(cid)), "nothing to change")
    _one_line_error(invoke("campaigns", "update", str(cid), "--no-archive", "--archive-default"), "not both")
    assert [(c.id, c.archive) for c in map(lambda i: get_campaign(engine, i), [cid])] == before
    with transaction(engine) as conn:
        assert conn.execute(select(q.campaigns.c.id)).scalars().all() == [cid]  # nothing else stored

    assert invoke("lists", "update", "weekly", "--no-archive").returncode == 0
    assert not store_lists.get_list(engine, "weekly").archive
    assert "one of its lists" in invoke("campaigns", "show", str(cid)).stdout
    r = invoke("lists", "create", "members", "--no-archive")
    assert r.returncode == 0 and "not in the archive" in r.stdout
    assert invoke("lists", "create", "team", "--private").returncode == 0
    assert store_lists.get_list(engine, "team").archive is False  # private: out of the archive by default
    _one_line_error(invoke("lists", "update", "nosuch", "--archive"), "nosuch")


def test_admin_and_api_change_the_flag(site):
    engine, config = site
    c = sent_campaign(engine, config)
    config = config.replace(base_url="http://127.0.0.1:8000")  # the session cookie is Secure behind https
    local = ("127.0.0.1", 5000)  # no admin auth configured: the admin and the API answer local requests
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=local) as admin:
        page = admin.get(f"/admin/campaigns/{c.id}").text
        assert "Published (its lists&#39; default)" in page and f'href="/archive/{c.id}">Web version</a>' in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert admin.post(f"/admin/campaigns/{c.id}/archive", data={"archive": "off"}).status_code == 403  # no CSRF
        r = admin.post(f"/admin/campaigns/{c.id}/archive", data={"archive": "off", "csrf_token": token},
                       follow_redirects=False)
        assert r.status_code == 303 and get_campaign(engine, c.id).archive is False
        r = admin.post(f"/admin/campaigns/{c.id}/archive", data={"archive": "maybe", "csrf_token": token})
        assert r.status_code == 400 and get_campaign(engine, c.id).archive is False
        page = admin.get("/admin/lists/staff").text
        assert 'name="archive" value="on" aria-describedby="archive-help">' in page  # private: unchecked
        r = admin.post("/admin/lists/staff", data={"name": "Staff notes", "description": "", "opt_in": "single",
                                                   "language": "", "archive": "on", "archive_shown": "1",
                                                   "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 303 and store_lists.get_list(engine, "staff").archive is True
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=local) as api:
        out = api.get(f"/api/campaigns/{c.id}").json()
        assert out["archive"] == {"published": False, "archive": False, "reason": "not published: set off for this campaign"}
        out = api.patch(f"/api/campaigns/{c.id}", json={"archive": None}).json()
        assert out["archive"]["published"] is True and get_campaign(engine, c.id).archive is None
        assert api.patch("/api/campaigns/99999", json={"archive": True}).status_code == 404
        assert api.patch(f"/api/campaigns/{c.id}", json={"archive": "maybe"}).status_code in (400, 422)
        assert get_campaign(engine, c.id).archive is None
        assert {x["slug"]: x["archive"] for x in api.get("/api/lists").json()} == {"weekly": True, "staff": True}
        r = api.post("/api/lists", json={"slug": "members", "archive": False})
        assert r.status_code == 201 and r.json()["archive"] is False
