"""``python manage.py create_researcher USERNAME [--staff] [--email E] [--invite]``: a
researcher account, with a printed password or a one-time link that sets one."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import DomainError
from workspace.services import password_link, researcher_create


class Command(BaseCommand):
    help = (
        "Create an active researcher USERNAME. Without --invite a generated password is "
        "printed once; with --invite the account has no password and a one-time link that "
        "sets it is printed (valid IQA_PASSWORD_LINK_DAYS days). --email lets the researcher "
        "reset a forgotten password by e-mail. A researcher sees the studies they own or are a "
        "member of; --staff sees every study. An existing username is an error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--staff", action="store_true", help="a staff user: sees and runs every study"
        )
        parser.add_argument("--email", default="", help="the address password resets go to")
        parser.add_argument(
            "--invite",
            action="store_true",
            help="no password: print a one-time link that sets it",
        )
        parser.add_argument(
            "--base-url",
            default=settings.IQA_BASE_URL or "http://127.0.0.1:8000",
            help="the platform's address as researchers reach it, for the link "
            "(default IQA_BASE_URL, else http://127.0.0.1:8000)",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            user, password = researcher_create(
                username=str(options["username"]),
                staff=bool(options["staff"]),
                email=str(options["email"]),
                invite=bool(options["invite"]),
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        role = "staff researcher" if user.is_staff else "researcher"
        if password is None:
            link = password_link(user=user, base_url=str(options["base_url"]))
            self.stdout.write(f"Created {role} {user.get_username()!r} without a password.")
            self.stdout.write(f"Send them this link; it sets the password and works once:\n{link}")
            return
        self.stdout.write(f"Created {role} {user.get_username()!r} with password: {password}")
        self.stdout.write("Log in at /login/; change the password on the account page.")
