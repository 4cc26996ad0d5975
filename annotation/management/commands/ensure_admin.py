"""``python manage.py ensure_admin``: a researcher account for a fresh laptop install."""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the superuser 'admin' if no superuser exists. The password is "
        "DJANGO_ADMIN_PASSWORD, or a random one saved to <IQA_DATA_DIR>/admin_password."
    )

    def handle(self, *args: object, **options: object) -> None:
        user_model = get_user_model()
        saved = settings.DATA_DIR / "admin_password"
        # An 'admin' made by the ownership migration (studies needed an owner) has no usable
        # password yet: it gets one here like a new one.
        admin = user_model.objects.filter(username="admin").first()
        if admin is not None and not admin.has_usable_password():
            password = os.environ.get("DJANGO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            admin.set_password(password)
            admin.save(update_fields=["password"])
            self._save(saved, password)
            self.stdout.write(f"Set the password of 'admin': {password}")
            return
        if user_model.objects.filter(is_superuser=True).exists():
            if saved.exists():
                self.stdout.write(f"admin password: {saved.read_text().strip()} (from {saved})")
            return
        password = os.environ.get("DJANGO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "", password)
        self._save(saved, password)
        self.stdout.write(f"Created superuser 'admin' with password: {password}")

    @staticmethod
    def _save(saved, password: str) -> None:
        if not os.environ.get("DJANGO_ADMIN_PASSWORD"):
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(password)
            saved.chmod(0o600)
