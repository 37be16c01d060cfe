from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from audit import trail


class Command(BaseCommand):
    help = "Print the API token of USER (created if missing). Use it as 'Authorization: Token <key>'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--rotate", action="store_true", help="Replace an existing token with a new one")

    def handle(self, *args: Any, **o: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: o["username"]})
        except User.DoesNotExist:
            raise CommandError(f"no user {o['username']!r}; create one with `manage.py createsuperuser`") from None
        if not user.is_active:
            raise CommandError(f"user {o['username']!r} is inactive; a token would be refused")
        if o["rotate"]:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        trail.command(self, target=f"token of {user.get_username()}" + (", rotated" if o["rotate"] else ""))
        self.stdout.write(token.key)
