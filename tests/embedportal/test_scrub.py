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
