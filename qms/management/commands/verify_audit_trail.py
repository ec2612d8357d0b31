"""Check the whole audit trail: every event's hash, every link of the chain, no gap, and the
checkpoints kept outside the database (DESIGN invariant 2). Exits non-zero naming the first bad
event when the trail was altered, had events inserted or deleted, was cut off or rewritten."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from qms.audit import checkpoint_file, checkpoints, verify_trail


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain and its checkpoints."

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoint",
            type=Path,
            help="Checkpoint file (default: <AUDIT_CHECKPOINT_DIR>/<database>.checkpoints.jsonl).",
        )

    def handle(self, *args, **options):
        path = options["checkpoint"] or checkpoint_file()
        try:
            marks = checkpoints(path)
        except ValueError as error:
            raise CommandError(f"cannot read the checkpoints: {error}") from error
        if not marks:
            self.stderr.write(
                f"warning: no checkpoint in {path}: a cut-off or rewritten tail cannot be "
                "detected (run audit_checkpoint regularly)"
            )
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
        self.stdout.write(
            f"audit trail OK: {result.checked} events, head #{result.head.seq} {result.head.hash}"
        )
        if marks:
            self.stdout.write(f"matches {len(marks)} checkpoint(s), the last {marks[-1]}")
