from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

OPERATORS = "operators"
ACCESS_ALL_NATURAL_KEY = ("access_all_collections", "pipeline", "collection")


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
        # Platform operators see every team's collections; add their users to this group.
        operators, _ = Group.objects.get_or_create(name=OPERATORS)
        operators.permissions.add(Permission.objects.get_by_natural_key(*ACCESS_ALL_NATURAL_KEY))
        self.stdout.write(f"Group {OPERATORS!r} sees every team's collections.")
