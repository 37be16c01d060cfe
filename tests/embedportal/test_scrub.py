"""The one secret scrubber, and that the pipeline's provider errors go through it."""

from __future__ import annotations

import litellm

from embedportal.scrub import scrub
from pipeline.choices import ErrorType
from pipeline.embedding import classify


def test_scrub_redacts_explicit_secrets_env_values_and_credential_shapes(monkeypatch):
    monkeypatch.setenv("EXAMPLE_API_TOKEN", "tok-from-the-environment")
    message = scrub(
        "key abcd9 rejected; env tok-from-the-environment; postgres://app:pw@db/x; password=hunter2",
        "abcd9",
        None,
    )
    assert message == "key [redacted] rejected; env [redacted]; postgres://[redacted]@db/x; password=[redacted]"


def test_provider_error_message_loses_a_bearer_token_the_caller_did_not_name():
    exc = litellm.AuthenticationError(
        "invalid header Authorization: Bearer eyJhbGciOi.payload.sig", llm_provider="openai", model="m"
    )
    error = classify(exc, key="sk-other-key-not-in-the-message")
    assert error.error_type == ErrorType.AUTH
    assert "eyJhbGciOi" not in error.message
    assert "Bearer [redacted]" in error.message


def test_a_secret_echoed_in_another_case_or_base64_is_redacted_and_a_traceback_left_out():
    # A provider echoing the key upper-cased or base64-encoded passed the exact match (the red team's).
    key = "RTKEY-purple-walrus-31337"
    echoed = f"upper={key.upper()} b64=UlRLRVktcHVycGxlLXdhbHJ1cy0zMTMzNw== again={key}"
    assert scrub(echoed, key) == "upper=[redacted] b64=[redacted]== again=[redacted]"
    exc = litellm.APIConnectionError(
        'boom\nTraceback (most recent call last):\n  File "/srv/venv/litellm/main.py", line 7368', "bedrock", "m"
    )
    message = classify(exc, key=key).message
    assert "boom" in message and "Traceback" not in message and "/srv/venv" not in message


def test_a_secret_inside_a_longer_encoded_header_is_redacted():
    # base64 of "Bearer <key>" or "user:<key>", and hex, passed the match of the key's own encoding (the red
    # team's second round).
    import base64

    key = "RTKEY-purple-walrus-31337-xyzzy"
    for echoed in (b"Bearer " + key.encode(), b"u:" + key.encode(), b"xx" + key.encode() + b"!"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(echoed).decode()
            scrubbed = scrub(f"echo={encoded}", key)
            assert "[redacted]" in scrubbed and key.encode() not in _decodable(scrubbed), (echoed, scrubbed)
    assert scrub(f"hex={key.encode().hex()}", key) == "hex=[redacted]"
    assert scrub("an ordinary sentence with Bearer-free words", key) == "an ordinary sentence with Bearer-free words"


def _decodable(text: str) -> bytes:
    """Whatever base64 around the redaction still decodes to, each side on its own."""
    import base64
    import binascii

    out = b""
    for part in text.removeprefix("echo=").split("[redacted]"):
        for trim in range(4):
            try:
                out += base64.b64decode(part[trim:] + "=" * (-len(part[trim:]) % 4))
                break
            except (binascii.Error, ValueError):
                continue
    return out
