from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from audit import trail
from embedportal.printable import unsafe_character
from tokens.choices import Scope
from tokens.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create an API token for USER and print its secret, the only time it is shown (the database keeps "
        "a hash). Use it as 'Authorization: Token <secret>'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="default", help="What the token is for (unique among the user's)")
        parser.add_argument("--scope", choices=Scope.values, default=Scope.READ, help="What it may do (default read)")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=settings.EMBEDPORTAL_TOKEN_EXPIRY_DAYS,
            help="Days it is valid (default EMBEDPORTAL_TOKEN_EXPIRY_DAYS, at most EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS)",
        )
        parser.add_argument(
            "--rotate", action="store_true", help="Revoke the user's legacy token and tokens of this name first"
        )

    def handle(self, *args: Any, **o: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: o["username"]})
        except User.DoesNotExist:
            raise CommandError(f"no user {o['username']!r}; create one with `manage.py createsuperuser`") from None
        if not user.is_active:
            raise CommandError(f"user {o['username']!r} is inactive; a token would be refused")
        days, most = o["expires_days"], settings.EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS
        if not 1 <= days <= most:
            raise CommandError(f"--expires-days {days}: between 1 and {most} (EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS)")
        name = o["name"].strip()
        if not name or len(name) > ApiToken._meta.get_field("name").max_length:
            raise CommandError("--name: 1 to 100 characters")
        if problem := unsafe_character(name):
            raise CommandError(f"--name {problem}")
        with transaction.atomic():
            mine = ApiToken.objects.filter(user=user)
            if o["rotate"]:
                revoked = (mine.filter(name=name) | mine.legacy()).revoke()
                self.stderr.write(f"revoked {revoked} token(s)")
            elif mine.filter(name=name, revoked_at=None).exists():
                raise CommandError(f"{o['username']!r} has a token named {name!r}; --rotate replaces it")
            token, secret = ApiToken.objects.issue(user, name, o["scope"], days)
            trail.command(
                self, target=f"token {name!r} of {user.get_username()}" + (", rotated" if o["rotate"] else "")
            )
        expires = f"{token.expiry:%Y-%m-%d %H:%M} UTC"
        self.stderr.write(f"token {token.token_key}… {name!r}, scope {token.scope}, expires {expires}")
        self.stdout.write(secret)
