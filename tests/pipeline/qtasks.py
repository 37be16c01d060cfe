"""Task functions the qcluster tests enqueue by dotted path (the cluster imports them)."""

from __future__ import annotations

import os
import sys


def litellm_origin() -> dict:
    """Where this worker's LiteLLM came from, looked at before anything here imports it."""
    from pipeline import providers

    return {
        "pid": os.getpid(),
        "preloaded_by": providers.preloaded_by,
        "litellm_loaded": "litellm" in sys.modules,
    }


def fail() -> None:
    raise RuntimeError("this scheduled task always fails")


def succeed() -> str:
    return "done"
