"""Record the audit chain's head (sequence, hash, time) in a file outside the database, so that a
later `verify_audit_trail` can tell a cut-off or rewritten chain from the real one."""

from pathlib import Path

from django.core.management.base import BaseCommand

from qms.audit import checkpoint_file, write_checkpoint


class Command(BaseCommand):
    help = "Append the audit chain's head to the checkpoint file outside the database."

    def add_arguments(self, parser):
        parser.add_argument(
            "--file",
            type=Path,
            help="Checkpoint file (default: <AUDIT_CHECKPOINT_DIR>/<database>.checkpoints.jsonl).",
        )

    def handle(self, *args, **options):
        path = options["file"] or checkpoint_file()
        head = write_checkpoint(path)
        if head is None:
            self.stdout.write("audit trail is empty: no checkpoint written")
            return
        self.stdout.write(f"audit checkpoint #{head.seq} {head.hash} at {head.written_at} → {path}")
