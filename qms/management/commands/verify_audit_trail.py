"""Check the whole audit trail: every event's hash, every link of the chain, no gap, and every
checkpoint kept outside the database (DESIGN invariant 2). Exits non-zero naming the first bad
event or checkpoint when the trail was altered, had events inserted or deleted, was cut off or
rewritten, when a checkpoint line is forged, when no checkpoint covers a non-empty trail, or
when events have stayed unanchored longer than the checkpoint writer allows."""

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from qms.audit import CheckpointError, checkpoint_file, checkpoints, verify_trail

# The stack writes a checkpoint every 5 minutes; an event older than this without one means
# the writer has stopped.
DEFAULT_MAX_UNANCHORED_MINUTES = 10


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain against every checkpoint kept outside the database."

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoint",
            type=Path,
            action="append",
            help="Checkpoint file; repeat to check several, e.g. an exported copy held by QA or "
            "a sponsor (default: <AUDIT_CHECKPOINT_DIR>/<database>.checkpoints.jsonl).",
        )
        parser.add_argument(
            "--max-unanchored-minutes",
            type=float,
            default=getattr(
                settings, "AUDIT_MAX_UNANCHORED_MINUTES", DEFAULT_MAX_UNANCHORED_MINUTES
            ),
            help="How old the oldest event after the last checkpoint may be before the trail "
            f"fails (default {DEFAULT_MAX_UNANCHORED_MINUTES}).",
        )

    def handle(self, *args, **options):
        paths = options["checkpoint"] or [checkpoint_file()]
        marks = []
        for path in paths:
            try:
                marks.extend(checkpoints(path))
            except CheckpointError as error:
                raise CommandError(f"audit trail NOT OK: bad checkpoint file: {error}") from error
        result = verify_trail(marks)
        if result.findings:
            for finding in result.findings:
                self.stderr.write(str(finding))
            if result.more_findings:
                self.stderr.write(f"… and {result.more_findings} more findings")
            count = len(result.findings) + result.more_findings
            raise CommandError(
                f"audit trail NOT OK: {count} finding(s) in {result.checked} events; "
                f"first: {result.findings[0]}"
            )
        if result.head is None:
            self.stdout.write("audit trail OK: 0 events")
            return
        where = ", ".join(str(path) for path in paths)
        if result.anchor is None:
            raise CommandError(
                f"audit trail NOT OK: no checkpoint covers the {result.checked} events up to "
                f"head #{result.head.seq} ({where} holds none), so a rewritten or cut-off chain "
                "cannot be told from the real one. The stack writes a checkpoint at start and "
                "every 5 minutes; `manage.py audit_checkpoint` writes one now."
            )
        if result.unanchored:
            age = result.unanchored_age or timedelta(0)
            limit = timedelta(minutes=options["max_unanchored_minutes"])
            first = result.anchor.seq + 1
            if age > limit:
                raise CommandError(
                    f"audit trail NOT OK: {result.unanchored} events after checkpoint seq "
                    f"{result.anchor.seq} are not anchored, the oldest (#{first}, written "
                    f"{result.unanchored_since.isoformat()}) for {_minutes(age)}, more than "
                    f"{_minutes(limit)}: the checkpoint writer has stopped (is celery beat "
                    "running?). Check the trail, then `manage.py audit_checkpoint`."
                )
            self.stderr.write(
                f"warning: not yet anchored: {result.unanchored} events after checkpoint seq "
                f"{result.anchor.seq} (the oldest, #{first}, is {_minutes(age)} old)"
            )
        self.stdout.write(
            f"audit trail OK: {result.checked} events, head #{result.head.seq} {result.head.hash}"
        )
        self.stdout.write(f"matches {len(marks)} checkpoint(s), the last {result.anchor}")


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:.1f} min"
