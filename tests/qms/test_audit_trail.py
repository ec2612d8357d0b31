"""The audit trail (DESIGN invariant 2, 21 CFR 11.10(e)): every change is captured whatever path
it takes, the event table is append-only, the hash chain holds under concurrent writers, and
`verify_audit_trail` names the first altered, inserted or deleted event.

`qms_audit_event` is unmanaged, so transactional tests leave their events behind: every test
compares against the chain head it started from, never against an empty table."""

import hashlib
import json
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from io import StringIO
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command, execute_from_command_line
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from qms.audit import (
    Checkpoint,
    Finding,
    audit_context,
    canonical_text,
    chain_head,
    checkpoint_file,
    checkpoints,
    history_for,
    last_checkpoint,
    verify_chain,
    write_checkpoint,
)
from qms.models import AuditEvent
from sponsors import services
from sponsors.models import Product, Role
from tests.factories import ProductFactory, UserFactory


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path):
    """Checkpoints of the test database go to a fresh directory, never to var/."""
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.AUDIT_CHECKPOINT_DIR


def head_seq() -> int:
    head = chain_head()
    return head.seq if head is not None else 0


def events_after(seq: int, **filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__gt=seq, **filters).order_by("seq"))


def execute(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


# --- capture cannot be bypassed -----------------------------------------------------------


def test_create_is_captured_with_actor_and_reason(sponsor_a, superuser):
    before = head_seq()

    with audit_context(actor=superuser, reason="new product line"):
        product = ProductFactory(sponsor=sponsor_a, code="ALP-7", name="Alphamab 7")

    [event] = events_after(before)
    assert (event.model, event.object_id, event.action) == (
        "sponsors.product",
        str(product.pk),
        "create",
    )
    assert event.changes["code"] == [None, "ALP-7"]
    assert event.changes["name"] == [None, "Alphamab 7"]
    assert event.changes["sponsor_id"] == [None, sponsor_a.pk]
    assert (event.actor_id, event.actor_username) == (superuser.pk, "root")
    assert event.reason == "new product line"
    assert event.sponsor_id == sponsor_a.pk
    assert list(history_for(product)) == [event]


def test_queryset_update_is_captured(product_a, superuser):
    before = head_seq()

    with audit_context(actor=superuser, reason="label text corrected"):
        Product.objects.filter(pk=product_a.pk).update(name="Alphacillin 100 mg tablets")

    [event] = events_after(before)
    assert (event.model, event.object_id, event.action) == (
        "sponsors.product",
        str(product_a.pk),
        "update",
    )
    assert event.changes == {"name": ["Alphacillin 100 mg", "Alphacillin 100 mg tablets"]}
    assert (event.actor_username, event.reason) == ("root", "label text corrected")


def test_bulk_create_is_captured(sponsor_a):
    before = head_seq()

    products = Product.objects.bulk_create(
        [
            Product(sponsor=sponsor_a, code=f"BULK-{n}", name=f"Bulk {n}", regulatory_basis="drug")
            for n in range(3)
        ]
    )

    events = events_after(before)
    assert [(e.object_id, e.action) for e in events] == [(str(p.pk), "create") for p in products]
    assert [e.changes["code"] for e in events] == [
        [None, "BULK-0"],
        [None, "BULK-1"],
        [None, "BULK-2"],
    ]


def test_raw_sql_update_is_captured(product_a, superuser):
    before = head_seq()

    with audit_context(actor=superuser, reason="data fix DF-12"):
        execute("UPDATE sponsors_product SET name = %s WHERE id = %s", ["Raw name", product_a.pk])

    [event] = events_after(before)
    assert (event.object_id, event.action) == (str(product_a.pk), "update")
    assert event.changes == {"name": ["Alphacillin 100 mg", "Raw name"]}
    assert (event.actor_username, event.reason) == ("root", "data fix DF-12")


def test_raw_sql_without_context_is_captured_as_system(product_a):
    before = head_seq()

    execute("UPDATE sponsors_product SET is_active = false WHERE id = %s", [product_a.pk])

    [event] = events_after(before)
    assert event.changes == {"is_active": [True, False]}
    assert (event.actor_id, event.actor_display, event.reason) == (None, "system", "")


def test_delete_is_captured(product_a, superuser):
    before = head_seq()
    pk = product_a.pk

    with audit_context(actor=superuser, reason="entered in error"):
        product_a.delete()

    [event] = events_after(before)
    assert (event.model, event.object_id, event.action) == ("sponsors.product", str(pk), "delete")
    assert event.changes["code"] == ["ALP-100", None]
    assert event.changes["name"] == ["Alphacillin 100 mg", None]
    assert (event.actor_username, event.reason) == ("root", "entered in error")


def test_truncate_of_audited_table_is_captured_row_by_row(product_a, product_b):
    before = head_seq()

    execute("SET CONSTRAINTS ALL IMMEDIATE")
    execute("TRUNCATE sponsors_product CASCADE")

    deleted = {
        e.object_id: e.changes["name"]
        for e in events_after(before, model="sponsors.product", action="delete")
    }
    assert deleted == {
        str(product_a.pk): ["Alphacillin 100 mg", None],
        str(product_b.pk): ["ZZOTHER secret product", None],
    }


def test_temporary_table_cannot_divert_capture(product_a):
    before = head_seq()

    execute("CREATE TEMPORARY TABLE qms_audit_event (LIKE qms_audit_event INCLUDING ALL)")
    execute("UPDATE sponsors_product SET name = 'Diverted?' WHERE id = %s", [product_a.pk])
    diverted = execute("SELECT count(*) FROM pg_temp.qms_audit_event")[0][0]
    execute("DROP TABLE pg_temp.qms_audit_event")

    assert diverted == 0
    [event] = events_after(before)
    assert event.changes == {"name": ["Alphacillin 100 mg", "Diverted?"]}


def test_role_grant_is_captured_with_its_permissions(sponsor_a, superuser):
    user = UserFactory(username="new-staff")
    before = head_seq()

    grant = services.access_grant_create(
        user=user, sponsor=sponsor_a, role=Role.CMO_STAFF, by=superuser, reason="joined QA"
    )

    events = events_after(before)
    [grant_event] = [e for e in events if e.model == "sponsors.accessgrant"]
    assert (grant_event.object_id, grant_event.action) == (str(grant.pk), "create")
    assert grant_event.changes["role"] == [None, "cmo_staff"]
    assert grant_event.changes["user_id"] == [None, user.pk]
    assert grant_event.sponsor_id == sponsor_a.pk
    permissions = [e for e in events if e.model == "guardian.userobjectpermission"]
    assert {e.action for e in permissions} == {"create"}
    assert {
        Permission.objects.get(pk=e.changes["permission_id"][1]).codename for e in permissions
    } == {"view_sponsor", "change_sponsor"}
    assert all(e.changes["object_pk"] == [None, str(sponsor_a.pk)] for e in permissions)
    assert all(e.changes["user_id"] == [None, user.pk] for e in permissions)
    assert {(e.actor_username, e.reason) for e in events} == {("root", "joined QA")}


def test_role_revoke_is_captured_with_its_permissions(sponsor_a, superuser):
    user = UserFactory(username="leaving-staff")
    grant = services.access_grant_create(user=user, sponsor=sponsor_a, role=Role.CMO_STAFF)
    before = head_seq()

    services.access_grant_revoke(grant=grant, by=superuser, reason="left the company")

    events = events_after(before)
    [grant_event] = [e for e in events if e.model == "sponsors.accessgrant"]
    assert (grant_event.object_id, grant_event.action) == (str(grant.pk), "update")
    assert grant_event.changes == {"revoked_at": [None, mock.ANY]}
    assert datetime.fromisoformat(grant_event.changes["revoked_at"][1])
    permissions = [e for e in events if e.model == "guardian.userobjectpermission"]
    assert len(permissions) == 2
    assert {e.action for e in permissions} == {"delete"}
    assert all(e.changes["object_pk"] == [str(sponsor_a.pk), None] for e in permissions)
    assert {(e.actor_username, e.reason) for e in events} == {("root", "left the company")}


def test_actor_and_reason_end_with_the_audit_context(product_a, superuser):
    before = head_seq()

    with transaction.atomic():
        with audit_context(actor=superuser, reason="spec change"):
            Product.objects.filter(pk=product_a.pk).update(name="Inside")
        Product.objects.filter(pk=product_a.pk).update(name="After")

    inside, after = events_after(before)
    assert (inside.actor_username, inside.reason) == ("root", "spec change")
    assert (after.actor_id, after.reason) == (None, "")


def test_nested_audit_context_restores_the_outer_reason(product_a, superuser):
    before = head_seq()

    with audit_context(actor=superuser, reason="outer"):
        with audit_context(reason="inner"):
            Product.objects.filter(pk=product_a.pk).update(name="Inner")
        Product.objects.filter(pk=product_a.pk).update(name="Outer again")

    inner, outer = events_after(before)
    assert (inner.actor_username, inner.reason) == ("root", "inner")
    assert (outer.actor_username, outer.reason) == ("root", "outer")


def test_update_that_changes_nothing_writes_no_event(product_a):
    before = head_seq()

    product_a.save()
    Product.objects.filter(pk=product_a.pk).update(name=product_a.name)

    assert events_after(before) == []


def test_last_login_is_excluded_from_the_trail(cmo_staff):
    before = head_seq()

    cmo_staff.last_login = timezone.now()
    cmo_staff.save(update_fields=["last_login"])
    assert events_after(before) == []

    cmo_staff.first_name = "Renamed"
    cmo_staff.last_login = timezone.now()
    cmo_staff.save()
    [event] = events_after(before)
    assert event.model == "auth.user"
    assert event.changes == {"first_name": [mock.ANY, "Renamed"]}


def test_user_create_event_holds_no_password_hash(db):
    before = head_seq()

    user = UserFactory(username="fresh")

    [created] = events_after(before, action="create")
    assert created.object_id == str(user.pk)
    assert created.changes["username"] == [None, "fresh"]
    assert "password" not in created.changes
    assert "last_login" not in created.changes


# --- append-only --------------------------------------------------------------------------

APPEND_ONLY = [
    ("UPDATE qms_audit_event SET reason = 'edited'", "UPDATE"),
    ("DELETE FROM qms_audit_event", "DELETE"),
    ("TRUNCATE qms_audit_event", "TRUNCATE"),
]


@pytest.mark.parametrize("replica", [False, True], ids=["origin", "replica-role"])
@pytest.mark.parametrize("statement, operation", APPEND_ONLY, ids=["update", "delete", "truncate"])
def test_audit_events_cannot_be_changed_or_removed(product_a, statement, operation, replica):
    count_before = AuditEvent.objects.count()
    if replica:
        execute("SET LOCAL session_replication_role = replica")

    with (
        pytest.raises(DatabaseError, match=f"qms_audit_event is append-only: {operation} refused"),
        transaction.atomic(),
    ):
        execute(statement)

    assert AuditEvent.objects.count() == count_before
    assert verify_chain()[1] == []


def test_direct_insert_into_audit_table_is_refused(product_a):
    with (
        pytest.raises(DatabaseError, match="written only by the audit capture triggers"),
        transaction.atomic(),
    ):
        execute(
            "INSERT INTO qms_audit_event (seq, occurred_at, model, object_id, action, changes, "
            "prev_hash, hash) VALUES (0, now(), 'sponsors.product', %s, 'delete', '{}', '', '')",
            [product_a.pk],
        )


# --- the hash chain -----------------------------------------------------------------------


def test_hash_covers_every_column_and_is_recomputed_outside_the_database(product_a, superuser):
    awkward = 'naïve "ständig" ✓ 🧪 \x1f5 \t\\ end'
    with audit_context(actor=superuser, reason=awkward):
        Product.objects.filter(pk=product_a.pk).update(name="Ünïcode ✓")
    event = AuditEvent.objects.order_by("-seq").first()
    text = canonical_text(
        seq=event.seq,
        prev_hash=event.prev_hash,
        occurred_at=event.occurred_at,
        actor_id=event.actor_id,
        actor_username=event.actor_username,
        model=event.model,
        object_id=event.object_id,
        action=event.action,
        changes_text=execute(
            "SELECT changes::text FROM qms_audit_event WHERE seq = %s", [event.seq]
        )[0][0],
        reason=event.reason,
        sponsor_id=event.sponsor_id,
    )

    assert event.reason == awkward
    assert hashlib.sha256(text.encode()).hexdigest() == event.hash
    assert execute(
        "SELECT qms_audit_canonical(e) FROM qms_audit_event e WHERE seq = %s", [event.seq]
    ) == [(text,)]


def test_text_cannot_move_across_field_boundaries():
    common = {
        "seq": 7,
        "prev_hash": "0" * 64,
        "occurred_at": timezone.now(),
        "actor_id": None,
        "actor_username": "",
        "model": "sponsors.product",
        "object_id": "1",
        "action": "update",
        "changes_text": "{}",
    }

    assert canonical_text(**common, reason="ok\x1f5", sponsor_id=None) != canonical_text(
        **common, reason="ok", sponsor_id=5
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_append_one_unbroken_chain(sponsor_a):
    # given: 8 writers, each with its own user, product and database connection
    writers = 8
    writes = 100
    products = [ProductFactory(sponsor=sponsor_a, code=f"CONC-{n}") for n in range(writers)]
    users = [UserFactory(username=f"writer-{n}") for n in range(writers)]
    before = chain_head()
    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            with audit_context(actor=users[n], reason=f"writer {n}"):
                for i in range(writes):
                    Product.objects.filter(pk=products[n].pk).update(name=f"writer {n} write {i}")
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()

    # when
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    # then
    assert errors == []
    events = events_after(before.seq)
    assert [e.seq for e in events] == list(range(before.seq + 1, before.seq + 1 + writers * writes))
    assert [e.prev_hash for e in events] == [before.hash] + [e.hash for e in events[:-1]]
    assert len({e.prev_hash for e in events}) == writers * writes
    assert (
        execute("SELECT prev_hash FROM qms_audit_event GROUP BY prev_hash HAVING count(*) > 1")
        == []
    )
    for event in events:
        n = int(event.changes["name"][1].split()[1])
        assert (event.actor_username, event.reason) == (f"writer-{n}", f"writer {n}")
    checked, findings = verify_chain()
    assert findings == []
    assert checked == AuditEvent.objects.count()
    print(
        f"\n{writers}×{writes} audited writes: {elapsed:.2f} s, "
        f"{writers * writes / elapsed:.0f} events/s"
    )


# --- tampering is detected ----------------------------------------------------------------


@contextmanager
def triggers_disabled():
    """What someone with the table owner's rights could do: switch the guards off."""
    execute("ALTER TABLE qms_audit_event DISABLE TRIGGER USER")
    yield
    for name in (
        "qms_audit_event_chain",
        "qms_audit_event_no_change",
        "qms_audit_event_no_truncate",
    ):
        execute(f"ALTER TABLE qms_audit_event ENABLE ALWAYS TRIGGER {name}")


RECOMPUTE_HASH = (
    "UPDATE qms_audit_event e "
    "SET hash = encode(sha256(convert_to(qms_audit_canonical(e), 'UTF8')), 'hex') "
    "WHERE seq = %s"
)


@pytest.fixture
def trail(product_a, superuser):
    """Six more events on top of whatever the table holds, with checkpoints after the third
    and the sixth. Returns their sequence numbers."""
    before = head_seq()
    with audit_context(actor=superuser, reason="label text corrected"):
        for n in range(6):
            Product.objects.filter(pk=product_a.pk).update(name=f"Alphacillin v{n}")
            if n in (2, 5):
                write_checkpoint()
    seqs = [e.seq for e in events_after(before)]
    assert len(seqs) == 6
    assert verify_chain(checkpoints()) == (AuditEvent.objects.count(), [])
    return seqs


def alter_changes(seqs):
    target = seqs[2]
    with triggers_disabled():
        execute(
            "UPDATE qms_audit_event SET changes = jsonb_set(changes, '{name,1}', '\"Betacillin\"') "
            "WHERE seq = %s",
            [target],
        )
    return target, "altered"


def alter_reason(seqs):
    target = seqs[2]
    with triggers_disabled():
        execute("UPDATE qms_audit_event SET reason = 'routine' WHERE seq = %s", [target])
    return target, "altered"


def delete_event(seqs):
    target = seqs[2]
    with triggers_disabled():
        execute("DELETE FROM qms_audit_event WHERE seq = %s", [target])
    return target, "deleted"


def _make_room(at: int) -> None:
    execute("UPDATE qms_audit_event SET seq = -(seq + 1) WHERE seq >= %s", [at])
    execute("UPDATE qms_audit_event SET seq = -seq WHERE seq < 0")


def _forge(at: int, prev_hash_sql: str) -> None:
    execute(
        "INSERT INTO qms_audit_event (seq, occurred_at, actor_id, actor_username, model, "
        "object_id, action, changes, reason, sponsor_id, prev_hash, hash) "
        "SELECT %s, occurred_at, actor_id, actor_username, model, object_id, 'update', "
        '\'{"name": ["Alphacillin", "Alphacillin forte"]}\', reason, sponsor_id, '
        f"{prev_hash_sql}, 'forged' FROM qms_audit_event WHERE seq = %s",
        [at, at - 1],
    )
    execute(RECOMPUTE_HASH, [at])


def insert_event(seqs):
    target = seqs[2]
    with triggers_disabled():
        _make_room(target)
        _forge(target, "encode(sha256('forged'::bytea), 'hex')")
    return target, "inserted"


def insert_linked_event(seqs):
    """A forger who also drops the one-successor rule links the forged event to its
    predecessor; its successor still links past it."""
    target = seqs[2]
    with triggers_disabled():
        execute("ALTER TABLE qms_audit_event DROP CONSTRAINT qms_audit_event_prev_hash_key")
        _make_room(target)
        _forge(target, "hash")
    return target, "inserted"


def cut_off_tail(seqs):
    with triggers_disabled():
        execute("DELETE FROM qms_audit_event WHERE seq >= %s", [seqs[4]])
    return seqs[4], "deleted"


def rewrite_chain(seqs):
    """Alter an event after the first checkpoint and recompute every hash from there on: the
    chain is consistent again, only the last checkpoint can tell."""
    with triggers_disabled():
        execute("UPDATE qms_audit_event SET reason = 'routine' WHERE seq = %s", [seqs[3]])
        for seq in range(seqs[3], seqs[-1] + 1):
            execute(
                "UPDATE qms_audit_event e SET prev_hash = p.hash FROM qms_audit_event p "
                "WHERE p.seq = e.seq - 1 AND e.seq = %s",
                [seq],
            )
            execute(RECOMPUTE_HASH, [seq])
    return seqs[-1], "rewritten"


TAMPERING = {
    "altered-changes": alter_changes,
    "altered-reason": alter_reason,
    "deleted": delete_event,
    "inserted": insert_event,
    "inserted-and-linked": insert_linked_event,
    "cut-off-tail": cut_off_tail,
    "rewritten": rewrite_chain,
}


def test_altered_changes_are_named_as_first_bad_event(trail):
    target, _ = alter_changes(trail)

    checked, findings = verify_chain(checkpoints())

    assert findings == [Finding(target, "altered: its content does not match its hash")]
    assert str(findings[0]) == f"event #{target}: altered: its content does not match its hash"


def test_altered_reason_is_named_as_first_bad_event(trail):
    target, _ = alter_reason(trail)

    _, findings = verify_chain(checkpoints())

    assert findings == [Finding(target, "altered: its content does not match its hash")]


def test_deleted_event_is_reported_as_gap(trail):
    target, _ = delete_event(trail)

    _, findings = verify_chain(checkpoints())

    mark = checkpoints()[0]
    assert mark.seq == target
    assert [str(f) for f in findings] == [
        f"event #{target}: deleted: the sequence jumps from #{target - 1} to #{target + 1} "
        f"(event #{target} is missing)",
        f"event #{target}: deleted: the checkpoint of {mark.written_at} recorded event "
        f"#{target} with hash {mark.hash[:16]}…, but the trail has no event #{target}",
    ]


def test_inserted_event_is_reported_where_it_was_put_in(trail):
    target, _ = insert_event(trail)

    _, findings = verify_chain(checkpoints())

    assert str(findings[0]) == (
        f"event #{target}: inserted: event #{target + 1} links to event #{target - 1}, "
        f"not to #{target}, so #{target} was put into the chain afterwards"
    )
    assert all(f.seq >= target for f in findings)
    assert Finding(target + 1, "altered: its content does not match its hash") in findings


def test_inserted_event_linked_to_its_predecessor_is_reported(trail):
    target, _ = insert_linked_event(trail)

    _, findings = verify_chain(checkpoints())

    assert str(findings[0]).startswith(f"event #{target}: inserted: event #{target + 1} links")


def test_cut_off_tail_is_reported_against_the_last_checkpoint(trail):
    cut, _ = cut_off_tail(trail)

    assert verify_chain() == (AuditEvent.objects.count(), [])
    _, findings = verify_chain(last_checkpoint())

    assert [str(f) for f in findings] == [
        f"event #{cut}: deleted: the checkpoint of {last_checkpoint().written_at} recorded the "
        f"chain up to #{trail[-1]}, but the trail ends at #{cut - 1} "
        f"(events #{cut}–#{trail[-1]} were cut off)"
    ]


def test_rewritten_chain_is_reported_against_the_last_checkpoint(trail):
    head, _ = rewrite_chain(trail)
    first, last = checkpoints()[-2:]

    assert verify_chain() == (AuditEvent.objects.count(), [])
    _, findings = verify_chain(checkpoints())

    assert len(findings) == 1
    assert str(findings[0]).startswith(f"event #{head}: rewritten: its hash ")
    assert f"recorded by the checkpoint of {last.written_at}" in findings[0].problem
    assert findings[0].problem.endswith(
        f"the chain was rewritten after event #{first.seq}, which still matches the "
        f"checkpoint of {first.written_at}"
    )


# --- the commands -------------------------------------------------------------------------


def test_audit_checkpoint_writes_head_to_the_file_given(trail, tmp_path):
    path = tmp_path / "elsewhere" / "head.jsonl"
    out = StringIO()

    call_command("audit_checkpoint", "--file", str(path), stdout=out)

    head = chain_head()
    [line] = path.read_text().splitlines()
    data = json.loads(line)
    assert (data["seq"], data["hash"]) == (head.seq, head.hash)
    assert datetime.fromisoformat(data["written_at"]) <= timezone.now()
    assert out.getvalue().startswith(f"audit checkpoint #{head.seq} {head.hash} at ")
    assert (data["kind"], data["v"], data["database"]) == ("qms.audit.checkpoint", 1, head.database)
    assert data["mac"] == Checkpoint.from_line(line).mac()
    assert last_checkpoint(path) == Checkpoint.from_line(line)


def test_audit_checkpoint_defaults_to_the_checkpoint_directory(product_a, checkpoint_dir):
    call_command("audit_checkpoint", stdout=StringIO())

    path = checkpoint_file()
    assert path.parent == checkpoint_dir
    assert last_checkpoint(path).hash == chain_head().hash


def test_verify_audit_trail_passes_a_clean_trail(trail):
    out, err = StringIO(), StringIO()

    call_command("verify_audit_trail", stdout=out, stderr=err)

    head = chain_head()
    assert out.getvalue().splitlines()[0] == (
        f"audit trail OK: {AuditEvent.objects.count()} events, head #{head.seq} {head.hash}"
    )
    assert err.getvalue() == ""


def test_verify_audit_trail_fails_without_checkpoint(product_a):
    out = StringIO()

    with pytest.raises(CommandError) as refused:
        call_command("verify_audit_trail", stdout=out, stderr=StringIO())

    assert str(refused.value).startswith("audit trail NOT OK: no checkpoint covers the ")
    assert f"up to head #{head_seq()} ({checkpoint_file()} holds none)" in str(refused.value)
    assert out.getvalue() == ""


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_verify_audit_trail_names_the_first_bad_event(trail, tamper):
    target, kind = tamper(trail)
    err = StringIO()

    with pytest.raises(CommandError) as refused:
        call_command("verify_audit_trail", stdout=StringIO(), stderr=err)

    assert str(refused.value).startswith("audit trail NOT OK: ")
    assert f"first: event #{target}: {kind}: " in str(refused.value)
    assert err.getvalue().startswith(f"event #{target}: {kind}: ")


def test_verify_audit_trail_takes_checkpoint_file_option(trail, tmp_path):
    path = tmp_path / "offsite.jsonl"
    path.write_text(checkpoint_file().read_text())
    checkpoint_file().unlink()
    cut, _ = cut_off_tail(trail)

    with pytest.raises(CommandError, match=f"first: event #{cut}: deleted: the checkpoint"):
        call_command("verify_audit_trail", "--checkpoint", str(path), stderr=StringIO())


def test_verify_audit_trail_exit_status(trail, capsys):
    # manage.py closes every connection when a command ends; keep the test's transaction open
    keep_open = mock.patch("django.core.management.base.connections.close_all")

    with keep_open:
        execute_from_command_line(["manage.py", "verify_audit_trail"])
    assert capsys.readouterr().out.startswith("audit trail OK: ")

    target, _ = alter_reason(trail)
    with keep_open, pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "verify_audit_trail"])

    assert exited.value.code == 1
    assert f"event #{target}: altered: " in capsys.readouterr().err


def test_unreadable_checkpoint_file_is_refused(product_a, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"seq": 3, "hash": "ab"}\n')

    with pytest.raises(CommandError, match=r"broken.jsonl, line 1: not a checkpoint"):
        call_command("verify_audit_trail", "--checkpoint", str(path), stderr=StringIO())
