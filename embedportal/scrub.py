"""Secrets out of error and result messages: they reach the admin, the API, JUnit files and logs."""

from __future__ import annotations

import base64
import os
import re

# Shapes of credentials that providers and drivers echo in error texts, with their replacement.
PATTERNS = (
    (re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-]{6,}"), "[redacted]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}"), r"\1 [redacted]"),
    (re.compile(r"(?i)\b(api[_-]?key|password|secret|token)(\s*[=:]\s*)[^\s,;'\"]+"), r"\1\2[redacted]"),
    # Credentials in any URL: a database's, or a provider's api_base (https://user:secret@host/).
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^\s@/]*@"), r"\1[redacted]@"),
)
SECRET_ENV_PARTS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "AUTH", "DATABASE_URL")


def scrub(message: str, *secrets: str | None) -> str:
    """Replace the secrets passed in, the values of secret-looking environment variables and
    credential shapes."""
    values = [secret for secret in secrets if secret and len(secret) >= 4]
    values += [
        value
        for name, value in os.environ.items()
        if any(part in name.upper() for part in SECRET_ENV_PARTS) and len(value) >= 6
    ]
    # Longest first: a secret that contains another is replaced whole.
    for value in sorted(values, key=len, reverse=True):
        for form in sorted(_forms(value), key=len, reverse=True):  # a whole encoding before its cores
            message = re.sub(re.escape(form), "[redacted]", message, flags=re.IGNORECASE)
    for pattern, replacement in PATTERNS:
        message = pattern.sub(replacement, message)
    return message


def _forms(secret: str) -> set[str]:
    """The secret as a provider may echo it: in any case, hex, and base64-encoded alone or inside a longer
    encoded text (a header "Bearer <key>" or "user:<key>" echoed encoded). Inside one, the key's encoding
    depends on its offset modulo 3: for each offset, the part of its encoding no neighbouring byte touches."""
    raw = secret.encode()
    forms = {secret, raw.hex()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        forms.add(encode(raw).decode().rstrip("="))
        for shift in range(3):
            core = encode(b"\0" * shift + raw).decode()[(4 * shift + 2) // 3 : -4]
            if len(core) >= 12:  # shorter would match unrelated text
                forms.add(core)
    return forms
