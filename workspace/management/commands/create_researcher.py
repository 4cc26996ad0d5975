"""``python manage.py create_researcher USERNAME [--staff]``: a researcher account."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import DomainError
from workspace.services import researcher_create


class Command(BaseCommand):
    help = (
        "Create an active researcher USERNAME with a generated password, printed once (no "
        "e-mail is sent: pass it on). A researcher sees the studies they own or are a member "
        "of; --staff sees every study. An existing username is an error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--staff", action="store_true", help="a staff user: sees and runs every study"
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            user, password = researcher_create(
                username=str(options["username"]), staff=bool(options["staff"])
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        role = "staff researcher" if user.is_staff else "researcher"
        self.stdout.write(f"Created {role} {user.get_username()!r} with password: {password}")
        self.stdout.write("Log in at /login/; change the password on the account page.")
