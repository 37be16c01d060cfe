"""`embedportal` console script: the same as `python manage.py`."""

from __future__ import annotations

import os
import sys


def not_utf8(argv: list[str]) -> str | None:
    """Why an argument cannot be used, if one is not UTF-8 text: Python keeps such bytes as lone surrogates,
    which every command then sent to PostgreSQL, whose driver refused them mid-query (a traceback)."""
    for number, argument in enumerate(argv[1:], 1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(argument)
            return (
                f"argument {number} ({raw!r}) is not UTF-8 text; names, ids and queries are UTF-8 "
                "(a terminal in another encoding? set a UTF-8 locale and type it again)"
            )
    return None


def main() -> None:
    if problem := not_utf8(sys.argv):
        sys.exit(f"embedportal: {problem}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedportal.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
