from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    # The worker schedules are not set up here: migrate registers them (post_migrate), so a
    # deployment that only migrates (Kubernetes) has them too.
    help = "Local set-up for `make run`: an admin login, printed and stored in the data directory."

    def handle(self, *args: Any, **o: Any) -> None:
        User = get_user_model()
        path = settings.DATA_DIR / "admin-password"
        user = User.objects.filter(username="admin").first()
        if user is None or not path.exists():
            password = secrets.token_urlsafe(12)
            user = user or User(username="admin", email="admin@localhost")
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            path.write_text(password)
            path.chmod(0o600)
        self.stdout.write(f"Admin login: admin / {path.read_text().strip()}  (stored in {path})")
