"""The audit trail: database triggers capture every create/update/delete of a GxP record into
one append-only, hash-chained table (21 CFR 11.10(e)); this module registers the audited tables,
carries actor and reason into the database, and verifies the chain.

Capture is by PostgreSQL trigger, so `QuerySet.update()`, `bulk_create`, the admin, raw SQL and
TRUNCATE are all recorded. Actor and reason travel in `pghistory.context`, which sets a
transaction-local setting that the trigger reads."""

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pghistory
import pghistory.runtime
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils.crypto import constant_time_compare, salted_hmac
from psycopg.pq import TransactionStatus

GENESIS_HASH = "0" * 64
TRIGGER_NAME = "qms_audit_capture"
TRUNCATE_TRIGGER_NAME = "qms_audit_capture_truncate"


@dataclass(frozen=True)
class AuditSpec:
    label: str
    sponsor_column: str
    pk_column: str
    excluded: tuple[str, ...]


_REGISTRY: dict[type, AuditSpec] = {}


def audited(model=None, *, sponsor: str | None = "sponsor_id", exclude: tuple[str, ...] = ()):
    """Register a model whose table gets the audit capture triggers. `sponsor` names the field
    holding the owning sponsor's id (None for site-wide records); `exclude` names fields whose
    changes are not audit-relevant (an update touching only those writes no event)."""

    def register(cls):
        opts = cls._meta
        _REGISTRY[cls] = AuditSpec(
            label=opts.label_lower,
            sponsor_column=opts.get_field(sponsor).column if sponsor else "",
            pk_column=opts.pk.column,
            excluded=tuple(opts.get_field(name).column for name in exclude),
        )
        return cls

    return register(model) if model is not None else register


def audited_models() -> dict[type, AuditSpec]:
    return dict(_REGISTRY)


def install_capture_triggers(using: str = "default") -> int:
    """(Re)install the capture triggers on every registered table that exists: one AFTER row
    trigger for insert/update/delete and one BEFORE TRUNCATE trigger, both ENABLE ALWAYS so
    `session_replication_role = replica` does not silence them. Idempotent."""
    conn = connections[using]
    with conn.cursor() as cursor:
        existing = set(conn.introspection.table_names(cursor))
        if "qms_audit_event" not in existing:
            return 0
        cursor.execute(
            "SELECT count(DISTINCT proname) FROM pg_proc WHERE proname IN "
            "('qms_audit_capture', 'qms_audit_capture_truncate', 'qms_audit_append')"
        )
        if cursor.fetchone()[0] != 3:
            raise RuntimeError(
                f"The audit trail functions in database {conn.settings_dict['NAME']!r} are from "
                "an earlier version of migration qms.0002_audit_trail: recreate the database."
            )
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
                f"CREATE OR REPLACE TRIGGER {TRIGGER_NAME} "
                f"AFTER INSERT OR UPDATE OR DELETE ON {quoted} "
                f"FOR EACH ROW EXECUTE FUNCTION qms_audit_capture({args})"
            )
            cursor.execute(
                f"CREATE OR REPLACE TRIGGER {TRUNCATE_TRIGGER_NAME} "
                f"BEFORE TRUNCATE ON {quoted} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION qms_audit_capture_truncate({args})"
            )
            cursor.execute(f"ALTER TABLE {quoted} ENABLE ALWAYS TRIGGER {TRIGGER_NAME}")
            cursor.execute(f"ALTER TABLE {quoted} ENABLE ALWAYS TRIGGER {TRUNCATE_TRIGGER_NAME}")
            count += 1
    return count


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@contextmanager
def audit_context(*, actor=None, reason: str | None = None):
    """Attribute the writes inside the block to `actor`, with `reason` (why the record changed).

    Inside an outer context (HistoryMiddleware, or another `audit_context`) the block adds to it
    and the outer actor and reason apply again after the block. The database setting is local
    to the transaction, so when the block ends inside a transaction that goes on, it is cleared:
    later writes in that transaction are not attributed to this block's actor and reason."""
    metadata = {}
    if actor is not None and getattr(actor, "pk", None) is not None:
        metadata["user"] = actor.pk
    if reason:
        metadata["reason"] = reason
    outer = getattr(pghistory.runtime._tracker, "value", None)
    missing = object()
    saved = {key: outer.metadata.get(key, missing) for key in metadata} if outer else {}
    try:
        with pghistory.context(**metadata):
            yield
    finally:
        if outer is not None:
            for key, value in saved.items():
                if value is missing:
                    outer.metadata.pop(key, None)
                else:
                    outer.metadata[key] = value
        else:
            _clear_database_context()


def _clear_database_context() -> None:
    if not connection.in_atomic_block or connection.needs_rollback:
        return
    raw = connection.connection
    if raw is None or raw.info.transaction_status != TransactionStatus.INTRANS:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('pghistory.context_metadata', '', true)")


def history_for(record):
    """The audit events of one record, oldest first."""
    from .models import AuditEvent

    return AuditEvent.objects.filter(
        model=record._meta.label_lower, object_id=str(record.pk)
    ).order_by("seq")


# --- checkpoints --------------------------------------------------------------------------

CHECKPOINT_KIND = "qms.audit.checkpoint"
CHECKPOINT_VERSION = 1
_MAC_SALT = "qms.audit.checkpoint.v1"


class CheckpointError(ValueError):
    """A checkpoint file holds a line that is not a checkpoint, or one whose MAC does not match
    (forged, altered, or sealed with another key)."""


class CheckpointConflict(RuntimeError):
    """The chain no longer carries the hash the last checkpoint recorded: it was rewritten, cut
    off, or the database was recreated. No new checkpoint is written over it."""


def _checkpoint_keys() -> list[str]:
    """The checkpoints are sealed with a key the database does not hold: the signature seal
    key (SECRET_KEY where that is not set). Lines sealed with a retired key in
    SIGNATURE_SEAL_KEY_FALLBACKS stay verifiable."""
    seal = getattr(settings, "SIGNATURE_SEAL_KEY", "")
    if not seal:
        return [settings.SECRET_KEY]
    return [seal, *getattr(settings, "SIGNATURE_SEAL_KEY_FALLBACKS", [])]


@dataclass(frozen=True)
class Checkpoint:
    """The chain head as recorded outside the database at `written_at` (UTC, ISO 8601)."""

    seq: int
    hash: str
    written_at: str
    database: str = ""

    def sealed_fields(self) -> dict:
        return {
            "kind": CHECKPOINT_KIND,
            "v": CHECKPOINT_VERSION,
            "database": self.database,
            "seq": self.seq,
            "hash": self.hash,
            "written_at": self.written_at,
        }

    def mac(self, key: str | None = None) -> str:
        """HMAC-SHA256 of the checkpoint's fields (canonical JSON), keyed outside the database."""
        message = json.dumps(self.sealed_fields(), sort_keys=True, separators=(",", ":"))
        secret = key if key is not None else _checkpoint_keys()[0]
        return salted_hmac(_MAC_SALT, message, secret=secret, algorithm="sha256").hexdigest()

    def as_json(self) -> str:
        """One self-describing line: what it is, the head it records, and its MAC."""
        return json.dumps({**self.sealed_fields(), "mac": self.mac()})

    def __str__(self) -> str:
        return f"#{self.seq} {self.hash} at {self.written_at}"

    @classmethod
    def from_line(cls, line: str) -> "Checkpoint":
        """Parse and authenticate one line; CheckpointError says what is wrong with it."""
        try:
            data = json.loads(line)
            mark = cls(
                seq=int(data["seq"]),
                hash=str(data["hash"]),
                written_at=str(data["written_at"]),
                database=str(data.get("database", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"not a checkpoint ({error})") from error
        mac = data.get("mac")
        if not isinstance(mac, str) or not mac:
            raise CheckpointError(
                f"checkpoint #{mark.seq} of {mark.written_at} carries no MAC: it is forged or "
                "from before checkpoints were sealed"
            )
        if not any(constant_time_compare(mac, mark.mac(key)) for key in _checkpoint_keys()):
            raise CheckpointError(
                f"checkpoint #{mark.seq} of {mark.written_at} is forged: its MAC does not match "
                "(the line was written or altered without the seal key, or with another key)"
            )
        return mark


def chain_head(using: str = "default") -> Checkpoint | None:
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute("SELECT seq, hash FROM qms_audit_event ORDER BY seq DESC LIMIT 1")
        row = cursor.fetchone()
    if row is None:
        return None
    return Checkpoint(
        seq=row[0],
        hash=row[1],
        written_at=datetime.now(UTC).isoformat(),
        database=conn.settings_dict["NAME"],
    )


def checkpoint_file(using: str = "default") -> Path:
    """Where the checkpoints of this database are kept: one file per database name, so the
    development database, the test databases and production never mix their heads."""
    name = connections[using].settings_dict["NAME"]
    return Path(settings.AUDIT_CHECKPOINT_DIR) / f"{name}.checkpoints.jsonl"


def _last_line(fd: int) -> str:
    """The last non-empty line of the open file (read from its end only)."""
    size = os.fstat(fd).st_size
    tail = b""
    offset = size
    while offset > 0:
        step = min(4096, offset)
        offset -= step
        tail = os.pread(fd, step, offset) + tail
        lines = [line for line in tail.split(b"\n") if line.strip()]
        if len(lines) > 1 or (lines and offset == 0):
            return lines[-1].decode("utf-8", errors="replace")
    return ""


def _hash_at(seq: int, using: str) -> str | None:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT hash FROM qms_audit_event WHERE seq = %s", [seq])
        row = cursor.fetchone()
    return row[0] if row else None


def write_checkpoint(
    path: Path | None = None, using: str = "default", *, only_if_moved: bool = False
) -> Checkpoint | None:
    """Append the chain head, sealed with a MAC, to an append-only file outside the database, so
    a rewritten or truncated chain can be told from the real one later.

    With `only_if_moved`, nothing is appended when the last line already records the head (the
    periodic writer and the start of the stack: idempotent). Returns the checkpoint that anchors
    the head (the new line, or the last one when the head has not moved); None when the trail
    is empty. Raises CheckpointConflict, writing nothing, when the event at the last
    checkpoint's sequence no longer carries the hash it recorded."""
    path = Path(path) if path is not None else checkpoint_file(using)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        # One writer at a time, so "has the head moved?" and the append are one step.
        fcntl.flock(fd, fcntl.LOCK_EX)
        head = chain_head(using)
        if head is None:
            return None
        try:
            last = Checkpoint.from_line(_last_line(fd))
        except CheckpointError:
            last = None  # empty file, or a bad last line: verify_audit_trail reports it
        if last is not None:
            found = _hash_at(last.seq, using) if last.seq <= head.seq else None
            if found != last.hash:
                state = (
                    "is missing"
                    if found is None
                    else f"carries hash {found[:16]}… instead of {last.hash[:16]}…"
                )
                raise CheckpointConflict(
                    f"the last checkpoint in {path} ({last}) does not match the audit trail: "
                    f"event #{last.seq} {state}. The chain was rewritten or cut off, or the "
                    "database was recreated; run verify_audit_trail. No checkpoint written."
                )
            if only_if_moved and last.seq == head.seq:
                return last
        os.write(fd, (head.as_json() + "\n").encode("utf-8"))
        os.fsync(fd)
        return head
    finally:
        os.close(fd)


def checkpoints(path: Path | None = None) -> list[Checkpoint]:
    """Every checkpoint in the file, oldest first (none when the file does not exist). Raises
    CheckpointError naming the first line that is not an authentic checkpoint."""
    path = Path(path) if path is not None else checkpoint_file()
    if not path.exists():
        return []
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(Checkpoint.from_line(line))
        except CheckpointError as error:
            raise CheckpointError(f"{path}, line {number}: {error}") from error
    return found


def last_checkpoint(path: Path | None = None) -> Checkpoint | None:
    found = checkpoints(path)
    return found[-1] if found else None


# --- verification -------------------------------------------------------------------------


@dataclass
class Finding:
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"event #{self.seq}" if self.seq is not None else "audit trail"
        return f"{where}: {self.problem}"


@dataclass
class Verification:
    checked: int = 0
    head: Checkpoint | None = None
    findings: list[Finding] = field(default_factory=list)
    more_findings: int = 0
    # The checkpoint with the highest sequence, the events after it (not yet anchored outside
    # the database), when the oldest of those was written, and the database clock at the walk.
    anchor: Checkpoint | None = None
    unanchored: int = 0
    unanchored_since: datetime | None = None
    checked_at: datetime | None = None

    @property
    def unanchored_age(self) -> timedelta | None:
        if self.unanchored_since is None or self.checked_at is None:
            return None
        return self.checked_at - self.unanchored_since

    @property
    def is_ok(self) -> bool:
        return not self.findings


def _field(value) -> str:
    if value is None:
        return "~"
    text = str(value)
    return f"{len(text)}:{text}"


def canonical_text(
    *,
    seq,
    prev_hash,
    occurred_at: datetime,
    actor_id,
    actor_username,
    model,
    object_id,
    action,
    changes_text,
    reason,
    sponsor_id,
) -> str:
    """What an event's hash covers, exactly as the database's `qms_audit_canonical` builds it:
    each column as `<length>:<text>` ('~' for NULL), in a fixed order. `changes_text` is the
    `changes` column as PostgreSQL prints it (`changes::text`)."""
    stamp = occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "".join(
        _field(value)
        for value in (
            seq,
            prev_hash,
            stamp,
            actor_id,
            actor_username,
            model,
            object_id,
            action,
            changes_text,
            reason,
            sponsor_id,
        )
    )


def _hash(row: tuple) -> str:
    (
        seq,
        prev_hash,
        _stored,
        occurred_at,
        actor_id,
        actor_username,
        model,
        object_id,
        action,
        changes_text,
        reason,
        sponsor_id,
    ) = row
    text = canonical_text(
        seq=seq,
        prev_hash=prev_hash,
        occurred_at=occurred_at,
        actor_id=actor_id,
        actor_username=actor_username,
        model=model,
        object_id=object_id,
        action=action,
        changes_text=changes_text,
        reason=reason,
        sponsor_id=sponsor_id,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_WALK_SQL = """
SELECT seq, prev_hash, hash, occurred_at, actor_id, actor_username, model, object_id, action,
       changes::text, reason, sponsor_id
FROM qms_audit_event
ORDER BY seq
"""


def verify_trail(
    checkpoint: Checkpoint | Iterable[Checkpoint] | None = None,
    *,
    using: str = "default",
    max_findings: int = 1000,
) -> Verification:
    """Walk the whole chain in one snapshot, recomputing every hash in Python (the database's
    own hash function is not trusted), and compare it with the checkpoints given.

    Findings, first bad event first: `deleted` (a gap in the sequence, or a tail shorter than a
    checkpoint), `inserted` (an event its successor does not link to), `link broken` (an
    event's previous-hash is not its predecessor's hash), `altered` (content that does not
    match its hash), `rewritten` (a consistent chain whose hash differs from a checkpoint).
    Read the checkpoints before calling, so none is newer than the snapshot walked."""
    if checkpoint is None:
        marks: list[Checkpoint] = []
    elif isinstance(checkpoint, Checkpoint):
        marks = [checkpoint]
    else:
        marks = list(checkpoint)
    wanted = {mark.seq for mark in marks}
    anchor = max(marks, key=lambda mark: mark.seq) if marks else None
    anchor_seq = anchor.seq if anchor is not None else 0
    seen: dict[int, str] = {}
    result = Verification(anchor=anchor)
    chain: list[Finding] = []

    def report(finding: Finding) -> None:
        if len(chain) < max_findings:
            chain.append(finding)
        else:
            result.more_findings += 1

    pending: list[Finding] = []

    def flush() -> None:
        for finding in pending:
            report(finding)
        pending.clear()

    conn = connections[using]
    expected_seq = 1
    expected_prev = GENESIS_HASH
    before_prev: str | None = None
    last: tuple | None = None
    with conn.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        result.checked_at = cursor.fetchone()[0]
    with transaction.atomic(using=using), conn.chunked_cursor() as cursor:
        cursor.execute(_WALK_SQL)
        while rows := cursor.fetchmany(2000):
            for row in rows:
                seq, prev_hash, stored = row[0], row[1], row[2]
                result.checked += 1
                if seq in wanted:
                    seen[seq] = stored
                if seq > anchor_seq:
                    result.unanchored += 1
                    if result.unanchored_since is None:
                        result.unanchored_since = row[3]
                altered = _hash(row) != stored
                if seq != expected_seq:
                    flush()
                    missing = (
                        f"event #{expected_seq} is missing"
                        if seq == expected_seq + 1
                        else f"events #{expected_seq}–#{seq - 1} are missing"
                    )
                    report(
                        Finding(
                            expected_seq,
                            f"deleted: the sequence jumps from #{expected_seq - 1} to #{seq} "
                            f"({missing})",
                        )
                    )
                elif prev_hash == expected_prev:
                    flush()
                elif prev_hash == before_prev:
                    # This event links past its predecessor to the one before: the predecessor
                    # was put into the chain afterwards.
                    pending.clear()
                    report(
                        Finding(
                            seq - 1,
                            f"inserted: event #{seq} links to event #{seq - 2}, not to "
                            f"#{seq - 1}, so #{seq - 1} was put into the chain afterwards",
                        )
                    )
                else:
                    flush()
                    problem = (
                        "link broken: its previous-hash is not the hash of event "
                        f"#{seq - 1} (an event before it was altered, inserted or removed)"
                    )
                    if altered:
                        problem += "; and its content does not match its hash"
                    pending.append(Finding(seq, problem))
                    altered = False
                if altered:
                    report(Finding(seq, "altered: its content does not match its hash"))
                before_prev = expected_prev if seq == expected_seq else None
                expected_seq = seq + 1
                expected_prev = stored
                last = row
    flush()
    last_seq = last[0] if last is not None else 0
    if last is not None:
        result.head = Checkpoint(
            seq=last[0],
            hash=last[2],
            written_at=datetime.now(UTC).isoformat(),
            database=conn.settings_dict["NAME"],
        )
    result.findings = chain + _checkpoint_findings(marks, seen, last_seq)
    result.findings.sort(key=lambda f: (f.seq is None, f.seq or 0))
    return result


def _checkpoint_findings(
    marks: list[Checkpoint], seen: dict[int, str], last_seq: int
) -> list[Finding]:
    findings = []
    beyond = [mark for mark in marks if mark.seq > last_seq]
    if beyond:
        longest = max(beyond, key=lambda mark: mark.seq)
        findings.append(
            Finding(
                last_seq + 1,
                f"deleted: the checkpoint of {longest.written_at} recorded the chain up to "
                f"#{longest.seq}, but the trail ends at #{last_seq} (events "
                f"#{last_seq + 1}–#{longest.seq} were cut off)",
            )
        )
    good = None
    for mark in sorted((m for m in marks if m.seq <= last_seq), key=lambda m: m.seq):
        if mark.seq not in seen:
            findings.append(
                Finding(
                    mark.seq,
                    f"deleted: the checkpoint of {mark.written_at} recorded event #{mark.seq} "
                    f"with hash {mark.hash[:16]}…, but the trail has no event #{mark.seq}",
                )
            )
            break
        if seen[mark.seq] == mark.hash:
            good = mark
            continue
        since = (
            f"after event #{good.seq}, which still matches the checkpoint of {good.written_at}"
            if good is not None
            else "at or before it"
        )
        findings.append(
            Finding(
                mark.seq,
                f"rewritten: its hash {seen[mark.seq][:16]}… differs from "
                f"{mark.hash[:16]}… recorded by the checkpoint of {mark.written_at}; the chain "
                f"was rewritten {since}",
            )
        )
        break
    return findings


def verify_chain(
    checkpoint: Checkpoint | Iterable[Checkpoint] | None = None,
) -> tuple[int, list[Finding]]:
    """Walk the whole chain; return (events checked, findings), the first bad event first."""
    result = verify_trail(checkpoint)
    return result.checked, result.findings
