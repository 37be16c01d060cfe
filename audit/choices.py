from __future__ import annotations

from django.db import models


class Via(models.TextChoices):
    """Where an audited action came in."""

    API = "api", "API"
    ADMIN = "admin", "Admin"
    COMMAND = "command", "Management command"
