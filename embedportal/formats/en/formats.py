"""The operator console's times name their timezone: Django's English format ("Dec. 6, 2026, 8:45 p.m.") did not."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
