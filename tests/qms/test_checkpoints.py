"""Checkpoints anchor the audit chain outside the database (DESIGN invariant 2): a database
superuser who alters an event and recomputes every later hash leaves a consistent chain, which
only a checkpoint written before can tell from the real one. The checkpoint lines are sealed with
a MAC the database does not hold, written at start and every 5 minutes while the head moves,
and can be handed to QA and the sponsors."""

import json
import os
import stat
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils.crypto import salted_hmac

from qms.audit import (
    Checkpoint,
    CheckpointConflict,
    audit_context,
    chain_head,
    checkpoint_file,
    checkpoints,
    write_checkpoint,
)
from qms.celery import app as celery_app
from qms.tasks import write_audit_checkpoint
from sponsors.models import Product
from tests.qms.test_audit_trail import RECOMPUTE_HASH, execute, head_seq, triggers_disabled


def touch(product, n: int = 0) -> int:
    """One more audit event; returns its sequence number."""
    Product.objects.filter(pk=product.pk).update(name=f"Alphacillin r{n}")
    return head_seq()


def rewrite_from(seq: int) -> None:
    """The database superuser's rewrite: alter event `seq`, then recompute its hash and every
    later link and hash, so the chain on its own is consistent again."""
    with triggers_disabled():
        execute("UPDATE qms_audit_event SET reason = 'routine' WHERE seq = %s", [seq])
        for n in range(seq, head_seq() + 1):
            execute(
                "UPDATE qms_audit_event e SET prev_hash = p.hash FROM qms_audit_event p "
                "WHERE p.seq = e.seq - 1 AND e.seq = %s",
                [n],
            )
            execute(RECOMPUTE_HASH, [n])


def verify(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("verify_audit_trail", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(*args) -> str:
    with pytest.raises(CommandError) as failure:
        verify(*args)
    return str(failure.value)


@pytest.fixture
def anchored(product_a, superuser):
    """Events with a checkpoint after the second and after the fourth; returns their seqs."""
    seqs = []
    with audit_context(actor=superuser, reason="label text corrected"):
        for n in range(4):
            seqs.append(touch(product_a, n))
            if n in (1, 3):
                write_checkpoint()
    assert verify()[0].startswith("audit trail OK: ")
    return seqs


# --- a rewritten chain is caught ------------------------------------------------------------


def test_superuser_rewrite_behind_a_checkpoint_fails_naming_the_checkpoint(anchored):
    first, last = checkpoints()

    rewrite_from(anchored[2])

    message = refused()
    assert message.startswith("audit trail NOT OK: 1 finding(s) in ")
    assert f"first: event #{last.seq}: rewritten: its hash " in message
    assert f"recorded by the checkpoint of {last.written_at}" in message
    assert f"after event #{first.seq}, which still matches the checkpoint of " in message


def test_every_checkpoint_line_is_checked_not_only_the_last(anchored, product_a):
    first, _ = checkpoints()
    rewrite_from(anchored[0])
    # the writer refuses to anchor the rewritten chain …
    with pytest.raises(CheckpointConflict, match=f"event #{anchored[3]} carries hash "):
        write_checkpoint()
    # … and a head sealed later (e.g. by a writer that did not check) does not hide it
    mark = Checkpoint(**{**chain_head().__dict__})
    with checkpoint_file().open("a") as fh:
        fh.write(mark.as_json() + "\n")

    message = refused()

    assert f"first: event #{first.seq}: rewritten: " in message
    assert f"checkpoint of {first.written_at}" in message


def test_checkpoint_writer_refuses_to_anchor_a_rewritten_chain(anchored, product_a):
    before = checkpoint_file().read_bytes()
    rewrite_from(anchored[3])

    with pytest.raises(CheckpointConflict) as conflict:
        write_audit_checkpoint.apply().get()

    assert f"event #{anchored[3]} carries hash " in str(conflict.value)
    assert "No checkpoint written." in str(conflict.value)
    assert checkpoint_file().read_bytes() == before


def test_cut_off_tail_after_the_last_checkpoint_is_caught(anchored):
    with triggers_disabled():
        execute("DELETE FROM qms_audit_event WHERE seq >= %s", [anchored[2]])

    assert f"first: event #{anchored[2]}: deleted: " in refused()


# --- no checkpoint, forged checkpoints ------------------------------------------------------


def test_non_empty_chain_without_checkpoint_fails(product_a):
    message = refused()

    assert message.startswith("audit trail NOT OK: no checkpoint covers the ")
    assert "`manage.py audit_checkpoint` writes one now" in message


def test_forged_checkpoint_line_fails(anchored, settings):
    rewrite_from(anchored[0])
    forged = chain_head()
    data = json.loads(forged.as_json())
    data["mac"] = salted_hmac(
        "qms.audit.checkpoint.v1",
        json.dumps(forged.sealed_fields(), sort_keys=True, separators=(",", ":")),
        secret="a key the database superuser guessed",
        algorithm="sha256",
    ).hexdigest()
    path = checkpoint_file()
    path.write_text(json.dumps(data) + "\n")  # the real lines replaced by a forged one

    message = refused()

    assert message.startswith("audit trail NOT OK: bad checkpoint file: ")
    assert f"{path}, line 1: checkpoint #{forged.seq} of {forged.written_at} is forged: " in (
        message
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda data: {**data, "seq": data["seq"] - 1},
        lambda data: {**data, "hash": "f" * 64},
        lambda data: {**data, "written_at": "2030-01-01T00:00:00+00:00"},
        lambda data: {key: value for key, value in data.items() if key != "mac"},
    ],
    ids=["seq", "hash", "time", "no-mac"],
)
def test_edited_checkpoint_line_fails(anchored, edit):
    path = checkpoint_file()
    lines = path.read_text().splitlines()
    lines[1] = json.dumps(edit(json.loads(lines[1])))
    path.write_text("\n".join(lines) + "\n")

    assert f"{path}, line 2: checkpoint #" in refused()


def test_lines_sealed_with_a_retired_seal_key_still_verify(anchored, settings):
    retired = getattr(settings, "SIGNATURE_SEAL_KEY", "") or settings.SECRET_KEY
    settings.SIGNATURE_SEAL_KEY = "new seal key"
    settings.SIGNATURE_SEAL_KEY_FALLBACKS = []
    assert "is forged" in refused()

    settings.SIGNATURE_SEAL_KEY_FALLBACKS = ["older", retired]

    assert verify()[0].startswith("audit trail OK: ")


def test_checkpoint_file_is_private_and_each_line_self_describing(anchored):
    path = checkpoint_file()

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for line, mark in zip(path.read_text().splitlines(), checkpoints(), strict=True):
        data = json.loads(line)
        assert set(data) == {"kind", "v", "database", "seq", "hash", "written_at", "mac"}
        assert (data["kind"], data["seq"], data["hash"]) == (
            "qms.audit.checkpoint",
            mark.seq,
            mark.hash,
        )


# --- unanchored events ----------------------------------------------------------------------


def test_recent_events_after_the_last_checkpoint_are_a_warning(anchored, product_a):
    touch(product_a, 10)
    touch(product_a, 11)

    out, err = verify()

    assert out.startswith("audit trail OK: ")
    assert err.startswith(
        f"warning: not yet anchored: 2 events after checkpoint seq {anchored[3]} (the oldest, "
        f"#{anchored[3] + 1}, is "
    )


def test_old_unanchored_events_mean_the_writer_stopped(anchored, product_a):
    touch(product_a, 10)

    message = refused("--max-unanchored-minutes", "0")

    assert message.startswith(
        f"audit trail NOT OK: 1 events after checkpoint seq {anchored[3]} are not anchored, "
        f"the oldest (#{anchored[3] + 1}, written "
    )
    assert "the checkpoint writer has stopped" in message


# --- the periodic writer --------------------------------------------------------------------


def test_beat_writes_a_checkpoint_every_five_minutes():
    entry = celery_app.conf.beat_schedule["audit-checkpoint"]

    assert entry == {"task": write_audit_checkpoint.name, "schedule": 300.0}
    assert write_audit_checkpoint.acks_late


def test_task_writes_only_when_the_head_moved(product_a):
    path = checkpoint_file()

    first = write_audit_checkpoint.apply().get()
    again = write_audit_checkpoint.apply().get()

    assert first == again == head_seq()
    assert len(path.read_text().splitlines()) == 1

    moved = touch(product_a, 1)
    assert write_audit_checkpoint.apply().get() == moved
    assert write_audit_checkpoint.apply().get() == moved
    assert [mark.seq for mark in checkpoints()] == [first, moved]


def test_start_of_the_stack_checkpoint_is_idempotent(product_a):
    head = write_checkpoint(only_if_moved=True)
    again = write_checkpoint(only_if_moved=True)

    assert again == head
    assert checkpoints() == [head]
    assert verify()[1] == ""


def test_empty_trail_writes_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr("qms.audit.chain_head", lambda using="default": None)

    assert write_checkpoint(tmp_path / "empty.jsonl", only_if_moved=True) is None
    assert (tmp_path / "empty.jsonl").read_text() == ""


# --- export ---------------------------------------------------------------------------------


def test_export_writes_the_checkpoint_lines_to_a_file(anchored, product_a, tmp_path):
    moved = touch(product_a, 20)
    target = tmp_path / "qa" / "anchor.jsonl"
    out = StringIO()

    call_command("audit_checkpoint", "--export", str(target), stdout=out)

    assert target.read_text() == checkpoint_file().read_text()
    assert [mark.seq for mark in checkpoints(target)] == [anchored[1], anchored[3], moved]
    assert out.getvalue().startswith(f"3 audit checkpoint(s), the last #{moved} ")
    # the exported copy is itself a checkpoint file verify_audit_trail accepts
    checkpoint_file().unlink()
    assert verify("--checkpoint", str(target))[0].startswith("audit trail OK: ")


def test_export_to_standard_output(anchored, capsys):
    call_command("audit_checkpoint", "--export", "-")

    assert capsys.readouterr().out == checkpoint_file().read_text()


def test_email_sends_the_lines_to_each_address_and_sponsor_alone(
    anchored, sponsor_a, sponsor_b, mailoutbox
):
    sponsor_a.contact_email = "qa@alpha.example"
    sponsor_a.save()
    sponsor_b.contact_email = "quality@zzother.example"
    sponsor_b.save()
    head = head_seq()

    call_command("audit_checkpoint", "--email", "qa@cmo.example", "--sponsors", stdout=StringIO())

    assert sorted(tuple(m.to) for m in mailoutbox) == [
        ("qa@alpha.example",),
        ("qa@cmo.example",),
        ("quality@zzother.example",),
    ]
    content = checkpoint_file().read_text()
    assert checkpoints()[-1].seq == head
    for message in mailoutbox:
        assert message.cc == message.bcc == []
        assert message.subject == f"Audit trail checkpoints: head #{head}"
        [(name, attached, mimetype)] = message.attachments
        assert (name, attached) == (checkpoint_file().name, content)
        assert "verify_audit_trail --checkpoint" in message.body


def test_checkpoint_times_are_utc(anchored):
    for mark in checkpoints():
        assert datetime.fromisoformat(mark.written_at).tzinfo == UTC


def test_without_a_seal_key_lines_are_sealed_with_the_secret_key(product_a, settings):
    del settings.SIGNATURE_SEAL_KEY

    mark = write_checkpoint()

    assert json.loads(checkpoint_file().read_text())["mac"] == mark.mac(settings.SECRET_KEY)
    assert verify()[0].startswith("audit trail OK: ")


def test_command_if_moved_writes_once(product_a):
    call_command("audit_checkpoint", "--if-moved", stdout=StringIO())
    call_command("audit_checkpoint", "--if-moved", stdout=StringIO())

    assert [mark.seq for mark in checkpoints()] == [head_seq()]


def test_command_refuses_to_anchor_a_rewritten_chain(anchored):
    rewrite_from(anchored[3])

    with pytest.raises(CommandError, match=f"event #{anchored[3]} carries hash "):
        call_command("audit_checkpoint", "--if-moved", stdout=StringIO())
