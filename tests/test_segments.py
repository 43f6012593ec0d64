"""Segments on both databases: every operator on a fixed set of subscribers, the CLI (create,
count, list, show, delete and its bad input), and a campaign narrowed by a segment whose ledger
holds exactly the segment and whose copies keep the list's one-click unsubscribe."""

from __future__ import annotations

from dataclasses import astuple

from cli_runner import run_main

import json
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from dispatch_helpers import SECRET, make_config, make_campaign, setup_db
from newsletter.errors import InvalidInput, NotFound
from newsletter.store import queries as q
from newsletter.store import segment_filter as sf
from newsletter.store.lists import create_list
from newsletter.store.models import Subscriber, Subscription, utcnow
from newsletter.store.segments import create_segment, get_segment, list_segments, segment_members

NOW = utcnow()
PEOPLE = [  # email, attributes, days since subscribing, status
    ("ana@example.com", {"city": "Lisbon", "age": 42, "joined": "2024-05-01", "vip": True, "tags": ["news", "vip"]}, 10, "active"),
    ("bo@x.org", {"city": "Porto", "age": "17", "joined": "2019-12-31T08:00", "vip": "false"}, 400, "active"),
    ("cy@example.com", {"city": "Lisbon", "age": "30.5", "vip": "TRUE", "tags": "vip lounge"}, 100, "unsubscribed"),
    ("di@sub.example.com", {"city": "lisbon", "age": "n/a", "joined": "soon", "note": None}, 2, "active"),
    ("ed@x.org", {}, 800, "unconfirmed"),
]


def _people(engine, slug="weekly"):
    lid = create_list(engine, slug, slug.title()).id
    with engine.begin() as conn:
        for email, attrs, days, status in PEOPLE:
            at = NOW - timedelta(days=days)
            sid = conn.execute(insert(Subscriber.__table__).values(
                email=email, email_key=email, name=email[:2], attributes=attrs, created_at=at, updated_at=at)).inserted_primary_key[0]
            conn.execute(insert(Subscription.__table__).values(subscriber_id=sid, list_id=lid, status=status,
                                                               created_at=at, updated_at=at))
    return lid


@pytest.fixture
def people(db_url):
    engine = setup_db(db_url)
    _people(engine)
    yield engine
    engine.dispose()


CASES = [
    ({"attr": "city", "eq": "Lisbon"}, "ana cy"),  # exact: case matters
    ({"attr": "city", "ne": "Lisbon"}, "bo di ed"),  # ne includes people without the attribute
    ({"attr": "city", "in": ["Porto", "lisbon"]}, "bo di"),
    ({"attr": "age", "eq": 17}, "bo"),  # "17" from a CSV is a number
    ({"attr": "age", "gt": 20}, "ana cy"),  # 42 and "30.5"; "n/a" is not a number
    ({"attr": "age", "lt": 20}, "bo"),
    ({"attr": "age", "in": [42, 30.5]}, "ana cy"),
    ({"attr": "tags", "contains": "vip"}, "ana cy"),  # array element, or substring of a string
    ({"attr": "note", "exists": True}, ""),  # null counts as absent
    ({"attr": "joined", "exists": True}, "ana bo di"),
    ({"attr": "joined", "exists": False}, "cy ed"),
    ({"attr": "joined", "before": "2020-01-01"}, "bo"),  # "soon" is not a date
    ({"attr": "joined", "gt": "2020-01-01"}, "ana"),
    ({"attr": "joined", "lt": "2024-05-01"}, "bo"),
    ({"attr": "vip", "eq": True}, "ana cy"),  # true and "TRUE"
    ({"attr": "vip", "eq": False}, "bo"),
    ({"subscribed": {"within": "30d"}}, "ana di"),
    ({"subscribed": {"before": "365d"}}, "bo ed"),
    ({"status": {"eq": "active"}}, "ana bo di"),
    ({"status": {"in": ["unsubscribed", "unconfirmed"]}}, "cy ed"),
    ({"status": {"ne": "active"}}, "cy ed"),
    ({"domain": {"eq": "example.com"}}, "ana cy"),  # not sub.example.com
    ({"domain": {"in": ["x.org", "sub.example.com"]}}, "bo di ed"),
    ({"domain": {"ne": "x.org"}}, "ana cy di"),
    ({"all": [{"attr": "city", "eq": "Lisbon"}, {"subscribed": {"within": "365d"}}, {"attr": "age", "gt": 35}]}, "ana"),
    ({"any": [{"attr": "city", "eq": "Porto"}, {"domain": {"eq": "sub.example.com"}}]}, "bo di"),
    ({"not": {"attr": "age", "gt": 20}}, "bo di ed"),
]


@pytest.mark.parametrize("flt,expected", CASES, ids=[json.dumps(c[0]) for c in CASES])
def test_every_operator_on_both_databases(people, flt, expected):
    tree = sf.parse(json.dumps(flt))
    subs, subn = Subscriber.__table__, Subscription.__table__
    with people.connect() as conn:
        got = sorted(r[0].split("@")[0] for r in conn.execute(
            select(subs.c.email).select_from(subn.join(subs, subs.c.id == subn.c.subscriber_id))
            .where(sf.to_sql(tree, conn.dialect.name, NOW))))
    assert " ".join(got) == expected
    py = sorted(e.split("@")[0] for e, a, d, s in PEOPLE if sf.evaluate(
        tree, attributes=a, subscribed_at=NOW - timedelta(days=d), status=s, email_key=e, now=NOW))
    assert " ".join(py) == expected


@pytest.mark.parametrize("text,needle", [
    ("{}", "--all"),
    ("", "--all"),
    ('{"attr": "city"', "malformed JSON"),
    ('{"attr": "city", "like": "L%"}', "unknown operator 'like'"),
    ('{"attr": "city", "eq": "a", "ne": "b"}', "exactly one operator"),
    ('{"attr": "age", "gt": "old"}', "needs a number or a date"),
    ('{"attr": "joined", "before": "2024-02-30"}', "not a valid date"),
    ('{"attr": "x", "within": "3 days"}', "duration '3 days'"),
    ('{"attr": "x", "in": [1, "a"]}', "mixes value types"),
    ('{"attr": "x", "eq": null}', "not a string, number or boolean"),
    ('{"opened": {"before": "30d"}}', "unknown operator 'before'"),
    ('{"clicked": {"within": "soon"}}', "duration 'soon'"),
    ('{"city": "Lisbon"}', "unknown field 'city'"),
    ('{"status": {"eq": "gone"}}', "status 'gone' is unknown"),
    ('{"domain": {"eq": "%"}}', "domain '%' is invalid"),
    ('{"all": []}', "non-empty list"),
    ('{"not": {}}', "match everyone"),
    ('[1]', "expected an object"),
])
def test_bad_filters_name_the_problem(text, needle):
    with pytest.raises(InvalidInput) as e:
        sf.parse(text)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_all_flag_is_explicit_and_exclusive():
    assert isinstance(sf.parse("{}", match_all=True), sf.MatchAll)
    with pytest.raises(InvalidInput, match="not both"):
        sf.parse('{"attr": "a", "eq": 1}', match_all=True)


def test_segment_store_counts_members_and_refuses_bad_input(people):
    info = create_segment(people, "lisbon", "weekly", '{"attr": "city", "eq": "Lisbon"}')
    assert info.filter == '{"attr":"city","eq":"Lisbon"}'
    got = get_segment(people, "lisbon")
    assert (got.matching, got.mailable) == (2, 1)  # cy unsubscribed: matches, is not mailed
    assert [m["email"] for m in segment_members(people, "lisbon", 10)] == ["ana@example.com", "cy@example.com"]
    with pytest.raises(NotFound, match="list 'nope'"):
        create_segment(people, "x", "nope", '{"attr": "a", "eq": 1}')
    with pytest.raises(InvalidInput, match="segment name"):
        create_segment(people, "Bad Name", "weekly", '{"attr": "a", "eq": 1}')
    with pytest.raises(Exception, match="already exists"):
        create_segment(people, "lisbon", "weekly", '{"attr": "a", "eq": 1}')
    assert [s.name for s in list_segments(people)] == ["lisbon"]
    assert get_segment(people, "lisbon").filter == '{"attr":"city","eq":"Lisbon"}'


def test_campaign_with_segment_ledgers_only_the_segment_and_records_the_filter(db_url, tmp_path, smtp_server):
    from newsletter.dispatch.sender import send_campaign
    from newsletter.dispatch.campaigns import campaign_info

    engine = setup_db(db_url)
    _people(engine)
    create_list(engine, "other", "Other")
    create_segment(engine, "lis", "weekly",
                   '{"all": [{"attr": "city", "in": ["Lisbon", "lisbon"]}, {"status": {"ne": "bounced"}}]}')
    config = make_config(db_url, tmp_path)
    with pytest.raises(InvalidInput, match="--list weekly"):
        make_campaign(engine, config, slugs=("other",), segment="lis")
    with pytest.raises(NotFound, match="segment 'nope'"):
        make_campaign(engine, config, segment="nope")
    c = make_campaign(engine, config, segment="lis")
    assert c.meta["segment"]["name"] == "lis" and "Lisbon" in c.meta["segment"]["filter"]
    assert campaign_info(engine, c.id).audience == 2  # ana, di (cy is unsubscribed)
    # The segment changes after the campaign was made: the campaign keeps the filter it recorded.
    from newsletter.store.segments import delete_segment
    delete_segment(engine, "lis")
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    with engine.begin() as conn:
        rows = conn.execute(select(q.deliveries.c.email, q.deliveries.c.state, q.deliveries.c.list_id)
                            .where(q.deliveries.c.campaign_id == c.id).order_by(q.deliveries.c.email)).all()
    assert [(r.email, r.state) for r in rows] == [("ana@example.com", "sent"), ("di@sub.example.com", "sent")]
    assert sorted(m.rcpt_tos[0] for m in smtp_server.received()) == ["ana@example.com", "di@sub.example.com"]
    msg = smtp_server.received()[0].message()
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and "https://news.example.org" in msg["List-Unsubscribe"]
    engine.dispose()


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    """Run ``newsletter.cli.main`` in this process against a SQLite database holding PEOPLE."""

    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = setup_db(url)
    _people(engine)
    engine.dispose()

    def invoke(*args):
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
        monkeypatch.chdir(tmp_path)
        code, out, err = astuple(run_main(monkeypatch, capsys, ["--db", url, *args]))
        return code, out, err

    return invoke


def test_cli_create_count_list_show_delete(cli):
    code, out, err = cli("segments", "create", "active-lisbon", "--list", "weekly", "--where",
                         '{"all": [{"attr": "city", "eq": "Lisbon"}, {"subscribed": {"within": "365d"}}]}')
    assert code == 0, err
    assert "1 active subscriber(s) match" in out
    assert cli("segments", "count", "active-lisbon")[1].strip() == "1"
    code, out, _ = cli("segments", "create", "everyone", "--list", "weekly", "--all")
    assert code == 0 and cli("segments", "count", "everyone")[1].strip() == "3"
    listed = json.loads(cli("segments", "list", "--format", "json")[1])
    assert [(s["name"], s["mailable"], s["matching"]) for s in listed] == [("active-lisbon", 1, 2), ("everyone", 3, 5)]
    shown = json.loads(cli("segments", "show", "active-lisbon", "--members", "5", "--format", "json")[1])
    assert [m["email"] for m in shown["members"]] == ["ana@example.com", "cy@example.com"]
    assert "ana@example.com" in cli("segments", "show", "active-lisbon", "--members", "5")[1]
    assert cli("segments", "delete", "everyone")[0] == 0
    assert [s["name"] for s in json.loads(cli("segments", "list", "--format", "json")[1])] == ["active-lisbon"]


@pytest.mark.parametrize("args,needle", [
    (["--list", "weekly", "--where", "{}"], "--all"),
    (["--list", "weekly"], "--all"),
    (["--list", "weekly", "--where", '{"attr": "city"'], "malformed JSON"),
    (["--list", "weekly", "--where", '{"attr": "city", "near": "Lisbon"}'], "unknown operator 'near'"),
    (["--list", "weekly", "--where", '{"attr": "age", "gt": "old"}'], "needs a number or a date"),
    (["--list", "nope", "--where", '{"attr": "city", "eq": "Lisbon"}'], "list 'nope' does not exist"),
    (["--list", "weekly", "--all", "--where", '{"attr": "city", "eq": "Lisbon"}'], "not both"),
])
def test_cli_bad_input_one_line_nothing_stored(cli, args, needle):
    code, out, err = cli("segments", "create", "s1", *args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err
    assert json.loads(cli("segments", "list", "--format", "json")[1]) == []
    code, _, err = cli("segments", "count", "s1")
    assert code != 0 and "segment 's1' does not exist" in err


def test_admin_segments_page_lists_live_counts_and_escapes(tmp_path):
    from fastapi.testclient import TestClient

    from newsletter.config import Config
    from newsletter.web import create_app

    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = setup_db(url)
    _people(engine)
    create_segment(engine, "lisbon", "weekly", '{"attr": "city", "in": ["Lisbon", "<b>x</b>"]}')
    config = Config(database_url=url, secret_key=SECRET, base_url="http://127.0.0.1:8000")
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000)) as client:
        html = client.get("/admin/segments").text
        assert "lisbon" in html and "<td>1</td><td>2</td>" in html
        assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
        with engine.begin() as conn:  # live: one more active reader in Lisbon shows at once
            conn.execute(Subscription.__table__.update().where(Subscription.__table__.c.status == "unsubscribed")
                         .values(status="active"))
        assert "<td>2</td><td>2</td>" in client.get("/admin/segments").text
    engine.dispose()


ENGAGEMENT = {  # who did what, days ago, and as whom (only people count)
    "ana": [("open", "human", 5), ("click", "human", 5)],
    "bo": [("open", "apple-mpp", 1), ("click", "scanner", 1)],  # machines only
    "cy": [("open", "proxy", 20)],  # a Gmail reader: a person behind Google's proxy
    "di": [("open", "human", 60)],
}
BOUNCED = {"ed": 3}


@pytest.mark.parametrize("flt,expected", [
    ({"opened": {"within": "30d"}}, "ana cy"),
    ({"opened": {"within": "90d"}}, "ana cy di"),
    ({"clicked": {"within": "30d"}}, "ana"),
    ({"bounced": {"within": "7d"}}, "ed"),
    ({"not": {"opened": {"within": "30d"}}}, "bo di ed"),
    ({"all": [{"attr": "city", "eq": "Lisbon"}, {"opened": {"within": "30d"}}]}, "ana cy"),
])
def test_engagement_conditions_count_people_on_both_databases(people, flt, expected):
    from newsletter.store.bounce_models import BounceEvent
    from newsletter.store.campaign_models import Campaign
    from newsletter.store.engagement_models import EngagementEvent

    subs, subn = Subscriber.__table__, Subscription.__table__
    with people.begin() as conn:
        ids = {e.split("@")[0]: i for i, e in conn.execute(select(subs.c.id, subs.c.email))}
        cid = conn.execute(insert(Campaign.__table__).values(
            name="c", subject="s", from_address="a@example.org", html="", text="", headers={}, meta={},
            status="finished", status_reason="", created_at=NOW, updated_at=NOW)).inserted_primary_key[0]
        for who, hits in ENGAGEMENT.items():
            for kind, agent, days in hits:
                conn.execute(insert(EngagementEvent.__table__).values(
                    campaign_id=cid, subscriber_id=ids[who], kind=kind, link_idx=1 if kind == "click" else None,
                    agent=agent, why="", ip_class="", occurred_at=NOW - timedelta(days=days)))
        for who, days in BOUNCED.items():
            conn.execute(insert(BounceEvent.__table__).values(
                subscriber_id=ids[who], campaign_id=cid, recipient=who, kind="hard", reason="", source="dsn",
                report_id="r", outcome="bounced", occurred_at=NOW - timedelta(days=days), recorded_at=NOW))
    tree = sf.parse(json.dumps(flt))
    with people.connect() as conn:
        got = sorted(r[0].split("@")[0] for r in conn.execute(
            select(subs.c.email).select_from(subn.join(subs, subs.c.id == subn.c.subscriber_id))
            .where(sf.to_sql(tree, conn.dialect.name, NOW))))
    assert " ".join(got) == expected

    def events(who):
        out: dict = {"opened": [], "clicked": [], "bounced": []}
        for kind, agent, days in ENGAGEMENT.get(who, []):
            if (kind == "open" and agent in sf.OPEN_AGENTS) or (kind == "click" and agent == "human"):
                out["opened" if kind == "open" else "clicked"].append(NOW - timedelta(days=days))
        if who in BOUNCED:
            out["bounced"].append(NOW - timedelta(days=BOUNCED[who]))
        return out

    py = sorted(e.split("@")[0] for e, a, d, s in PEOPLE if sf.evaluate(
        tree, attributes=a, subscribed_at=NOW - timedelta(days=d), status=s, email_key=e, now=NOW,
        events=events(e.split("@")[0])))
    assert " ".join(py) == expected
