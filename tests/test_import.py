"""Importing subscribers: formats, encodings, malformed files, consent rules, duplicates,
and an import killed mid-way that a second run completes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from newsletter.errors import InvalidInput, NotFound
from newsletter.store import db, lists
from newsletter.store import subscribers as S
from newsletter.store import leaving
from newsletter.store import suppressions as supp
from newsletter.store.addresses import AddressError, _slow, normalize_email
from newsletter.store.importer import ImportOptions, check_file, import_file
from newsletter.store.models import Subscriber, Subscription
from store_support import _pg_template, _sqlite_template, migrated_pg_url, migrated_sqlite_url, migrated_url  # noqa: F401

REPO = Path(__file__).parent.parent
SAMPLE = REPO / "subscribers" / "sample.csv"


@pytest.fixture
def engine(migrated_url):
    e = db.get_engine(migrated_url)
    lists.create_list(e, "weekly", "Weekly")
    yield e
    e.dispose()


@pytest.fixture(params=["reader thread", "reader process"])
def both_readers(request, monkeypatch):
    """Run the test with the file read in a thread (small files) and in a child process (large ones)."""
    from newsletter.store import importer

    monkeypatch.setattr(importer, "READER_PROCESS_MIN_ROWS", 0 if request.param == "reader process" else 10**9)
    return request.param


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return p


def counts(engine):
    # One statement, so one snapshot even while another process is importing.
    q = select(
        select(func.count()).select_from(Subscriber).scalar_subquery(),
        select(func.count(func.distinct(func.lower(Subscriber.email)))).scalar_subquery(),
        select(func.count()).select_from(Subscription).scalar_subquery(),
    )
    with engine.connect() as c:
        subs, keys, memberships = c.execute(q).one()
    assert subs == keys, "two subscriber rows for one address"
    return subs, memberships


def statuses(engine, slug="weekly"):
    return {r.email.lower(): r.status for r in S.iter_subscribers(engine, list_slug=slug)}


# ---------------------------------------------------------------- the sample file


@pytest.mark.usefixtures("both_readers")
def test_sample_file_report_and_rejects(engine, tmp_path):
    src = tmp_path / "sample.csv"
    src.write_bytes(SAMPLE.read_bytes())
    r = import_file(engine, src, ImportOptions(list_slug="weekly"))
    assert (r.read, r.added, r.duplicates_in_file, r.recorded_unsubscribed, r.invalid) == (50, 41, 3, 1, 5)
    assert [x.line for x in r.rejects] == [47, 48, 49, 50, 51]
    with open(tmp_path / "sample.rejects.csv", newline="", encoding="utf-8") as f:
        rejects = list(csv.DictReader(f))
    assert [x["line"] for x in rejects] == ["47", "48", "49", "50", "51"] and rejects[0]["email"] == "not-an-address"
    st_ = statuses(engine)
    assert st_["oscar.lind@example.org"] == "unsubscribed" and st_["ana.silva@example.com"] == "active"
    assert S.get_subscriber(engine, "ines.ferreira@example.net").attributes == {"city": "Coimbra"}

    again = import_file(engine, src, ImportOptions(list_slug="weekly"))
    assert (again.added, again.already_present, again.skipped_unsubscribed) == (0, 41, 1)
    assert counts(engine) == (42, 42)


# ---------------------------------------------------------------- formats and encodings


def test_utf8_bom_header_aliases_and_attributes(engine, tmp_path):
    p = write(tmp_path, "bom.csv", "\ufeffE-mail,Full Name,Plan\r\nzoe@example.com,Zoë Müller,pro\r\n")
    r = import_file(engine, p, ImportOptions(list_slug="weekly"))
    assert r.added == 1
    row = S.get_subscriber(engine, "zoe@example.com")
    assert row.name == "Zoë Müller" and row.attributes == {"Plan": "pro"}


@pytest.mark.usefixtures("both_readers")
def test_other_encodings_need_encoding_flag(engine, tmp_path):
    p = write(tmp_path, "latin.csv", "email,name\na@example.com,Ana\nb@example.com,Inês Ferreira\n", "latin-1")
    with pytest.raises(InvalidInput, match=r"line 3: cannot decode byte 0xea.*--encoding"):
        import_file(engine, p, ImportOptions(list_slug="weekly"))
    assert counts(engine) == (0, 0)
    import_file(engine, p, ImportOptions(list_slug="weekly", encoding="latin-1"))
    assert S.get_subscriber(engine, "b@example.com").name == "Inês Ferreira"


def test_rejects_file_is_spreadsheet_safe(engine, tmp_path):
    p = write(tmp_path, "in.csv", 'email\n"=HYPERLINK(""http://example.com"")"\n')
    import_file(engine, p, ImportOptions(list_slug="weekly"))
    with open(tmp_path / "in.rejects.csv", newline="", encoding="utf-8") as f:
        [row] = list(csv.DictReader(f))
    assert row["email"].startswith("'=HYPERLINK")
    elsewhere = str(tmp_path / "rejects-elsewhere.csv")  # a str path is fine too
    r = import_file(engine, p, ImportOptions(list_slug="weekly", rejects_path=elsewhere))
    assert r.rejects_path == elsewhere and Path(elsewhere).exists()


@pytest.mark.usefixtures("both_readers")
def test_jsonl_with_attributes_and_status(engine, tmp_path):
    p = write(tmp_path, "people.jsonl",
              '{"email": "a@example.com", "name": "Ana", "age": 31, "tags": ["x"]}\n\n'
              '{"email": "b@example.com", "status": "unsubscribed"}\n'
              '{"email": "nope"}\n')
    r = import_file(engine, p, ImportOptions(list_slug="weekly"))
    assert (r.added, r.recorded_unsubscribed, r.invalid) == (1, 1, 1) and r.rejects[0].line == 4
    assert S.get_subscriber(engine, "a@example.com").attributes == {"age": 31, "tags": ["x"]}


def test_map_renames_and_ignores_columns(engine, tmp_path):
    p = write(tmp_path, "crm.csv", "Contact,Who,Internal id,Town\na@example.com,Ana,77,Porto\n")
    import_file(engine, p, ImportOptions(list_slug="weekly", mapping={"Contact": "email", "who": "name", "Internal id": "-", "Town": "attr:city"}))
    row = S.get_subscriber(engine, "a@example.com")
    assert row.name == "Ana" and row.attributes == {"city": "Porto"}
    with pytest.raises(InvalidInput, match="not in the header"):
        check_file(p, ImportOptions(list_slug="weekly", mapping={"Mail": "email"}))


# ---------------------------------------------------------------- malformed files change nothing


@pytest.mark.parametrize("text, problem", [
    ('email,name\na@example.com,Ana\nb@example.com,"Bob\nc@example.com,Cy\n', "unbalanced quote|malformed CSV"),
    ("email;name\na@example.com;Ana\n", "wrong delimiter\\? pass --delimiter ';'"),
    ("address,name\na@example.com,Ana\n", "no email column"),
    ("email,name\na@example.com,Ana,extra\n", "line 22: 3 fields where the header has 2"),
    ("", "empty"),
])
def test_malformed_csv_is_one_line_error_and_stores_nothing(engine, tmp_path, text, problem):
    S.add_subscriber(engine, "kept@example.com", list_slug="weekly")
    p = write(tmp_path, "bad.csv", "email,name\n" + "\n".join(f"r{i}@example.com,R" for i in range(20)) + "\n" + text[len("email,name\n"):] if text.startswith("email,name\n") else text)
    with pytest.raises(InvalidInput, match=problem) as e:
        import_file(engine, p, ImportOptions(list_slug="weekly", batch_size=5))
    assert "\n" not in str(e.value)
    assert counts(engine) == (1, 1)


@pytest.mark.usefixtures("both_readers")
def test_bad_json_lines_are_rejected_and_the_rest_imports(engine, tmp_path):
    good = [f'{{"email": "p{i}@example.com"}}' for i in range(6)]
    lines = good[:3] + ["not json", '["list"]'] + good[3:5] + ['{"email": "b@example.com"', "42"] + good[5:]
    p = write(tmp_path, "people.jsonl", "\n".join(lines) + "\n")
    r = import_file(engine, p, ImportOptions(list_slug="weekly", batch_size=2))
    assert (r.read, r.added, r.invalid) == (10, 6, 4)
    assert [(x.line, x.email) for x in r.rejects] == [(4, "not json"), (5, '["list"]'), (8, '{"email": "b@example.com"'), (9, "42")]
    assert r.rejects[0].reason.startswith("invalid JSON") and r.rejects[1].reason == "not a JSON object (a JSON array)"
    assert r.rejects[3].reason == "not a JSON object (a JSON number)"
    with open(tmp_path / "people.rejects.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(x["line"], x["email"]) for x in rows] == [("4", "not json"), ("5", '["list"]'), ("8", '{"email": "b@example.com"'), ("9", "42")]
    assert counts(engine) == (6, 6)


@pytest.mark.parametrize("first", ["email,name", '["a@example.com"]', "{oops"])
def test_jsonl_file_whose_first_line_is_not_an_object_is_refused_up_front(engine, tmp_path, first):
    p = write(tmp_path, "x.jsonl", "\n" + first + '\n{"email": "a@example.com"}\n')
    with pytest.raises(InvalidInput, match=r"line 2: .*not a JSON Lines file") as e:
        import_file(engine, p, ImportOptions(list_slug="weekly"))
    assert "\n" not in str(e.value)
    assert counts(engine) == (0, 0) and not (tmp_path / "x.rejects.csv").exists()


def test_missing_list_and_missing_file(engine, tmp_path):
    p = write(tmp_path, "ok.csv", "email\na@example.com\n")
    with pytest.raises(NotFound, match="list 'daily' does not exist"):
        import_file(engine, p, ImportOptions(list_slug="daily"))
    with pytest.raises(InvalidInput, match="file not found"):
        import_file(engine, tmp_path / "missing.csv", ImportOptions(list_slug="weekly"))


# ---------------------------------------------------------------- consent


@pytest.mark.usefixtures("both_readers")
def test_unsubscribed_and_suppressed_are_never_re_added(engine, tmp_path):
    S.add_subscriber(engine, "left@example.com", list_slug="weekly", name="Left")
    leaving.unsubscribe(engine, "left@example.com")
    supp.suppress(engine, "blocked@example.com")
    supp.suppress(engine, "example.net")
    p = write(tmp_path, "in.csv", "email,name\nLEFT@example.com,New Name\nblocked@example.com,\nx@example.net,\nnew@example.com,\n")
    r = import_file(engine, p, ImportOptions(list_slug="weekly"))
    assert (r.added, r.skipped_unsubscribed, r.skipped_suppressed) == (1, 1, 2)
    assert statuses(engine) == {"left@example.com": "unsubscribed", "new@example.com": "active"}
    assert S.get_subscriber(engine, "left@example.com").name == "Left"  # data of someone who left is untouched

    r = import_file(engine, p, ImportOptions(list_slug="weekly", resubscribe=True))
    assert (r.resubscribed, r.skipped_suppressed) == (1, 2)
    assert statuses(engine)["left@example.com"] == "active"
    with pytest.raises(NotFound):
        S.get_subscriber(engine, "blocked@example.com")


def test_double_opt_in_list_imports_unconfirmed(engine, tmp_path):
    lists.create_list(engine, "news", opt_in="double")
    p = write(tmp_path, "in.csv", "email\na@example.com\nb@example.com\n")
    r = import_file(engine, p, ImportOptions(list_slug="news"))
    assert (r.added, r.unconfirmed) == (2, 2)
    assert set(statuses(engine, "news").values()) == {"unconfirmed"}


@pytest.mark.usefixtures("both_readers")
def test_duplicates_across_batches_are_merged(engine, tmp_path):
    rows = [f"user{i % 7}@example.com" if i % 2 else f"USER{i % 7}@EXAMPLE.COM" for i in range(40)]
    p = write(tmp_path, "dups.csv", "email,n\n" + "\n".join(f"{a},{i}" for i, a in enumerate(rows)) + "\n")
    r = import_file(engine, p, ImportOptions(list_slug="weekly", batch_size=3))
    assert r.added == 7 and r.read == 40
    assert counts(engine) == (7, 7)


@pytest.mark.usefixtures("both_readers")
def test_an_unwritable_rejects_file_is_a_one_line_error(engine, tmp_path):
    p = write(tmp_path, "in.csv", "email\nok@example.com\nnot-an-address\n")
    with pytest.raises(InvalidInput, match=r"missing/r\.csv: cannot write the rejects file"):
        import_file(engine, p, ImportOptions(list_slug="weekly", rejects_path=tmp_path / "missing" / "r.csv"))


def test_a_reader_process_that_dies_is_a_one_line_error_not_a_hang(engine, tmp_path):
    from newsletter.errors import NewsletterError

    broken = [sys.executable, "-c", "raise SystemExit('reader cannot start: broken install')"]
    p = write(tmp_path, "in.csv", "email\nok@example.com\n")
    with pytest.raises(NewsletterError, match=r"in\.csv: the import stopped: .*exit code 1\): reader cannot start"):
        import_file(engine, p, ImportOptions(list_slug="weekly"), reader_process=True, reader_command=broken)
    assert counts(engine) == (0, 0)


@pytest.mark.usefixtures("both_readers")
def test_later_rows_win_across_batches_even_when_two_are_written_at_once(engine, tmp_path):
    rows = [f"p{i % 5}@example.com,Name {i}," for i in range(30)]  # everyone in adjacent and distant batches
    rows += ["p0@example.com,,unsubscribed"] + [f"new{i}@example.com,New {i}," for i in range(6)] + ["P0@EXAMPLE.COM,Back,"]
    p = write(tmp_path, "in.csv", "email,name,status\n" + "\n".join(rows) + "\n")
    r = import_file(engine, p, ImportOptions(list_slug="weekly", batch_size=2))
    assert {k: S.get_subscriber(engine, f"p{k}@example.com").name for k in range(5)} == {k: f"Name {25 + k}" for k in range(5)}
    assert statuses(engine) == {"p0@example.com": "unsubscribed", **{f"p{k}@example.com": "active" for k in range(1, 5)},
                                **{f"new{i}@example.com": "active" for i in range(6)}}
    assert (r.added, r.recorded_unsubscribed, r.skipped_unsubscribed) == (11, 1, 1)
    assert counts(engine) == (11, 11)


def test_for_postgresql_the_reader_never_puts_one_person_in_two_adjacent_batches(tmp_path):
    from newsletter.store.import_batches import _Batch, _produce

    names = [f"p{i % 7}@example.com,Name {i}" for i in range(60)] + ["p3@example.com,Last"]
    p = write(tmp_path, "in.csv", "email,name\n" + "\n".join(names) + "\n")
    out = []
    _produce(p, ImportOptions(list_slug="weekly", batch_size=3), "csv", tmp_path / "r.csv", lambda x: out.append(x) or True, copy=True)
    batches = [b for b in out if isinstance(b, _Batch)]
    keys = [{r[1] for r in b.rows} for b in batches]
    assert all(a.isdisjoint(b) for a, b in zip(keys, keys[1:])), "adjacent batches share a person"
    last = {}
    for b in batches:  # applied in order, each person's last value is the file's last one
        last.update({r[1]: r[2] for r in b.rows})
    assert last == dict(line.split(",") for line in names)
    assert out[-1] is None and sum(len(b.rows) for b in batches) >= 7


def test_postgresql_writes_two_batches_at_once_but_never_two_that_share_a_person(migrated_pg_url, tmp_path):
    import contextlib
    import threading

    engine = db.get_engine(migrated_pg_url)
    lists.create_list(engine, "weekly")
    changed = threading.Condition()
    in_flight: list[set[str]] = []
    entered: list[set[str]] = []
    clashes: list[tuple[set[str], set[str]]] = []
    most_at_once = [0]

    @contextlib.contextmanager
    def around_write(keys):
        """Each batch stays in its write until the next batch starts writing (bounded, for when the
        importer rightly waits for this one): a batch sharing a person that wrongly started beside
        it is then always caught in flight, however fast the machine."""
        mine = set(keys)
        with changed:
            clashes.extend((other, mine) for other in in_flight if other & mine)
            in_flight.append(mine)
            entered.append(mine)
            most_at_once[0] = max(most_at_once[0], len(in_flight))
            number = len(entered)
            changed.notify_all()
        try:
            yield
            with changed:
                changed.wait_for(lambda: len(entered) > number, timeout=2)
        finally:
            with changed:
                in_flight.remove(mine)

    emails = [f"a{i}@example.com" for i in range(8)] + ["a7@example.com", "b1@example.com"] + [f"c{i}@example.com" for i in range(6)]
    p = write(tmp_path, "in.csv", "email\n" + "\n".join(emails) + "\n")
    # The thread reader: it flags a batch sharing a person with the one before, never moves rows.
    r = import_file(engine, p, ImportOptions(list_slug="weekly", batch_size=2), reader_process=False, around_write=around_write)
    assert (r.added, r.already_present) == (15, 1) and counts(engine) == (15, 15)
    assert {"a7@example.com"} in [a & b for a, b in zip(entered, entered[1:])], "no two batches in a row shared a person"
    assert most_at_once[0] == 2, "no two batches were ever written at once"
    assert not clashes, f"batches sharing a person were written at once: {clashes}"
    engine.dispose()


# ---------------------------------------------------------------- PostgreSQL bulk path


def test_a_person_stored_meanwhile_by_another_import_makes_the_batch_start_over(migrated_pg_url, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    engine = db.get_engine(migrated_pg_url)
    lists.create_list(engine, "weekly")
    p = write(tmp_path, "in.csv", "email,name\nana@example.com,Ana\nbo@example.com,Bo\n")
    other = engine.connect()  # another import, storing Ana: not committed yet, so our lookup misses her
    other_tx = other.begin()
    other.exec_driver_sql(
        "with s as (insert into subscribers (email, email_key, name, attributes, consent_source, consent_at, created_at, "
        "updated_at) values ('ana@example.com', 'ana@example.com', 'Ana', '{}', 'other', now(), now(), now()) returning id) "
        "insert into subscriptions (subscriber_id, list_id, status, source, created_at, updated_at, confirmed_at) "
        "select s.id, l.id, 'active', 'other', now(), now(), now() from s, lists l where l.slug = 'weekly'")
    other_pid = other.exec_driver_sql("select pg_backend_pid()").scalar()
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(import_file, engine, p, ImportOptions(list_slug="weekly"))
        try:
            deadline = time.monotonic() + 120  # a bound for a hang, not a timing: the wait is on the server's state
            # Autocommit: PostgreSQL keeps one pg_stat_activity snapshot per transaction, so polls
            # inside one transaction would never see the import start waiting.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:  # until our insert waits on hers
                while not watch.exec_driver_sql(
                        "select count(*) from pg_stat_activity where %s = any(pg_blocking_pids(pid))", (other_pid,)).scalar():
                    if time.monotonic() > deadline or running.done():
                        seen = watch.exec_driver_sql(
                            "select pid, state, wait_event_type, wait_event, pg_blocking_pids(pid), left(query, 80) "
                            "from pg_stat_activity where datname = current_database()").all()
                        pytest.fail(f"the import never waited for the other one (done={running.done()}); "
                                    f"other={other_pid}; backends: {seen}")
                    time.sleep(0.01)
        finally:
            other_tx.commit()  # she is stored: our insert fails on her, and the batch starts over
            other.close()
        r = running.result(timeout=30)
    assert (r.added, r.already_present, r.batches) == (1, 1, 1)  # the failed attempt counted nothing
    assert counts(engine) == (2, 2)
    assert S.get_subscriber(engine, "ana@example.com").consent_source == "other"
    engine.dispose()


def _admin(url: str, *statements: str) -> None:
    e = db.get_engine(url)
    with e.begin() as c:
        for sql in statements:
            c.exec_driver_sql(sql)
    e.dispose()


def test_foreign_key_triggers_are_only_skipped_when_no_other_trigger_would_be(migrated_pg_url, tmp_path):
    from newsletter.store.import_sql import _may_skip_fk_triggers

    engine = db.get_engine(migrated_pg_url)
    lists.create_list(engine, "weekly")
    assert _may_skip_fk_triggers(engine)  # a superuser, and only the foreign keys' own triggers
    _admin(migrated_pg_url,
           "create table nl_test_audit (email text)",
           "create function nl_test_audit() returns trigger language plpgsql as "
           "$$ begin insert into nl_test_audit values (new.email); return new; end $$",
           "create trigger nl_test_audit after insert on subscribers for each row execute function nl_test_audit()")
    try:
        assert not _may_skip_fk_triggers(engine)
        p = write(tmp_path, "in.csv", "email\na@example.com\nb@example.com\n")
        assert import_file(engine, p, ImportOptions(list_slug="weekly")).added == 2
        with engine.connect() as c:
            audited = sorted(x for (x,) in c.exec_driver_sql("select email from nl_test_audit"))
        assert audited == ["a@example.com", "b@example.com"]  # the DBA's trigger saw every imported row
    finally:
        engine.dispose()
        _admin(migrated_pg_url, "drop trigger if exists nl_test_audit on subscribers",
               "drop function if exists nl_test_audit()", "drop table if exists nl_test_audit")


def test_an_unprivileged_role_imports_with_the_foreign_key_triggers(migrated_pg_url, tmp_path):
    import uuid

    from sqlalchemy.engine import make_url

    from newsletter.store.import_sql import _may_skip_fk_triggers

    role = "nl_import_" + uuid.uuid4().hex[:8]
    _admin(migrated_pg_url, f"create role {role} login",
           f"grant usage on schema public to {role}",
           f"grant select, insert, update, delete on all tables in schema public to {role}",
           f"grant usage, select on all sequences in schema public to {role}")
    admin = db.get_engine(migrated_pg_url)
    lists.create_list(admin, "weekly")
    engine = db.get_engine(make_url(migrated_pg_url).set(username=role).render_as_string(hide_password=False))
    try:
        assert not _may_skip_fk_triggers(engine)
        p = write(tmp_path, "in.csv", "email,name\na@example.com,A\nb@example.com,B\nA@EXAMPLE.COM,A2\n")
        r = import_file(engine, p, ImportOptions(list_slug="weekly"))
        assert (r.added, r.duplicates_in_file) == (2, 1)
        assert counts(admin) == (2, 2)
    finally:
        engine.dispose()
        admin.dispose()
        _admin(migrated_pg_url, f"drop owned by {role}", f"drop role {role}")


@given(st.lists(st.tuples(st.text(max_size=12), st.sampled_from([None, "unsubscribed"])), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_copy_text_round_trips_any_value_through_postgresql(migrated_pg_url, rows):
    import psycopg

    from newsletter.store.import_batches import copy_text

    rows = [(f"v{i}@example.com", f"v{i}@example.com", n.replace("\x00", ""), json_text(n), st_)
            for i, (n, st_) in enumerate(rows)]
    with psycopg.connect(migrated_pg_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        conn.execute("create temp table t (e text, k text, n text, a text, st text)")
        with conn.cursor().copy("copy t from stdin") as cp:
            cp.write(copy_text(rows))
        assert conn.execute("select e, k, n, a, st from t").fetchall() == rows


def json_text(value: str) -> str:
    import json

    return json.dumps({"note": value}, ensure_ascii=False)


# ---------------------------------------------------------------- properties


def test_fast_address_path_agrees_with_email_validator():
    @given(st.from_regex(r"[A-Za-z0-9._%+\-!#'*/=?^`{|}~]{1,70}@[A-Za-z0-9.\-]{1,30}", fullmatch=True))
    @settings(max_examples=300, deadline=None)
    def check(addr):
        try:
            slow = _slow(addr)
        except AddressError:
            slow = None
        try:
            fast = normalize_email(addr)
        except AddressError:
            fast = None
        assert fast == slow

    check()


LOCAL = st.sampled_from(["ana", "bo", "c.d", "eve+news", "fi_x", "g-h"])
DOMAIN = st.sampled_from(["example.com", "example.org", "example.net"])
VALID = st.builds(lambda l, d, up: (f"{l}@{d}".upper() if up else f"{l}@{d}"), LOCAL, DOMAIN, st.booleans())
INVALID = st.sampled_from(["", "ana", "ana@", "@example.com", "a..b@example.com", "a b@example.com", "ana@example"])


def _property(engine, tmp_path, addresses, left):
    """Import twice: never two rows for one address, never resubscribe someone who left."""
    slug = "p" + os.urandom(4).hex()
    lists.create_list(engine, slug)
    for a in left:
        S.add_subscriber(engine, a, list_slug=slug)
        leaving.unsubscribe(engine, a, slug)
    p = tmp_path / f"{slug}.csv"
    p.write_text("email\n" + "\n".join(f'"{a}"' for a in addresses) + "\n", encoding="utf-8")
    for _ in range(2):
        import_file(engine, p, ImportOptions(list_slug=slug, batch_size=4))
    got = statuses(engine, slug)
    valid = {normalize_email(a)[1] for a in addresses if a not in ("", "ana", "ana@", "@example.com", "a..b@example.com", "a b@example.com", "ana@example")}
    assert set(got) == valid | {normalize_email(a)[1] for a in left}
    for a in left:
        assert got[normalize_email(a)[1]] == "unsubscribed"
    counts(engine)


@given(st.lists(st.one_of(VALID, INVALID), max_size=25), st.lists(VALID, max_size=3, unique_by=str.lower))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_no_duplicates_no_resubscribe_sqlite(migrated_sqlite_url, tmp_path, addresses, left):
    e = db.get_engine(migrated_sqlite_url)
    try:
        _property(e, tmp_path, addresses, left)
    finally:
        e.dispose()


@pytest.mark.postgres
@given(st.lists(st.one_of(VALID, INVALID), max_size=12), st.lists(VALID, max_size=2, unique_by=str.lower))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_no_duplicates_no_resubscribe_postgres(migrated_pg_url, tmp_path, addresses, left):
    e = db.get_engine(migrated_pg_url)
    try:
        _property(e, tmp_path, addresses, left)
    finally:
        e.dispose()


# ---------------------------------------------------------------- crash and resume


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_import_killed_mid_way_resumes_without_duplicates(migrated_url, tmp_path):
    total, batch = 20_000, 400
    src = tmp_path / "big.csv"
    with open(src, "w", encoding="utf-8") as f:
        f.write("email,name\n")
        for i in range(total):
            f.write(f"reader{i}@example.com,Reader {i}\n")
    engine = db.get_engine(migrated_url)
    lists.create_list(engine, "weekly")
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": migrated_url}
    cmd = [sys.executable, "-m", "newsletter", "subscribers", "import", str(src), "--list", "weekly", "--batch-size", str(batch)]
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    committed = 0
    while time.monotonic() < deadline and child.poll() is None:
        committed = counts(engine)[0]
        if committed >= 3 * batch:
            break
        time.sleep(0.01)
    readers = _children(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)
    assert readers, "a 20,000-row import reads in a child process"
    gone = time.monotonic() + 10  # the reader's next write finds the pipe broken and it exits
    while any(_running(pid) for pid in readers) and time.monotonic() < gone:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in readers), "the reader outlived the killed import"
    assert child.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    subs, memberships = counts(engine)
    assert 0 < subs < total
    assert subs == memberships and subs % batch == 0  # whole batches only, each consistent

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert counts(engine) == (total, total)
    assert f"added                    {total - subs}" in done.stdout
    assert f"already present          {subs}" in done.stdout
    engine.dispose()


@pytest.mark.slow
def test_ctrl_c_stops_an_import_between_batches_and_ends_its_reader(migrated_sqlite_url, tmp_path):
    total, batch = 20_000, 400
    src = tmp_path / "big.csv"
    src.write_text("email\n" + "".join(f"reader{i}@example.org\n" for i in range(total)))
    engine = db.get_engine(migrated_sqlite_url)
    lists.create_list(engine, "weekly")
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": migrated_sqlite_url}
    cmd = [sys.executable, "-m", "newsletter", "subscribers", "import", str(src), "--list", "weekly", "--batch-size", str(batch)]
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, seen = time.monotonic() + 60, []
    while time.monotonic() < deadline and child.poll() is None:
        seen.append(counts(engine)[0])
        if seen[-1] >= 2 * batch:
            break
        time.sleep(0.01)
    readers = _children(child.pid)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130, f"the import finished before it could be interrupted (counts seen: {seen[-8:]}, {len(seen)} polls)"
    assert err.strip().splitlines()[-1].startswith("interrupted: the batches written so far are kept") and "Traceback" not in err
    gone = time.monotonic() + 10
    while any(_running(pid) for pid in readers) and time.monotonic() < gone:
        time.sleep(0.05)
    assert readers and not any(_running(pid) for pid in readers)
    subs, memberships = counts(engine)
    assert 0 < subs < total and subs == memberships and subs % batch == 0
    engine.dispose()

