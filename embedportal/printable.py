"""Tenant text in plain-text outputs (logs, terminals, XML): control and formatting characters are refused
where an identifier comes in, and escaped where any text goes out."""

from __future__ import annotations

import logging
import unicodedata

# Cc, control characters: ESC starts terminal sequences, CR and LF forge log lines, most are not XML.
# Cf, formatting characters: a bidi override shows "invoice-\u202efdp.exe" as invoice-exe.pdf, a
# zero-width one hides text. Zl and Zp, the line and paragraph separators: str.splitlines() and many
# log tools break a record there.
UNSAFE = ("Cc", "Cf", "Zl", "Zp")
# Letters and marks Unicode says to draw as nothing (Default_Ignorable_Code_Point, outside Cf): fillers
# and variation selectors made "invoice.pdf\u3164" look like invoice.pdf. Refused in identifiers only:
# text shows them (an emoji's variation selector).
INVISIBLE = {
    *(0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0),
    *range(0x180B, 0x1810),
    *range(0xFE00, 0xFE10),
    *range(0xE0100, 0xE01F0),
}


def unsafe_character(value: str) -> str | None:
    """Why `value` may not name anything (None if it may): it holds a control, formatting, separator or
    invisible character."""
    at = next((i for i, c in enumerate(value) if unicodedata.category(c) in UNSAFE or ord(c) in INVISIBLE), None)
    return None if at is None else f"holds a control or formatting character ({ascii(value[at])} at {at}); remove it"


def printable(text: str, keep: str = "") -> str:
    """`text` with each control or formatting character, but those in `keep`, written as its escape
    (\\n, \\x1b, \\u202e): what a log line, a terminal or an XML file shows as it is."""
    if text.isprintable():
        return text
    return "".join(c if c in keep or unicodedata.category(c) not in UNSAFE else repr(c)[1:-1] for c in text)


class PrintableFormatter(logging.Formatter):
    """Log records whose text cannot forge another record or reach the terminal: a message is one line;
    a traceback keeps its line breaks and nothing else, each line after the record's first indented, so
    only a record starts at the line's start (an exception's message may hold a line break)."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\n  ")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        return printable(super().formatException(ei), keep="\n")  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return printable(super().formatStack(stack_info), keep="\n")
