"""API tokens: django-rest-knox's hashed token plus a name, a scope, the last use and revocation; the secret
is shown once, only its digest and first characters are stored. Notes: docs/api.md, "Tokens"."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.db.models import Q
from django.utils import timezone
from knox.models import AbstractAuthToken, get_digest_token
from knox.settings import CONSTANTS, knox_settings

from tokens.choices import Scope

# A token's last use is written at most this often: one UPDATE a minute, not one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenQuerySet(models.QuerySet):
    def legacy(self) -> ApiTokenQuerySet:
        """DRF authtoken keys hashed by tokens 0002: without the prefix of new tokens."""
        return self.exclude(token_key__startswith=knox_settings.TOKEN_PREFIX)

    def issue(self, user: AbstractBaseUser, name: str, scope: str, days: int) -> tuple[ApiToken, str]:
        """A new token and its secret (the only time the secret exists outside the client)."""
        token = self.model(user=user, name=name, scope=scope)
        secret = token.set_secret(days)
        token.save()
        return token, secret

    def revoke(self) -> int:
        return self.filter(revoked_at=None).update(revoked_at=timezone.now())


class ApiToken(AbstractAuthToken):
    # knox makes the digest the primary key: it would be in every admin URL. A plain id instead.
    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=CONSTANTS.DIGEST_LENGTH, unique=True)
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=Q(revoked_at=None),
                name="tokens_apitoken_one_unrevoked_name",
                violation_error_message="this user has an unrevoked token of that name; revoke it or pick another",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.token_key}…)"

    @property
    def legacy(self) -> bool:
        return not self.token_key.startswith(knox_settings.TOKEN_PREFIX)

    def set_secret(self, days: int) -> str:
        """A new secret for this unsaved token, valid `days`; only its digest and first characters are kept."""
        digest, secret = get_digest_token()
        self.digest, self.token_key = digest, secret[: CONSTANTS.TOKEN_KEY_LENGTH]
        self.expiry = timezone.now() + timedelta(days=days)
        return secret

    def touch(self) -> None:
        now = timezone.now()
        if self.last_used is None or now - self.last_used >= LAST_USED_RESOLUTION:
            # The condition keeps concurrent requests of one token to one write.
            stale = Q(last_used=None) | Q(last_used__lte=now - LAST_USED_RESOLUTION)
            ApiToken.objects.filter(stale, pk=self.pk).update(last_used=now)
