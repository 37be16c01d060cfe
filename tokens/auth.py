"""Token authentication: knox's over tokens.models.ApiToken, refusing (401) a revoked or expired token,
recording the last use, throttling (429) an address that sent too many bad tokens."""

from __future__ import annotations

from hmac import compare_digest
from typing import Any

from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.settings import CONSTANTS
from rest_framework.authentication import get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from embedportal.api.throttles import BadTokenThrottled
from tokens.models import ApiToken


class KnoxOrBearer(KnoxTokenAuthentication):
    def authenticate(self, request: Any) -> Any:
        # "Bearer" (RFC 6750, what most HTTP clients send and what /metrics takes) means "Token" here:
        # knox alone ignored it and answered "credentials were not provided".
        words = get_authorization_header(request).split()
        if words and words[0].lower() == b"bearer":
            if len(words) != 2:
                raise AuthenticationFailed("send the token as 'Authorization: Token <token>' (or Bearer)")
            return self.authenticate_credentials(words[1])
        return super().authenticate(request)


class TokenAuthentication(BadTokenThrottled, KnoxOrBearer):
    def authenticate_credentials(self, key: bytes) -> tuple[Any, ApiToken]:
        try:
            secret = key.decode()
        except UnicodeDecodeError:
            raise AuthenticationFailed("invalid token") from None
        digest = hash_token(secret)
        # knox's lookup: by the clear first characters, then the digest compared in constant time.
        for token in ApiToken.objects.filter(token_key=secret[: CONSTANTS.TOKEN_KEY_LENGTH]).select_related("user"):
            if compare_digest(digest, token.digest):
                if token.revoked_at is not None:
                    raise AuthenticationFailed("token revoked")
                if token.expiry is not None and token.expiry <= timezone.now():
                    raise AuthenticationFailed("token expired")
                token.touch()
                return self.validate_user(token)
        raise AuthenticationFailed("invalid token")


class TokenScheme(KnoxTokenScheme):
    """Its OpenAPI security scheme (drf-spectacular matches knox's class only, not a subclass)."""

    target_class = "tokens.auth.TokenAuthentication"
    name = "tokenAuth"
