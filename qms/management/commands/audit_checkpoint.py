"""Record the audit chain's head (sequence, hash, time, sealed with a MAC) in an append-only file
outside the database, so that a later `verify_audit_trail` can tell a cut-off or rewritten chain
from the real one; and hand the checkpoints to QA or the sponsors, so the anchor is also held
outside the CMO's systems."""

import sys
from pathlib import Path

from django.core.mail import EmailMessage
from django.core.management.base import BaseCommand, CommandError

from qms.audit import (
    CheckpointConflict,
    CheckpointError,
    checkpoint_file,
    checkpoints,
    write_checkpoint,
)


class Command(BaseCommand):
    help = (
        "Append the audit chain's head to the checkpoint file outside the database, or export "
        "the checkpoints to a file or by e-mail."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--file",
            type=Path,
            help="Checkpoint file (default: <AUDIT_CHECKPOINT_DIR>/<database>.checkpoints.jsonl).",
        )
        parser.add_argument(
            "--if-moved",
            action="store_true",
            help="Write nothing when the last checkpoint already records the head (the start of "
            "the stack).",
        )
        parser.add_argument(
            "--export",
            metavar="FILE",
            help="Write all checkpoint lines to FILE ('-' for standard output), after a "
            "checkpoint of the current head if it moved.",
        )
        parser.add_argument(
            "--email",
            metavar="ADDRESS",
            action="append",
            default=[],
            help="E-mail the checkpoint lines to ADDRESS (repeatable), one message each.",
        )
        parser.add_argument(
            "--sponsors",
            action="store_true",
            help="Also e-mail them to the contact address of every active sponsor.",
        )

    def handle(self, *args, **options):
        path = options["file"] or checkpoint_file()
        recipients = list(options["email"])
        if options["sponsors"]:
            recipients += _sponsor_contacts()
        exporting = options["export"] is not None or recipients or options["sponsors"]
        try:
            head = write_checkpoint(path, only_if_moved=bool(exporting or options["if_moved"]))
        except CheckpointConflict as error:
            raise CommandError(str(error)) from error
        if head is None:
            self.stdout.write("audit trail is empty: no checkpoint written")
            if not exporting:
                return
        elif not exporting:
            self.stdout.write(
                f"audit checkpoint #{head.seq} {head.hash} at {head.written_at} → {path}"
            )
            return
        if not path.exists():
            raise CommandError(f"no checkpoint file {path} to export")
        content = path.read_text(encoding="utf-8")
        try:
            count = len(checkpoints(path))
        except CheckpointError as error:
            raise CommandError(f"not exported: {error}") from error
        if options["export"] == "-":
            sys.stdout.write(content)
        elif options["export"] is not None:
            target = Path(options["export"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            self.stdout.write(f"{count} audit checkpoint(s), the last {head} → {target}")
        if options["sponsors"] and not recipients:
            self.stderr.write("warning: no active sponsor has a contact e-mail address")
        for address in dict.fromkeys(recipients):
            _send(address, path.name, content, count, head)
            self.stdout.write(f"{count} audit checkpoint(s), the last {head} → {address}")


def _sponsor_contacts() -> list[str]:
    from sponsors.models import Sponsor

    return [
        email
        for email in Sponsor.objects.filter(is_active=True)
        .exclude(contact_email="")
        .values_list("contact_email", flat=True)
    ]


def _send(address: str, filename: str, content: str, count: int, head) -> None:
    """One message per recipient, so no sponsor learns who else receives them."""
    message = EmailMessage(
        subject=f"Audit trail checkpoints: head #{head.seq}" if head else "Audit trail checkpoints",
        body=(
            "Attached are the checkpoints of the QMS audit trail: each line records the "
            "sequence number and hash of the chain head at a point in time.\n\n"
            f"Checkpoints: {count}; the last: {head}.\n\n"
            "Please keep this message. Holding these lines outside the contract manufacturer's "
            "systems lets anyone check later, with `manage.py verify_audit_trail --checkpoint "
            "FILE`, that no audit event up to them was altered, removed or rewritten.\n"
        ),
        to=[address],
    )
    message.attach(filename, content, "application/jsonl")
    message.send()
