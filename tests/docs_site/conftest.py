from __future__ import annotations

from tests.browser.conftest import browser  # noqa: F401  (headless Chromium for the status page test)
