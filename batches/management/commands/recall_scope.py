"""`manage.py recall_scope LOT`: the recall-scope table of the web page on the command line, as a
CMO user (by default the first superuser) sees it across the sponsors."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from batches import exports
from batches.models import Lot
from batches.selectors import lot_get


class Command(BaseCommand):
    help = "Print the forward recall scope (or, with --backward, the trace) of a lot."

    def add_arguments(self, parser):
        parser.add_argument("lot_number", help="The lot to start from.")
        parser.add_argument(
            "--backward", action="store_true", help="Trace back to every ancestor lot."
        )
        parser.add_argument("--csv", action="store_true", help="Print CSV instead of a table.")
        parser.add_argument(
            "--user",
            dest="username",
            help="Read as this user, within their sponsor scope (default: the first superuser).",
        )

    def handle(self, *args, lot_number, backward, csv, username, **options):
        user = self._user(username)
        try:
            lot = lot_get(user=user, lot_number=lot_number)
        except Lot.DoesNotExist as missing:
            if Lot.objects.filter(lot_number=lot_number).exists():
                raise CommandError(
                    f"Lot {lot_number} is outside the sponsor scope of {user.get_username()}."
                ) from missing
            raise CommandError(f"Lot {lot_number} does not exist.") from missing
        direction = "backward" if backward else "forward"
        genealogy = exports.genealogy_for(lot=lot, user=user, direction=direction)
        output = exports.recall_csv(genealogy) if csv else exports.recall_table(genealogy)
        self.stdout.write(output, ending="")

    def _user(self, username: str | None):
        users = get_user_model().objects.filter(is_active=True)
        if username:
            user = users.filter(username=username).first()
            if user is None:
                raise CommandError(f"User {username} does not exist or is inactive.")
            return user
        user = users.filter(is_superuser=True).order_by("pk").first()
        if user is None:
            raise CommandError("No active superuser to read as: pass --user USERNAME.")
        return user
