"""The audit trail: database triggers capture every create/update/delete of a GxP record into
one append-only, hash-chained table (21 CFR 11.10(e)); this module registers the audited tables,
carries actor and reason into the database, and verifies the chain.

Capture is by PostgreSQL trigger, so `QuerySet.update()`, `bulk_create`, the admin and raw SQL
are all recorded. Actor and reason travel in `pghistory.context`, which sets a transaction-local
setting that the trigger reads."""

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pghistory
from django.conf import settings
from django.db import connection

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditSpec:
    label: str
    sponsor_column: str
    pk_column: str
    excluded: tuple[str, ...]


_REGISTRY: dict[type, AuditSpec] = {}


def audited(model=None, *, sponsor: str | None = "sponsor_id", exclude: tuple[str, ...] = ()):
    """Register a model whose table gets the audit capture trigger. `sponsor` names the column
    holding the owning sponsor's id (None for site-wide records)."""

    def register(cls):
        _REGISTRY[cls] = AuditSpec(
            label=cls._meta.label_lower,
            sponsor_column=sponsor or "",
            pk_column=cls._meta.pk.column,
            excluded=tuple(exclude),
        )
        return cls

    return register(model) if model is not None else register


def audited_models() -> dict[type, AuditSpec]:
    return dict(_REGISTRY)


def install_capture_triggers(using: str = "default") -> int:
    """(Re)install the capture trigger on every registered table that exists. Idempotent."""
    from django.db import connections

    conn = connections[using]
    with conn.cursor() as cursor:
        existing = set(conn.introspection.table_names(cursor))
        count = 0
        for model, spec in _REGISTRY.items():
            table = model._meta.db_table
            if table not in existing:
                continue
            args = ", ".join(
                _sql_literal(value)
                for value in (
                    spec.label,
                    spec.sponsor_column,
                    spec.pk_column,
                    ",".join(spec.excluded),
                )
            )
            quoted = conn.ops.quote_name(table)
            cursor.execute(
                f"CREATE OR REPLACE TRIGGER qms_audit_capture "
                f"AFTER INSERT OR UPDATE OR DELETE ON {quoted} "
                f"FOR EACH ROW EXECUTE FUNCTION qms_audit_capture({args})"
            )
            cursor.execute(f"ALTER TABLE {quoted} ENABLE ALWAYS TRIGGER qms_audit_capture")
            count += 1
    return count


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@contextmanager
def audit_context(*, actor=None, reason: str | None = None):
    """Attribute the writes inside the block to `actor`, with `reason` (why the record changed)."""
    metadata = {}
    if actor is not None and getattr(actor, "pk", None) is not None:
        metadata["user"] = actor.pk
    if reason:
        metadata["reason"] = reason
    with pghistory.context(**metadata):
        yield


def history_for(record):
    """The audit events of one record, oldest first."""
    from .models import AuditEvent

    return AuditEvent.objects.filter(
        model=record._meta.label_lower, object_id=str(record.pk)
    ).order_by("seq")


# --- verification -------------------------------------------------------------------------


@dataclass
class Finding:
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"event #{self.seq}" if self.seq is not None else "audit trail"
        return f"{where}: {self.problem}"


@dataclass
class Checkpoint:
    seq: int
    hash: str
    written_at: str

    def as_json(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash, "written_at": self.written_at})


def chain_head() -> Checkpoint | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT seq, hash FROM qms_audit_event ORDER BY seq DESC LIMIT 1")
        row = cursor.fetchone()
    if row is None:
        return None
    return Checkpoint(seq=row[0], hash=row[1], written_at=datetime.now(UTC).isoformat())


def checkpoint_file() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_DIR) / "checkpoints.jsonl"


def write_checkpoint() -> Checkpoint | None:
    """Append the chain head to a file outside the database, so a rewritten or truncated chain
    can be told from the real one later."""
    head = chain_head()
    if head is None:
        return None
    path = checkpoint_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(head.as_json() + "\n")
    return head


def last_checkpoint(path: Path | None = None) -> Checkpoint | None:
    path = path or checkpoint_file()
    if not path.exists():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        return None
    data = json.loads(lines[-1])
    return Checkpoint(seq=int(data["seq"]), hash=data["hash"], written_at=data["written_at"])


_VERIFY_SQL = """
SELECT seq, prev_hash, hash,
       encode(sha256(convert_to(qms_audit_canonical(e), 'UTF8')), 'hex') AS recomputed
FROM qms_audit_event e
ORDER BY seq
"""


def verify_chain(checkpoint: Checkpoint | None = None) -> tuple[int, list[Finding]]:
    """Walk the whole chain; return (events checked, findings). The first finding is the first
    bad event: altered (content does not match its hash), deleted (a gap in the sequence or a
    broken link), inserted (a link that does not match its predecessor)."""
    findings: list[Finding] = []
    checked = 0
    expected_seq = 1
    expected_prev = GENESIS_HASH
    last_seq = 0
    by_seq: dict[int, str] = {}
    with connection.cursor() as cursor:
        cursor.execute(_VERIFY_SQL)
        for seq, prev_hash, stored, recomputed in cursor:
            checked += 1
            last_seq = seq
            if checkpoint is not None and seq == checkpoint.seq:
                by_seq[seq] = stored
            if seq != expected_seq:
                findings.append(
                    Finding(
                        seq,
                        f"sequence gap: expected #{expected_seq} next, found #{seq} "
                        f"(events #{expected_seq}–#{seq - 1} were deleted)",
                    )
                )
            elif prev_hash != expected_prev:
                findings.append(
                    Finding(
                        seq,
                        "link broken: its previous-hash does not match the hash of the event "
                        "before it (an event was inserted or removed before it)",
                    )
                )
            if recomputed != stored:
                findings.append(
                    Finding(seq, "altered: its content does not match its recorded hash")
                )
            expected_seq = seq + 1
            expected_prev = stored
    if checkpoint is not None:
        if last_seq < checkpoint.seq:
            findings.append(
                Finding(
                    None,
                    f"tail cut off: the checkpoint of {checkpoint.written_at} recorded event "
                    f"#{checkpoint.seq}, but the trail ends at #{last_seq}",
                )
            )
        elif by_seq.get(checkpoint.seq) != checkpoint.hash:
            findings.append(
                Finding(
                    checkpoint.seq,
                    f"chain rewritten: its hash differs from the checkpoint of "
                    f"{checkpoint.written_at}",
                )
            )
    return checked, findings
