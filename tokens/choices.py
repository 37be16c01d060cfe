from __future__ import annotations

from django.db import models


class Scope(models.TextChoices):
    """What a token may do, on top of its user's permissions; each includes the ones before it.
    The values are the kinds of request (embedportal.api.permissions.KINDS)."""

    READ = "read", "Read (search, list, retrieve)"
    WRITE = "write", "Write (enqueue, create, change, delete)"
    OPERATE = "operate", "Operate (pause, requeue, re-embed, apply optimizations, run tests, probe)"
